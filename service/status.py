"""A job's lifecycle: its statuses, the moves between them, what can be done in each, and its
progress record. No heavy imports: the CLI and the web page read it too.

Every status change goes through `Store` (one method that checks the expected status under
the row lock); this module says which changes exist.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from nst_engine.progress import work_fraction


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE

    @property
    def cancellable(self) -> bool:
        return self in CANCELLABLE


FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})  # queued again from its archived inputs
CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
NAMES = tuple(s.value for s in JobStatus)  # the CLI's --status choices, the web page's filters

# Every move a job may make; anything else is a bug and raises. RUNNING -> RUNNING is a
# takeover: another worker claims a job whose worker stopped renewing its claim.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.DONE, JobStatus.FAILED,
                                  JobStatus.CANCELLED}),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


@dataclass(frozen=True)
class JobProgress:
    """Where a running job is: written by the worker about once a second, read by `nst status`,
    `nst show` and the web page. `fraction` is the share of the work done."""

    step: int = 0
    total: int = 0
    scale: int = 0
    scales: int = 0
    iteration: int = 0
    iterations: int = 0
    output: int = 0  # 1-based; a batch's first
    outputs: int = 0
    pictures: int = 1  # outputs optimized together: `output` to `output + pictures - 1`
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None
    updated: float | None = None  # wall-clock seconds
    work: float = 0.0  # megapixel-iterations done (pixels x iterations, every scale and output)
    work_total: float = 0.0

    @property
    def fraction(self) -> float:
        """The share of the work done, as the engine counts it (`work_fraction`)."""
        return work_fraction(self.work, self.work_total)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "JobProgress":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (data or {}).items() if k in known})
