"""What every room of the web page uses: the installation's config, store and login gate,
and a job by its id."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app

from ..config import Config
from ..store import Job, Store


def config() -> Config:
    return current_app.extensions["nst"]["config"]


def store() -> Store:
    return current_app.extensions["nst"]["store"]


def job_or_404(job_id: int) -> Job:
    job = store().get(job_id)
    if job is None:
        abort(404)
    return job


def api_job(job: Job, *, brief: bool = True) -> dict[str, Any]:
    """The job's one serialization, with the page's address."""
    return {**job.to_dict(brief=brief), "url": f"/jobs/{job.id}"}
