"""The one parameters type of a stylization, and the one place it is validated.

Sidecar files, `config.toml`, the command line and the web form all build a
`Params` through `Params.from_mapping`, so every user sees the same messages.
This module deliberately imports neither torch nor PIL: the CLI validates
parameters without paying for them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import UserError
from .topology import LAYER_NAMES

OPTIMIZERS = ("lbfgs", "adam")
POOLINGS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16")
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

    max_size: int = 8192
    max_iterations: int = 5000
    max_outputs: int = 16
    max_image_pixels: int = 80_000_000


@dataclass(frozen=True)
class Params:
    """Everything that decides what a stylization computes.

    Defaults here are the single source of defaults; `config.toml` overrides
    them per installation, and a sidecar or `--set` per job.
    """

    size: int = 512
    iterations: int = 80
    scales: tuple[float, ...] = (1.0,)  # one scale: see README "Why these defaults"
    schedule: str = "auto"  # "auto": prints (> 1024 px) go coarse to fine from 512 px; "scales": as given
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02
    lr_schedule: str = "plateau"
    content_weight: float = 1.0
    style_weight: float = 50.0
    strength: float = 0.5  # 0: the photograph, lightly painted; 1: the painting's manner
    tv_weight: float = 30.0
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[float, ...] | None = None
    style_blend: tuple[float, ...] | None = None
    style_scale: float = 1.0
    init: str = "content"
    init_noise: float = 0.05
    seed: int = 0
    outputs: int = 1
    pooling: str = "max"
    weights: str = "caffe"
    precision: str = "auto"
    device: str = "auto"
    preserve_color: bool = False
    color_correction: bool = True
    style_color_match: bool = False

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        base: "Params | None" = None,
        limits: Limits = Limits(),
    ) -> "Params":
        """Build validated parameters: `values` over `base` (default: built-in defaults)."""
        base = base or cls()
        names = [f.name for f in dataclasses.fields(cls)]
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if not isinstance(key, str) or key not in names:
                raise ParamError(_unknown_key_message(key, names))
            changes[key] = _coerce(key, value, _FIELD_TYPES[key])
        params = dataclasses.replace(base, **changes)
        params.validate(limits)
        return params

    def with_overrides(self, overrides: Mapping[str, Any], limits: Limits = Limits()) -> "Params":
        return Params.from_mapping(overrides, base=self, limits=limits)

    def validate(self, limits: Limits = Limits()) -> None:
        _in_range("size", self.size, 32, limits.max_size)
        _in_range("iterations", self.iterations, 1, limits.max_iterations)
        _in_range("outputs", self.outputs, 1, limits.max_outputs)
        if not self.scales:
            raise ParamError("scales: give at least one scale, e.g. scales = [1.0]")
        for s in self.scales:
            _in_range("scales", s, 0.05, 1.0)
        if list(self.scales) != sorted(self.scales) or self.scales[-1] != 1.0:
            raise ParamError("scales: must rise and end with 1.0, e.g. [0.25, 0.5, 1.0]")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("pooling", self.pooling, POOLINGS)
        _one_of("precision", self.precision, PRECISIONS)
        _in_range("learning_rate", self.learning_rate, 1e-6, 10.0)
        for name in ("content_weight", "style_weight", "tv_weight"):
            _in_range(name, getattr(self, name), 0.0, 1e12)
        _in_range("style_scale", self.style_scale, 0.1, 4.0)
        _in_range("strength", self.strength, 0.0, 1.0)
        _in_range("init_noise", self.init_noise, 0.0, 1.0)
        _in_range("seed", self.seed, 0, 2**63 - 1)
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if not layers:
                raise ParamError(f"{name}: give at least one layer, e.g. {name} = [\"relu4_2\"]")
            for layer in layers:
                if layer not in LAYER_NAMES:
                    raise ParamError(_unknown_value_message(name, layer, LAYER_NAMES))
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ParamError(
                    f"style_layer_weights: has {len(self.style_layer_weights)} values "
                    f"but style_layers has {len(self.style_layers)}; give one weight per layer"
                )
            for w in self.style_layer_weights:
                _in_range("style_layer_weights", w, 0.0, 1e6)
        if self.style_blend is not None:
            for w in self.style_blend:
                _in_range("style_blend", w, 0.0, 1e6)
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


# Each field's accepted type, as the coercion below understands it.
_FIELD_TYPES: dict[str, str] = {
    "size": "int", "iterations": "int", "outputs": "int", "seed": "int",
    "scales": "floats", "style_layer_weights": "floats?", "style_blend": "floats?",
    "content_layers": "strs", "style_layers": "strs",
    "learning_rate": "float", "content_weight": "float", "style_weight": "float",
    "tv_weight": "float", "style_scale": "float", "init_noise": "float", "strength": "float",
    "optimizer": "str", "lr_schedule": "str", "schedule": "str", "init": "str", "pooling": "str",
    "weights": "str", "precision": "str", "device": "str",
    "preserve_color": "bool", "color_correction": "bool", "style_color_match": "bool",
}
assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(Params)}
# Parameters that are whole numbers: a form's "512" is 512, never 512.0.
INTEGER_FIELDS = frozenset(k for k, kind in _FIELD_TYPES.items() if kind == "int")


def _coerce(key: str, value: Any, kind: str) -> Any:
    if kind.endswith("?"):
        if value is None or value == []:
            return None
        kind = kind[:-1]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ParamError(f"{key}: expected true or false, got {_show(value)}")
    if kind == "int":
        # bool is an int in Python; a user writing `size = true` made a mistake.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)
        raise ParamError(f"{key}: expected a whole number, got {_show(value)}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ParamError(f"{key}: expected a finite number, got {_show(value)}")
            return float(value)
        raise ParamError(f"{key}: expected a number, got {_show(value)}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ParamError(f"{key}: expected a string, got {_show(value)}")
    if kind in ("floats", "strs"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if len(items) > 64:
            raise ParamError(f"{key}: at most 64 values")
        return tuple(_coerce(key, item, kind[:-1]) for item in items)
    raise AssertionError(f"unknown field kind {kind}")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ParamError(f"{name}: {_show(value)} is out of range; allowed {low:g} to {high:g}")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParamError(_unknown_value_message(name, value, choices))


def _unknown_key_message(key: Any, names: list[str]) -> str:
    shown = _show(key)
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
    return f"unknown parameter {shown}{hint}"


def _unknown_value_message(name: str, value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if len(choices) > 8:
        return f"{name}: unknown value {_show(value)}{hint}; e.g. {', '.join(choices[:6])}, ..."
    return f"{name}: unknown value {_show(value)}{hint}; choose one of {', '.join(choices)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
