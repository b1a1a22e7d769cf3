"""nst_engine: Gatys-style neural style transfer on the original VGG-19.

    from nst_engine import Params, stylize, load_image
    result = stylize(load_image("photo.jpg"), [load_image("painting.jpg")],
                     params=Params(size=512))
    result.outputs[0].stylized.save("out.png")

Importing the package is cheap: torch loads only when the engine itself is used,
so `Params` can validate parameters in programs that never stylize.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .params import Limits, ParamError, Params
from .version import __version__

__all__ = [
    "ImageError", "Limits", "Output", "ParamError", "Params", "Progress", "Result",
    "Request", "RunState", "WeightsError", "load_image", "preload", "stylize", "stylize_many", "estimate", "BudgetError",
]

_LAZY = {
    "stylize": "optimize", "stylize_many": "optimize", "Request": "optimize", "preload": "optimize", "estimate": "planning", "BudgetError": "memory", "Progress": "progress", "Result": "optimize", "RunState": "optimize",
    "Output": "optimize", "load_image": "images", "ImageError": "images", "WeightsError": "weights",
}

if TYPE_CHECKING:
    from .images import ImageError, load_image
    from .memory import BudgetError
    from .optimize import Output, Request, Result, RunState, preload, stylize, stylize_many
    from .planning import estimate
    from .progress import Progress
    from .weights import WeightsError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
