"""What a run reports after every iteration, and the one definition of how far along it is.

No torch here: the service's progress record (`service.status.JobProgress`) and the CLI's bars
use `work_fraction` without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from PIL import Image

    from .optimize import RunState


def outputs_label(first: int, pictures: int, outputs: int) -> str:
    """Which outputs a run is at, 1-based: "2/4", or a batch's "1-4/4"."""
    which = f"{first + 1}-{first + pictures}" if pictures > 1 else f"{first + 1}"
    return f"{which}/{outputs}"


def work_fraction(work: float, work_total: float) -> float:
    """The share of a run done, by its work (pixels times iterations over every scale and
    output), not by its iterations: a print's cheap coarse iterations are most of its steps
    and little of its time, so a bar and an ETA that count work agree."""
    return min(1.0, work / work_total) if work_total > 0 else 0.0


@dataclass(frozen=True)
class Progress:
    """One iteration's report to the progress callback."""

    output: int  # 0-based index of the variant being made (a batch's first: see `pictures`)
    outputs: int
    scale: int  # 0-based index into the scales actually run
    scales: int
    size: tuple[int, int]  # (width, height) at this scale
    iteration: int  # 1-based, within this scale
    iterations: int
    step: int  # 1-based over the whole run
    total_steps: int
    losses: dict[str, float]
    elapsed: float
    eta: float
    snapshot: Callable[[], RunState] = field(repr=False, compare=False)
    # The work, in megapixel-iterations (pixels times iterations, over every scale and output).
    work: float = 0.0
    work_total: float = 0.0
    # The picture as it is now (a batch's: side by side), at most `max_edge` px on its long edge
    # when one is given.
    image: Callable[..., Image.Image] | None = field(default=None, repr=False, compare=False)
    # Outputs optimized together, as one batch: `output` to `output + pictures - 1`; `losses` are
    # the first's, `image` shows them all side by side, `step` counts every picture's iterations.
    pictures: int = 1

    @property
    def fraction(self) -> float:
        return work_fraction(self.work, self.work_total)

    @property
    def outputs_label(self) -> str:
        return outputs_label(self.output, self.pictures, self.outputs)
