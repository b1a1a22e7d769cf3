"""JSON for the page's polling and for scripts (`/api/...`), and the Prometheus `/metrics`."""

from __future__ import annotations

import json
import os

from flask import Blueprint, jsonify, request

from nst_engine.params import ParamError, Params

from ..status import NAMES as STATUS_NAMES
from ..store import JobFilter
from . import common
from .files import outbox_files
from .pages import form_values

bp = Blueprint("api", __name__)


@bp.post("/api/validate")
def validate():
    """The form's fields checked before its files are sent: a wrong field costs no upload and
    keeps the chosen files (the page calls this first)."""
    config = common.config()
    values = form_values(request.form)
    try:
        Params.from_mapping(values, base=config.defaults, limits=config.limits)
    except ParamError as e:
        # Messages name their key first ("size: ..."): the page marks that field.
        key = str(e).partition(":")[0].strip()
        return jsonify(ok=False, error=str(e), field=key if key in values else None), 200
    return jsonify(ok=True)


@bp.get("/api/jobs")
def jobs():
    try:
        limit = min(500, max(1, int(request.args.get("limit", 50))))
    except ValueError:
        return jsonify(error="limit must be a number"), 400
    status = request.args.get("status") or None
    if status and status not in STATUS_NAMES:
        return jsonify(error=f"status must be one of {', '.join(STATUS_NAMES)}"), 400
    found = common.store().list_jobs(JobFilter(status=status, limit=limit, name_glob=request.args.get("name") or None))
    return jsonify([common.api_job(j) for j in found])


@bp.get("/api/jobs/<int:job_id>")
def job(job_id: int):
    found = common.job_or_404(job_id)
    return jsonify({**common.api_job(found, brief=False), "files": sorted(outbox_files(found))})


@bp.get("/api/jobs/<int:job_id>/log")
def log(job_id: int):
    config = common.config()
    found = common.job_or_404(job_id)
    try:
        offset = max(0, int(request.args.get("offset", 0)))
    except ValueError:
        return jsonify(error="offset must be a whole number of bytes"), 400
    live, final = config.live_log(found.id), config.published_log(found.outbox_dir)
    path = live if live.exists() else final
    text = b""
    if path is not None and path.exists():
        with open(path, "rb") as f:
            offset = min(offset, os.fstat(f.fileno()).st_size)
            f.seek(offset)
            text = f.read(256 * 1024)
    return jsonify(text=text.decode("utf-8", "replace"), offset=offset + len(text),
                   finished=found.state.finished)


@bp.get("/api/jobs/<int:job_id>/losses")
def losses(job_id: int):
    """The loss curve so far: [{step, total, content, style, tv}, ...] (thinned to at most 500)."""
    found = common.job_or_404(job_id)
    try:
        return jsonify(json.loads(common.config().live_losses(found.id).read_text()))
    except (OSError, ValueError):
        return jsonify([])


@bp.get("/metrics")
def metrics():
    """The Prometheus text format; README 'Metrics' lists the series and example alerts."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from ..metrics import registry_for

    return generate_latest(registry_for(common.store())), 200, {"Content-Type": CONTENT_TYPE_LATEST}
