"""One way to declare a setting: a dataclass field with its type (from its default), its range
and its help, and one checker that gives every wrong value the same kind of message, with a
"did you mean" for a misspelt key or word.

The parameters of a stylization (`Params`, `Limits`) and the service's `config.toml` sections
are all declared so. No torch here: the CLI checks settings without loading the engine.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
Error = Callable[[str], Exception]


def setting(default: Any, *, low: float | None = None, high: float | None = None) -> Any:
    """A field whose numbers (one, or each of a list) must lie in [low, high]."""
    metadata = {"range": (low, high)} if low is not None or high is not None else {}
    if isinstance(default, (list, dict, set)):
        raise TypeError("give a tuple (settings are frozen)")
    return dataclasses.field(default=default, metadata=metadata)


def range_of(cls: type, name: str) -> tuple[float | None, float | None] | None:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("range")
    return None


def check_ranges(obj: Any, error: Error, *, prefix: str = "") -> None:
    """Every declared range of a settings object, for a value or each value of a list."""
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("range")
        value = getattr(obj, f.name)
        if bounds is None or value is None:
            continue
        for item in value if isinstance(value, (tuple, list)) else (value,):
            in_range(f"{prefix}{f.name}", item, *bounds, error)


def in_range(name: str, value: float, low: float | None, high: float | None, error: Error) -> None:
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    if not (low <= value <= high):  # also false for NaN
        raise error(f"{name}: {show(value)} is out of range; allowed {low:g} to {high:g}")


def build(cls: type[T], values: Mapping[str, Any], error: Error, *, base: T | None = None,
          prefix: str = "", what: str = "key") -> T:
    """A settings object: `values` over `base` (default: the declared defaults), known keys
    only, each taken as its declared type, each in its declared range."""
    kinds = {f.name: _kind(f) for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in kinds:
            raise error(prefix + unknown_key(key, list(kinds), what=what))
        changes[key] = coerce(prefix + key, value, kinds[key], error)
    built = dataclasses.replace(base if base is not None else cls(), **changes)
    check_ranges(built, error, prefix=prefix)
    return built


# A field's declared type, as `coerce` takes it ("?": None allowed; a plural: a list of them).
_KINDS = {
    "bool": "bool", "int": "int", "float": "float", "str": "str",
    "tuple[float, ...]": "floats", "tuple[str, ...]": "strs", "tuple[float, ...] | None": "floats?",
}


def _kind(f: dataclasses.Field) -> str:
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        return _KINDS[annotation]
    except KeyError:
        raise AssertionError(f"setting {f.name}: no kind for type {annotation!r}") from None


def coerce(key: str, value: Any, kind: str, error: Error) -> Any:
    """`value` as a setting of `kind`, or `error` naming the key and what was expected."""
    if kind.endswith("?"):
        if value is None or value == []:
            return None
        kind = kind[:-1]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise error(f"{key}: expected true or false, got {show(value)}")
    if kind == "int":
        # bool is an int in Python; a user writing `size = true` made a mistake.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)
        raise error(f"{key}: expected a whole number, got {show(value)}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise error(f"{key}: expected a finite number, got {show(value)}")
            return float(value)
        raise error(f"{key}: expected a number, got {show(value)}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise error(f"{key}: expected a string, got {show(value)}")
    if kind in ("floats", "strs"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if len(items) > 64:
            raise error(f"{key}: at most 64 values")
        return tuple(coerce(key, item, kind[:-1], error) for item in items)
    raise AssertionError(f"unknown setting kind {kind}")


def unknown_key(key: Any, names: Sequence[str], *, what: str = "key") -> str:
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(names))}"
    return f"unknown {what} {show(key)}{hint}"


def unknown_value(name: str, value: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if len(choices) > 8:
        return f"{name}: unknown value {show(value)}{hint}; e.g. {', '.join(choices[:6])}, ..."
    return f"{name}: unknown value {show(value)}{hint}; choose one of {', '.join(choices)}"


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
