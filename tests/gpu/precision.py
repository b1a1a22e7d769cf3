"""One small pair through the network on a device: features, Gram matrices, loss and gradient.

Shared by the GPU tests (CUDA against the CPU) and by `bench/gpu.sh`'s report.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from nst_engine.images import to_tensor
from nst_engine.losses import StyleTransferLoss, gram
from nst_engine.optimize import _network

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


def small(name: str, edge: int = 128) -> torch.Tensor:
    img = Image.open(SAMPLES / name).convert("RGB")
    img.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    return to_tensor(img)


def measure(device: torch.device, bf16: bool, edge: int = 128) -> dict:
    """Everything on float32 CPU tensors, for comparison across devices."""
    net = _network("caffe", "max", device, "relu5_1", bf16)
    content, style = small("tubingen.jpg", edge).to(device), small("starry_night.jpg", edge).to(device)
    layers = set(STYLE_LAYERS) | {CONTENT_LAYER}
    with torch.no_grad():
        style_grams = {k: gram(v) for k, v in net(style, set(STYLE_LAYERS)).items()}
        content_features = net(content, {CONTENT_LAYER})
    loss_fn = StyleTransferLoss(content_targets=content_features, style_targets=style_grams,
                                style_layer_weights=[1.0] * len(STYLE_LAYERS), content_weight=1.0,
                                style_weight=50.0, tv_weight=30.0)
    # The image being optimized: the content with a fixed perturbation, so every term is non-zero.
    noise = torch.Generator().manual_seed(0)
    x = (content.cpu() + 0.1 * torch.randn(content.shape, generator=noise)).clamp(0, 1).to(device)
    x.requires_grad_(True)
    features = net(x, layers)
    terms = loss_fn(features, x)
    terms.total.backward()
    return {
        "features": {k: v.detach().float().cpu() for k, v in features.items()},
        "grams": {k: gram(v.detach()).float().cpu() for k, v in features.items() if k in STYLE_LAYERS},
        "loss": float(terms.total),
        "grad": x.grad.detach().float().cpu(),
    }


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b| (Frobenius)."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def compare(got: dict, reference: dict) -> dict:
    """The worst relative errors of `got` against `reference`, per kind."""
    return {
        "features": max(relative(got["features"][k], v) for k, v in reference["features"].items()),
        "grams": max(relative(got["grams"][k], v) for k, v in reference["grams"].items()),
        "loss": abs(got["loss"] - reference["loss"]) / abs(reference["loss"]),
        "grad": relative(got["grad"], reference["grad"]),
        "grad_cosine": cosine(got["grad"], reference["grad"]),
    }
