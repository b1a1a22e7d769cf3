"""Putting a job into the inbox the safe way: images first, the sidecar last, each renamed into place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from nst_engine.errors import UserError
from nst_engine.images import ImageError, load_image
from nst_engine.params import INITS

from .config import Config
from .errors import SidecarError
from .files import write_bytes_atomic
from .models import SIDECAR_LEFT
from .pipeline.inbox import CHECK_EDGE, IMAGE_EXTS, PRIORITIES, decode_table, in_priority_range, image_role, parse_sidecar, safe_component


class SubmitError(UserError):
    """A submission the inbox would refuse, refused before anything is written."""


def submit_job(config: Config, content: Path, styles: Sequence[Path], *, name: str | None = None,
               values: dict[str, Any] | None = None, priority: int = 0) -> str:
    """Copy the images into the inbox and write `NAME.json` last; return the job's name."""
    if not in_priority_range(priority):
        raise SubmitError(f"priority {priority}: use a whole number from {PRIORITIES[0]} to {PRIORITIES[1]}")
    for path in [content, *styles]:
        try:
            load_image(path, max_pixels=config.limits.max_image_pixels, max_edge=CHECK_EDGE)
        except ImageError as e:
            raise SubmitError(str(e)) from None
    inbox = config.inbox
    if not inbox.is_dir():
        raise SubmitError(f"inbox {inbox} does not exist (nst init creates it)")
    name = _free_name(inbox, safe_component(name or content.stem))
    targets = [(content, inbox / _placed_name(content, f"{name}.content"))]
    targets += [(style, inbox / _placed_name(style, f"{name}.style" if len(styles) == 1 else f"{name}.style-{i}"))
                for i, style in enumerate(styles, start=1)]
    sidecar: dict[str, Any] = dict(values or {})
    sidecar["content"] = targets[0][1].name
    placed = [target.name for _, target in targets[1:]]
    sidecar["style"] = placed[0] if len(placed) == 1 else placed
    if priority:
        sidecar["priority"] = priority
    data = json.dumps(sidecar, indent=2).encode()
    try:  # the inbox's own rules, before anything is written: a refusal costs nothing queued
        parse_sidecar(data, name=name, suffix=".json", base=config.defaults, limits=config.limits)
    except SidecarError as e:
        raise SubmitError(str(e).removeprefix(f"{name}.json: ")) from None
    for source, target in targets:
        write_bytes_atomic(target, source.read_bytes())  # a hidden temporary name, then a rename
    write_bytes_atomic(inbox / f"{name}.json", data)
    return name


def _archived_images(config: Config, job: Any) -> tuple[Path | None, list[Path]]:
    """The content and style images kept in a finished job's outbox folder, where they exist.

    A job refused at intake kept its own files without roles (its sidecar was not read):
    `NAME.content.EXT` and `NAME.style.EXT` are then known by their names, as the inbox knows
    them."""
    folder = config.job_folder(job.outbox_dir)
    if folder is None:
        return None, []
    inputs_dir = folder / "inputs"
    by_role: dict[str, list[Path]] = {}
    for item in job.inputs:
        if not item.get("refused"):
            by_role.setdefault(_role(item), []).append(inputs_dir / item["name"])
    content = (by_role.get("content") or [None])[0]
    styles = by_role.get("style") or []
    if content is None or not styles or not content.is_file() or not all(s.is_file() for s in styles):
        return None, []
    return content, styles


def _role(item: dict[str, Any]) -> str:
    role = item.get("role", "file")
    return (image_role(str(item.get("name", ""))) or role) if role == "file" else role


def _archived_settings(config: Config, job: Any) -> dict[str, Any]:
    """Every valid setting of the job's archived sidecar, one by one by the inbox's own rule
    (`parse_sidecar`): a misspelt key or an out-of-range value is left out, and the rest
    (size, iterations, priority, tags, ...) kept for the retry."""
    sidecars = [item["name"] for item in job.inputs if item.get("role") == "sidecar" and not item.get("refused")]
    if not job.outbox_dir or not sidecars:
        return {}
    path = config.outbox / job.outbox_dir / "inputs" / sidecars[0]
    try:
        values = decode_table(path.read_bytes().decode("utf-8-sig"), path.name, path.suffix.lower())
    except (OSError, UnicodeDecodeError, SidecarError):
        return {}
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("content", "style"):
            continue  # the archived images are re-sent under new names
        try:
            parse_sidecar(json.dumps({**kept, key: value}).encode(), name=job.name, suffix=".json",
                          base=config.defaults, limits=config.limits)
        except (SidecarError, TypeError, ValueError):  # TypeError: a TOML date, which JSON cannot hold
            continue
        kept[key] = value
    return kept


def retry_values(config: Config, job: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """A retry's settings: the original sidecar's valid ones, the job's recorded parameters
    (where it got that far), then `overrides`, which change or mend them."""
    values = {**_archived_settings(config, job), **job.params, **overrides}
    if values.get("init") not in (None, *INITS):
        values.pop("init")  # an init image is not among the archived inputs we re-send
    return values


def can_resubmit(config: Config, job: Any) -> bool:
    """The retry rule: a failed or cancelled job whose images were kept in its outbox folder."""
    return job.state.retryable and _archived_images(config, job)[0] is not None


def resubmit_job(config: Config, job: Any, overrides: dict[str, Any]) -> str:
    """Queue a finished job again from the inputs archived in its outbox folder, with its
    settings (`retry_values`)."""
    if not job.state.retryable:
        raise SubmitError(f"job {job.id} is {job.status}; only failed or cancelled jobs can be retried")
    if job.error == SIDECAR_LEFT:
        raise SubmitError(f"job {job.id} took nothing in: {SIDECAR_LEFT}; drop the job into the inbox again")
    if not job.outbox_dir:
        raise SubmitError(f"job {job.id} has no outbox folder to take its inputs from yet "
                          "(a cancelled job's folder appears within seconds while the service runs)")
    content, styles = _archived_images(config, job)
    if content is None:
        raise SubmitError(f"job {job.id}'s outbox folder does not hold its content and style images "
                          "(it failed before they were taken in): drop them into the inbox again")
    values = retry_values(config, job, overrides)
    priority = values.pop("priority", job.priority)
    return submit_job(config, content, styles, name=job.name, values=values, priority=priority)


def _free_name(inbox: Path, name: str) -> str:
    candidate, n = name, 2
    while any((inbox / f"{candidate}{ext}").exists() for ext in (".json", ".toml")) or \
            any(inbox.glob(f"{_glob_escape(candidate)}.*")):
        candidate = f"{name}-{n}"
        n += 1
    return candidate


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _placed_name(source: Path, stem: str) -> str:
    suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_EXTS else ".png"
    return f"{stem}{suffix}"
