"""A job's files: its outbox folder's files one by one or as a streamed zip, and the image a
running job is making. Only files the folder holds are served, never a path from the request,
and only the image types the service writes are shown inline."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Iterator

from flask import Blueprint, Response, abort, request, send_file

from ..status import JobStatus
from ..store import Job
from . import common

bp = Blueprint("files", __name__)

# Served inline (shown in the page): only the image types the service itself writes.
INLINE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                ".gif": "image/gif"}
# Already compressed: stored in a zip as they are, which costs no CPU and loses nothing.
_STORED = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".avif", ".zip", ".gz"}


@bp.get("/jobs/<int:job_id>/live.jpg")
def job_live(job_id: int):
    """The image being made, while the job runs (the worker replaces it every few seconds)."""
    job = common.job_or_404(job_id)
    path = common.config().live_image(job.id)
    if job.state != JobStatus.RUNNING or not path.is_file():
        abort(404)
    response = send_file(io.BytesIO(path.read_bytes()), mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jobs/<int:job_id>/files/<path:name>")
def job_file(job_id: int, name: str):
    files = outbox_files(common.job_or_404(job_id))
    if name not in files:  # only files the folder really holds; never a path from the request
        abort(404)
    inline = INLINE_TYPES.get(Path(name).suffix.lower())
    if inline is None:  # anything else (archived .html, .svg, ...) never renders in our origin
        return send_file(files[name], mimetype="application/octet-stream", as_attachment=True,
                         download_name=Path(name).name)
    return send_file(files[name], mimetype=inline, as_attachment=request.args.get("download") == "1",
                     download_name=Path(name).name)


@bp.get("/jobs/<int:job_id>/zip")
def job_zip(job_id: int):
    job = common.job_or_404(job_id)
    files = outbox_files(job)
    if not files:
        abort(404)
    # Streamed as it is made: built in memory, four downloads of a job with a 300 MB file
    # took the process (the worker's too) from 0.95 to 2.2 GB.
    response = Response(_zip_stream(files, job.outbox_dir), mimetype="application/zip")
    response.headers["Content-Disposition"] = content_disposition(f"{job.outbox_dir}.zip")
    return response


def outbox_files(job: Job) -> dict[str, Path]:
    """Relative name -> path of every regular file in the job's outbox folder."""
    config = common.config()
    folder = config.job_folder(job.outbox_dir)
    if folder is None:
        return {}
    root = folder.resolve()
    if root.parent != config.outbox.resolve() or not root.is_dir():
        return {}
    files = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            path = Path(dirpath) / n
            if path.is_file() and not path.is_symlink():
                files[str(path.relative_to(root))] = path
    return files


class _Sink(io.RawIOBase):
    """Where zipfile writes: kept only until the next chunk is sent (no seeking, so zipfile
    writes each member's sizes after its data)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _zip_stream(files: dict[str, Path], folder: str) -> Iterator[bytes]:
    """A zip of `files` under `folder/`, a megabyte at a time."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as zf:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo.from_file(path, f"{folder}/{name}")
            info.compress_type = zipfile.ZIP_STORED if path.suffix.lower() in _STORED else zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def content_disposition(filename: str) -> str:
    """An attachment header for any name (RFC 6266: an ASCII fallback and the UTF-8 name)."""
    from urllib.parse import quote

    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
