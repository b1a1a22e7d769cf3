"""The one writer of a job's ending, for the worker and the intake alike.

Every end (done, failed, cancelled, refused at intake) is written the same way: the job's
outbox folder (its pictures if any, `job.json` in one shape, `error.txt` with the advice of a
failure, `job.log`, the inputs), then the status moved in the store, then the job's archive
and checkpoint removed. A crash between the folder's rename and the status is finished by the
next call for the same job: the folder already published is the truth.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..models import Job
from ..status import JobStatus
from ..store import Store
from .outbox import JobFolder, Outbox, error_text

log = logging.getLogger("nst.ending")

# Keys of the job's serialization that describe it while it waits or runs, not its end.
_NOT_RECORDED = ("progress", "outbox_dir", "duration_s")


@dataclass
class Ending:
    """How a job ended, as its folder and the store record it."""

    status: JobStatus
    error: str | None = None
    hint: str | None = None  # a failure's advice: error.txt's "How to fix it"
    detail: str = ""  # more for error.txt than the error recorded (the files not taken)
    outputs: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None
    params: dict[str, Any] | None = None  # as run; else as recorded with the job
    inputs: list[dict] | None = None  # where the store does not hold them yet (a refusal)
    folder: Path | None = None  # where an earlier attempt published it

    @classmethod
    def from_folder(cls, folder: Path) -> "Ending":
        """The ending an earlier attempt published (its `job.json`)."""
        recorded = json.loads((folder / "job.json").read_text())
        return cls(JobStatus(recorded.get("status", "done")), error=recorded.get("error"),
                   outputs=recorded.get("outputs") or [], record=recorded.get("record"), folder=folder)


class Endings:
    def __init__(self, config: Config, store: Store, outbox: Outbox) -> None:
        self.config, self.store, self.outbox = config, store, outbox

    def published(self, job: Job, *, run_id: str | None = None) -> Ending | None:
        """Finish the ending of a job whose folder is already in the outbox (a crash after the
        rename and before the status was moved); None where there is no such folder."""
        folder = self.outbox.existing(job.outbox_dir, job.id)
        if folder is None:
            return None
        ending = Ending.from_folder(folder)
        self._record(job.id, ending, folder, run_id)
        return ending

    def write(self, job: Job, ending: Ending, *, folder: JobFolder | None = None,
              run_id: str | None = None) -> Path:
        """Publish the job's folder (with `folder`'s pictures, if any), move its status, clean up.
        `run_id`: the worker's claim (None for the intake, which ends only queued jobs)."""
        earlier = self.published(job, run_id=run_id)
        if earlier is not None:
            return earlier.folder
        folder = folder or JobFolder(job.id, job.name)
        folder.inputs_dir = self.config.inputs(job.id)
        if ending.status == JobStatus.FAILED:
            folder.add_text("error.txt", error_text(job.name, (ending.error or "") + ending.detail, ending.hint or ""))
        folder.add_json("job.json", self._job_json(job, ending))
        live_log = self.config.live_log(job.id)
        if live_log.exists():
            folder.files["job.log"] = live_log.read_bytes()
        final = self.outbox.publish(folder, lambda d: self.store.reserve_outbox_dir(job.id, run_id, d))
        self._record(job.id, ending, final, run_id)
        return final

    def _job_json(self, job: Job, ending: Ending) -> dict[str, Any]:
        """The job's one serialization, as it ended."""
        fresh = self.store.get(job.id) or job
        out = {k: v for k, v in fresh.to_dict().items() if k not in _NOT_RECORDED}
        out |= {"status": ending.status.value, "error": ending.error, "outputs": ending.outputs,
                "record": ending.record or {}, "finished": dt.datetime.now(dt.timezone.utc).isoformat()}
        if ending.params is not None:
            out["params"] = ending.params
        if ending.inputs is not None:
            out["inputs"] = ending.inputs
        return out

    def _record(self, job_id: int, ending: Ending, folder: Path, run_id: str | None) -> None:
        current = self.store.get(job_id)
        if current is not None and current.state == ending.status:
            pass  # ended already (a queued job cancelled from a door): the folder was all it lacked
        elif run_id is not None or (current is not None and current.state == JobStatus.QUEUED):
            self.store.transition(job_id, ending.status, run_id=run_id,
                                  expect=None if run_id is not None else JobStatus.QUEUED,
                                  error=ending.error, outputs=ending.outputs,
                                  record=ending.record, outbox_dir=folder.name)
        self.config.checkpoint(job_id).unlink(missing_ok=True)
        shutil.rmtree(self.config.archive(job_id), ignore_errors=True)
