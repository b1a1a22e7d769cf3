"""The one parameters type of a stylization, and the one place it is validated.

Sidecar files, `config.toml`, the command line and the web form all build a
`Params` through `Params.from_mapping`, so every user sees the same messages.
This module deliberately imports neither torch nor PIL: the CLI validates
parameters without paying for them.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import UserError
from .settings import build, in_range, setting, unknown_value
from .topology import LAYER_NAMES

OPTIMIZERS = ("lbfgs", "adam")
POOLINGS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16")
FACE_GUARDS = ("auto", "off")  # see faces.py
INITS = ("content", "noise")  # any other value is an image the caller supplies
LR_SCHEDULES = ("plateau", "constant")
SCHEDULES = ("auto", "scales")

# `strength` moves the style weight along a log scale, this many powers of ten from end to
# end (x0.1 at 0, the plain `style_weight` at 0.5, x10 at 1): the range the grid showed to
# go from "the photograph, lightly painted" to "the painting's manner" on every pair.
STRENGTH_DECADES = 2.0

# What each further output changes, in turn, so that several outputs are choices rather than
# near copies (a seed alone changes only a little start-up noise): (name, style_scale factor,
# strength change). Output 1 is the parameters as given; after the list it starts again with
# the next seeds.
VARIANTS = (
    ("as given", 1.0, 0.0),
    ("larger brushwork", 1.6, 0.0),
    ("stronger", 1.0, 0.3),
    ("finer brushwork", 0.6, 0.0),
    ("lighter", 1.0, -0.3),
)


class ParamError(UserError):
    """A parameter a user gave is wrong; the message says which and how to fix it."""

    default_hint = "correct the parameter; README 'Parameters' lists every key and its range"


@dataclass(frozen=True)
class Limits:
    """Ceilings an operator sets in `config.toml`; no job may exceed them."""

    max_size: int = setting(8192, low=64, high=65536)
    max_iterations: int = setting(5000, low=1, high=1_000_000)
    max_outputs: int = setting(16, low=1, high=256)
    max_image_pixels: int = setting(80_000_000, low=1_000_000, high=4_000_000_000)


@dataclass(frozen=True)
class Params:
    """Everything that decides what a stylization computes.

    Defaults here are the single source of defaults; `config.toml` overrides
    them per installation, and a sidecar or `--set` per job.
    """

    size: int = 512
    iterations: int = 80
    scales: tuple[float, ...] = setting((1.0,), low=0.05, high=1.0)  # one scale: see README "Why these defaults"
    schedule: str = "auto"  # "auto": prints (> 1024 px) go coarse to fine from 512 px; "scales": as given
    optimizer: str = "lbfgs"
    learning_rate: float = setting(0.02, low=1e-6, high=10.0)
    lr_schedule: str = "plateau"
    content_weight: float = setting(1.0, low=0.0, high=1e12)
    style_weight: float = setting(50.0, low=0.0, high=1e12)
    strength: float = setting(0.5, low=0.0, high=1.0)  # 0: the photograph, lightly painted; 1: the painting's manner
    tv_weight: float = setting(30.0, low=0.0, high=1e12)
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[float, ...] | None = setting(None, low=0.0, high=1e6)
    style_blend: tuple[float, ...] | None = setting(None, low=0.0, high=1e6)
    style_scale: float = setting(1.0, low=0.1, high=4.0)
    init: str = "content"
    init_noise: float = setting(0.05, low=0.0, high=1.0)
    seed: int = setting(0, low=0, high=2**63 - 1)
    outputs: int = 1
    pooling: str = "max"
    weights: str = "caffe"
    precision: str = "auto"
    device: str = "auto"
    preserve_color: bool = False
    color_correction: bool = True
    style_color_match: bool = False
    face_guard: str = "auto"  # "auto": a painting with a face gives relu5_* from outside it (faces.py)

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        base: "Params | None" = None,
        limits: Limits = Limits(),
    ) -> "Params":
        """Build validated parameters: `values` over `base` (default: built-in defaults)."""
        params = build(cls, values, ParamError, base=base, what="parameter")  # and the declared ranges
        params.validate(limits)
        return params

    def with_overrides(self, overrides: Mapping[str, Any], limits: Limits = Limits()) -> "Params":
        return Params.from_mapping(overrides, base=self, limits=limits)

    def validate(self, limits: Limits = Limits()) -> None:
        # The operator's ceilings; every range declared with its field was checked by `build`.
        in_range("size", self.size, 32, limits.max_size, ParamError)
        in_range("iterations", self.iterations, 1, limits.max_iterations, ParamError)
        in_range("outputs", self.outputs, 1, limits.max_outputs, ParamError)
        if not self.scales:
            raise ParamError("scales: give at least one scale, e.g. scales = [1.0]")
        if list(self.scales) != sorted(self.scales) or self.scales[-1] != 1.0:
            raise ParamError("scales: must rise and end with 1.0, e.g. [0.25, 0.5, 1.0]")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("pooling", self.pooling, POOLINGS)
        _one_of("face_guard", self.face_guard, FACE_GUARDS)
        _one_of("precision", self.precision, PRECISIONS)
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if not layers:
                raise ParamError(f"{name}: give at least one layer, e.g. {name} = [\"relu4_2\"]")
            for layer in layers:
                if layer not in LAYER_NAMES:
                    raise ParamError(unknown_value(name, layer, LAYER_NAMES))
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ParamError(
                    f"style_layer_weights: has {len(self.style_layer_weights)} values "
                    f"but style_layers has {len(self.style_layers)}; give one weight per layer"
                )
        if self.style_blend is not None:
            if sum(self.style_blend) <= 0:
                raise ParamError("style_blend: the weights must not all be zero")
        if not self.weights or len(self.weights) > 4096:
            raise ParamError("weights: \"caffe\", \"torchvision\" or the path of a state dict file")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]{1,2})?", self.device or ""):
            raise ParamError(f"device: {self.device!r} is not a device; use \"auto\", \"cpu\", \"cuda\", "
                             "\"cuda:N\" or \"mps\"")
        if not self.init or len(self.init) > 4096:
            raise ParamError("init: \"content\", \"noise\" or an image file")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly values (tuples as lists), for records and sidecars."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def init_is_image(self) -> bool:
        """`init` names an image file (anything but "content" and "noise")."""
        return self.init not in INITS

    @property
    def effective_style_weight(self) -> float:
        """The style weight the loss uses: `style_weight` moved by `strength` (see STRENGTH_DECADES)."""
        return self.style_weight * 10.0 ** (STRENGTH_DECADES * (self.strength - 0.5))

    def variant(self, index: int) -> "Params":
        """The parameters of output `index` (0-based): see VARIANTS. Output 0 is these."""
        _, brush, stronger = VARIANTS[index % len(VARIANTS)]
        return dataclasses.replace(
            self,
            seed=self.seed + index,
            style_scale=min(4.0, max(0.1, self.style_scale * brush)),
            strength=min(1.0, max(0.0, self.strength + stronger)),
        )

    def image_edges(self) -> tuple[int, int]:
        """The longest edges at which a run looks at the photograph (and an init image) and at
        the paintings, over all its outputs: nothing larger need be decoded."""
        style_scale = max(self.variant(i).style_scale for i in range(min(self.outputs, len(VARIANTS))))
        return self.size, max(1, round(self.size * style_scale))

    @staticmethod
    def variant_name(index: int) -> str:
        name = VARIANTS[index % len(VARIANTS)][0]
        return name if index < len(VARIANTS) else f"{name}, seed +{index}"

    def deepest_layer(self) -> str:
        used = set(self.content_layers) | set(self.style_layers)
        return max(used, key=LAYER_NAMES.index)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one `key=value` from a command line; the value uses TOML syntax,
    and a bare word is taken as a string (`optimizer=adam`)."""
    if "=" not in text:
        raise ParamError(f"expected key=value, got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# Parameters that are whole numbers: a form's "512" is 512, never 512.0.
INTEGER_FIELDS = frozenset(f.name for f in dataclasses.fields(Params) if f.type == "int")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParamError(unknown_value(name, value, choices))
