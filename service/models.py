"""The tables of the job store, the one serialization of a job, and the one place that moves
a job's status (`move`, called by the store inside its transactions).

No database connection here: `nst jobs` and the page read these rows through `store`, and
Alembic's migrations build exactly this schema (a test compares them).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .errors import StoreError
from .status import TRANSITIONS, JobProgress, JobStatus

# The note on a recorded job whose sidecar waits for its images.
WAITING = "waiting for its images: "
# Why a job recorded while it waited ended: nothing of it was taken in.
SIDECAR_LEFT = "its sidecar left the inbox (taken back, or rewritten: a new job) while it waited for its images"

MAX_ID = 2**63 - 1  # the largest id (and LIMIT) both databases take


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Identity of the job file (sidecar path and content hash): a job is recorded once.
    key: Mapped[str] = mapped_column(String(512), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    inputs_json: Mapped[str] = mapped_column(Text, default="[]")
    outputs_json: Mapped[str] = mapped_column(Text, default="[]")
    record_json: Mapped[str] = mapped_column(Text, default="{}")
    progress_json: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outbox_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Schema 2: claims that expire, and jobs that only some workers may run.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    requires_gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    tags_json: Mapped[str] = mapped_column(Text, default="[]")

    __table_args__ = (
        Index("ix_jobs_claim", "status", "staged", "priority", "submitted_at"),
        Index("ix_jobs_submitted", "submitted_at"),
        Index("ix_jobs_name", "name"),
    )

    @property
    def state(self) -> JobStatus:
        return JobStatus(self.status)

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return json.loads(self.inputs_json)

    @property
    def outputs(self) -> list[str]:
        return json.loads(self.outputs_json)

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_json)

    @property
    def progress(self) -> JobProgress:
        return JobProgress.from_dict(json.loads(self.progress_json))

    def to_dict(self, *, brief: bool = False) -> dict[str, Any]:
        """The one serialization of a job: `nst jobs --json` and the job list API take the brief
        form, `nst show --json` and a job's API the whole. Keys are stable."""
        def iso(value: dt.datetime | None) -> str | None:
            return value.replace(tzinfo=dt.timezone.utc).isoformat() if value else None

        progress = self.progress
        fraction = 1.0 if self.state == JobStatus.DONE else progress.fraction
        out = {
            "id": self.id, "name": self.name, "status": self.status, "priority": self.priority,
            "submitted": iso(self.submitted_at), "started": iso(self.started_at),
            "finished": iso(self.finished_at), "duration_s": self.duration_s,
            "size": self.size, "iterations": self.iterations, "attempts": self.attempts,
            "error": self.error, "outputs": self.outputs, "outbox_dir": self.outbox_dir,
            "progress": {**progress.to_dict(), "fraction": round(fraction, 4),
                         "loss": progress.losses.get("total")},
        }
        if not brief:
            out |= {"host": self.host, "pid": self.pid, "params": self.params, "inputs": self.inputs,
                    "record": self.record}
        return out


class DaemonRecord(Base):
    """A daemon start sharing this store: its host, roles and heartbeat (`nst workers`)."""

    __tablename__ = "daemons"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    current_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    # Schema 2
    roles: Mapped[str] = mapped_column(String(64), default="watch,work")
    home: Mapped[str] = mapped_column(Text, default="")  # the state folder whose lock this daemon holds



def move(job: Job, to: JobStatus, *, run_id: str | None = None, expect: JobStatus | None = None,
         error: str | None = None, outputs: list[str] | None = None, record: dict[str, Any] | None = None,
         outbox_dir: str | None = None, progress: dict[str, Any] | None = None) -> Job:
    """Move a row locked by the caller's transaction; the only code that changes `status`."""
    current = job.state
    if expect is not None and current != expect:
        raise StoreError(f"job {job.id} is {current.value}, not {expect.value}")
    if to not in TRANSITIONS[current]:
        raise StoreError(f"job {job.id} cannot go from {current.value} to {to.value}")
    if run_id is not None and current == JobStatus.RUNNING and job.run_id != run_id:
        raise StoreError(f"job {job.id} is no longer ours (claimed by run {job.run_id})")
    job.status = to.value
    now = utcnow()
    if to == JobStatus.RUNNING:
        job.started_at = job.started_at or now
    if to.finished:
        job.finished_at = now
        if job.started_at:
            job.duration_s = (now - job.started_at).total_seconds()
    if to == JobStatus.QUEUED and current == JobStatus.RUNNING and run_id is not None:
        # Its own daemon gave it back on shutdown: that start does not count as a crash.
        job.attempts = max(0, job.attempts - 1)
    if to == JobStatus.QUEUED:
        job.run_id = None
        job.cancel_requested = False
        job.finished_at = None
        job.error = None
    if error is not None:
        job.error = error
    if to == JobStatus.DONE:
        job.error = None
    if outputs is not None:
        job.outputs_json = json.dumps(outputs)
    if record is not None:
        job.record_json = json.dumps(record, default=str)
    if outbox_dir is not None:
        job.outbox_dir = outbox_dir
    if progress is not None:
        job.progress_json = json.dumps(progress)
    return job
