"""The pages people use: the form and the history, a job's page, and its Cancel and Retry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, session, url_for

from nst_engine.images import ImageError, load_image
from nst_engine.params import INTEGER_FIELDS, ParamError, Params

from ..config import Config
from ..display import estimate_text
from ..pipeline.inbox import CHECK_EDGE, IMAGE_EXTS
from ..pipeline.outbox import advice
from ..status import NAMES as STATUS_NAMES
from ..status import JobStatus
from ..store import JobFilter, StoreError
from ..submit import SubmitError, can_resubmit, resubmit_job, submit_job
from . import common
from .files import outbox_files

bp = Blueprint("pages", __name__)

# The form's fields, in order: (key, label, input type).
FORM_FIELDS = (
    ("strength", "Strength (0: the photograph, lightly painted; 1: the painting's manner)", "range"),
    ("size", "Size (long edge, px)", "number"),
    ("iterations", "Iterations per scale", "number"),
    ("style_weight", "Style weight", "number"),
    ("content_weight", "Content weight", "number"),
    ("optimizer", "Optimizer", "select"),
    ("outputs", "Number of outputs", "range"),
    ("preserve_color", "Preserve the photograph's colours", "checkbox"),
    ("color_correction", "Also write a colour-corrected copy", "checkbox"),
)
# Sliders' (min, max, step); any other range field counts outputs (1 to the operator's limit).
SLIDERS = {"strength": (0.0, 1.0, 0.05)}


def render_index(*, values: dict[str, Any] | None = None, status: int = 200):
    config = common.config()
    store = common.store()
    jobs = store.list_jobs(JobFilter(status=request.args.get("status") or None, limit=100))
    # The workers, one per device where a daemon keeps several: which device runs what.
    live = store.live_daemons(within_s=config.cluster.alive_within_s)
    return render_template(
        "index.html", jobs=jobs, statuses=STATUS_NAMES, current=request.args.get("status", ""),
        workers=[d for d in live if "work" in d.roles.split(",")],
        fields=FORM_FIELDS, sliders=SLIDERS,
        values=values or {**config.defaults.to_dict(), **session.get("form", {})},
        limits=config.limits,
    ), status


@bp.get("/")
def index():
    return render_index()


@bp.post("/submit")
def submit():
    config = common.config()
    values = form_values(request.form)
    refused = {**config.defaults.to_dict(), **values}  # the form shown again as it was sent
    try:
        Params.from_mapping(values, base=config.defaults, limits=config.limits)
    except ParamError as e:
        flash(f"not submitted: {e}", "danger")
        return render_index(values=refused, status=400)
    session["form"] = values  # the next form starts from these
    content = request.files.get("content")
    styles = [f for f in request.files.getlist("style") if f and f.filename]
    if not content or not content.filename or not styles:
        flash("not submitted: choose a content image and at least one style image", "danger")
        return render_index(values=refused, status=400)
    with tempfile.TemporaryDirectory(dir=config.state) as tmp:
        try:
            # The server names the files; the user's names only suggest the job name.
            content_path = _save_upload(content, Path(tmp) / "content", config)
            style_paths = [_save_upload(f, Path(tmp) / f"style-{i}", config) for i, f in enumerate(styles)]
            wanted = request.form.get("name", "").strip()
            name = submit_job(config, content_path, style_paths,
                              name=_suggest_name(wanted or content.filename, stem=not wanted), values=values)
        except (ImageError, SubmitError) as e:
            flash(f"not submitted: {e}", "danger")
            return render_index(values=refused, status=400)
    flash(f"queued as {name!r}; it appears below as soon as the service takes it", "success")
    return redirect(url_for("pages.index"))


@bp.app_errorhandler(413)
def too_large(_e):
    message = f"upload too large: the limit is {common.config().web.max_upload_mb:g} MB ([web] max_upload_mb)"
    if request.path.startswith("/api/"):
        return jsonify(error=message), 413
    flash(message, "danger")
    return render_index(status=413)


@bp.get("/jobs/<int:job_id>")
def job_page(job_id: int):
    config = common.config()
    job = common.job_or_404(job_id)
    live, published = config.live_log(job.id), config.published_log(job.outbox_dir)
    return render_template(
        "job.html", job=job, files=outbox_files(job), params=json.dumps(job.params, indent=2) if job.params else "",
        has_log=live.exists() or bool(published and published.exists()) or job.state == JobStatus.RUNNING,
        can_retry=can_resubmit(config, job), estimate=_estimate(job),
        advice=advice(config.job_folder(job.outbox_dir)) if job.state == JobStatus.FAILED else None)


@bp.post("/jobs/<int:job_id>/cancel")
def cancel(job_id: int):
    try:
        after = common.store().request_cancel(job_id)
        flash("cancelled" if after == JobStatus.CANCELLED else "stopping at the next iteration", "info")
    except StoreError as e:
        flash(str(e), "danger")
    return redirect(url_for("pages.job_page", job_id=job_id))


@bp.post("/jobs/<int:job_id>/retry")
def retry(job_id: int):
    config = common.config()
    job = common.job_or_404(job_id)
    if not can_resubmit(config, job):
        flash(f"job {job_id} cannot be retried: only a failed or cancelled job whose images were kept "
              "can be (drop its files into the inbox again instead)", "danger")
    else:
        try:
            name = resubmit_job(config, job, {})
            flash(f"queued again as {name!r}", "success")
        except (SubmitError, ImageError) as e:
            flash(str(e), "danger")
    return redirect(url_for("pages.index"))


def form_values(form) -> dict[str, Any]:
    """The form's parameters as the parameters type takes them (numbers as numbers)."""
    values: dict[str, Any] = {}
    for key, _label, kind in FORM_FIELDS:
        if kind == "checkbox":
            values[key] = form.get(key) == "on"
            continue
        raw = form.get(key, "").strip()
        if raw == "":
            continue
        if kind in ("number", "range"):
            try:
                number = float(raw)
            except ValueError:
                values[key] = raw  # the parameters type reports it with the field's name
                continue
            values[key] = int(number) if number.is_integer() and key in INTEGER_FIELDS else number
        else:
            values[key] = raw
    return values


def _estimate(job) -> str:
    """The job's estimate in words while it waits or runs (afterwards the record has the facts)."""
    est = job.record.get("estimate")
    if not est or job.state not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return ""
    return estimate_text(est, common.store().device_rate(est["device"]) if est.get("device") else None)


def _save_upload(storage, base: Path, config: Config) -> Path:
    """Save an upload under a server-chosen name; its type is checked by decoding it."""
    suffix = Path(storage.filename or "").suffix.lower()
    known = suffix in IMAGE_EXTS
    path = base.with_suffix(suffix if known else ".img")
    storage.save(path)
    try:
        # Only checked where it is kept as sent (an upload of a 1-bit 8900 px PNG cost 640 MB decoded whole).
        image = load_image(path, max_pixels=config.limits.max_image_pixels, max_edge=CHECK_EDGE if known else None)
    except ImageError as e:
        shown = Path(storage.filename or "upload").name[:80]
        raise ImageError(str(e).replace(path.name, shown, 1)) from None
    if known:
        return path
    # Readable but oddly named: hand the inbox a PNG it pairs by extension.
    converted = path.with_suffix(".png")
    image.save(converted)
    return converted


def _suggest_name(filename: str | None, *, stem: bool = True) -> str:
    stem = Path(filename or "upload").stem if stem else (filename or "upload")
    return "".join(c if c.isalnum() or c in "-_ " else "_" for c in stem)[:60] or "upload"
