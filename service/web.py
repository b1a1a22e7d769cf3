"""The web page: a second door into the same inbox and job history.

The page never runs a job: an upload is written into the inbox exactly as
`nst submit` writes it, and the daemon does the rest. No torch is imported.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tempfile
import zipfile
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Iterator

from flask import (
    Flask, Response, abort, flash, jsonify, redirect, render_template, request, send_file, session, url_for,
)
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from nst_engine.images import ImageError, load_image
from nst_engine.params import INTEGER_FIELDS, ParamError, Params

from .config import Config
from .display import estimate_text
from .inbox import CHECK_EDGE, IMAGE_EXTS
from .status import NAMES as STATUS_NAMES
from .status import JobStatus
from .store import JobFilter, Store, StoreError
from .outbox import advice
from .submit import SubmitError, can_resubmit, resubmit_job, submit_job
from .webauth import PasswordGate

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
# Served inline (shown in the page): only the image types the service itself writes.
INLINE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                ".gif": "image/gif"}
# Every response: no script but our own file, no framing, no type sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(config: Config, *, store: Store | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(config),
        MAX_CONTENT_LENGTH=int(config.web.max_upload_mb * 1024 * 1024),
        BOOTSTRAP_SERVE_LOCAL=True,  # Bootstrap from the package: no CDN, works offline
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    Bootstrap5(app)
    CSRFProtect(app)
    from .display import local_time

    # The server renders the first state of every bar, so nothing waits for the first poll.
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["fraction"] = lambda job: _api_job(job)["progress"]["fraction"]
    store = store or Store(config.database)
    store.migrate()
    app.extensions["nst"] = {"config": config, "store": store}

    gate = PasswordGate(config.web.password, app.config["SECRET_KEY"])
    app.extensions["nst"]["gate"] = gate

    @app.before_request
    def require_login():
        if not gate.required or request.endpoint in ("login", "static", "bootstrap.static"):
            return None
        if gate.session_valid(session.get("sid"), session.get("auth")):
            return None
        if request.path == "/metrics":
            given = request.authorization.password if request.authorization else ""
            verdict = gate.check(_client(), given) if given else None
            if verdict and verdict.ok:
                return None
            if verdict and verdict.wait_s > 0:
                return f"too many wrong passwords; try again in {verdict.wait_s:.0f} s\n", 429, {
                    "Retry-After": str(int(verdict.wait_s + 1))}
            return "log in first (HTTP Basic, any user name, the [web] password)\n", 401, {
                "WWW-Authenticate": 'Basic realm="nst metrics"'}
        if request.path.startswith("/api/"):
            return jsonify(error="log in first"), 401
        return redirect(url_for("login", next=request.path))

    @app.after_request
    def security_headers(response):
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(e):
        if request.path.startswith("/api/"):
            return jsonify(error=e.description or e.name), e.code
        return e

    @app.errorhandler(Exception)
    def internal_error(e):
        if isinstance(e, HTTPException):
            return http_error(e)
        app.logger.exception("internal error on %s", request.path)
        if request.path.startswith("/api/"):
            return jsonify(error="internal error (a bug in nst; the service log has the details)"), 500
        return render_template("message.html", title="Internal error",
                               message="A bug in nst; the service log has the details."), 500

    @app.errorhandler(413)
    def too_large(_e):
        message = f"upload too large: the limit is {config.web.max_upload_mb:g} MB ([web] max_upload_mb)"
        if request.path.startswith("/api/"):
            return jsonify(error=message), 413
        flash(message, "danger")
        return render_index(status=413)

    @app.errorhandler(CSRFError)
    def csrf_failed(e):
        return render_template("message.html", title="Form expired", message=e.description), 400

    def render_index(*, values: dict[str, Any] | None = None, status: int = 200):
        jobs = store.list_jobs(JobFilter(status=request.args.get("status") or None, limit=100))
        return render_template(
            "index.html", jobs=jobs, statuses=STATUS_NAMES, current=request.args.get("status", ""),
            fields=FORM_FIELDS, sliders=SLIDERS,
            values=values or {**config.defaults.to_dict(), **session.get("form", {})},
            limits=config.limits,
        ), status

    @app.get("/")
    def index():
        return render_index()

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            verdict = gate.check(_client(), request.form.get("password", "")) if gate.required else None
            if verdict and verdict.wait_s > 0:
                flash(f"too many wrong passwords; try again in {verdict.wait_s:.0f} s", "danger")
                return render_template("login.html"), 429, {"Retry-After": str(int(verdict.wait_s + 1))}
            if verdict and verdict.ok:
                gate.close_session(session.get("sid"))
                session.clear()
                session["auth"], session["sid"] = gate.tag, gate.open_session()
                return redirect(_local_target(request.args.get("next", "/")))
            flash("wrong password", "danger")
            return render_template("login.html"), 401
        return render_template("login.html")

    @app.post("/logout")
    def logout():
        gate.close_session(session.get("sid"))  # the cookie, if kept, opens nothing any more
        session.clear()
        return redirect(url_for("login") if config.web.password else url_for("index"))

    @app.post("/api/validate")
    def api_validate():
        """The form's fields checked before its files are sent: a wrong field costs no upload and
        keeps the chosen files (the page calls this first)."""
        values = _form_values(request.form)
        try:
            Params.from_mapping(values, base=config.defaults, limits=config.limits)
        except ParamError as e:
            # Messages name their key first ("size: ..."): the page marks that field.
            key = str(e).partition(":")[0].strip()
            return jsonify(ok=False, error=str(e), field=key if key in values else None), 200
        return jsonify(ok=True)

    @app.post("/submit")
    def submit():
        values = _form_values(request.form)
        try:
            Params.from_mapping(values, base=config.defaults, limits=config.limits)
        except ParamError as e:
            flash(f"not submitted: {e}", "danger")
            return render_index(values={**config.defaults.to_dict(), **values}, status=400)
        session["form"] = values  # the next form starts from these
        content = request.files.get("content")
        styles = [f for f in request.files.getlist("style") if f and f.filename]
        if not content or not content.filename or not styles:
            flash("not submitted: choose a content image and at least one style image", "danger")
            return render_index(values={**config.defaults.to_dict(), **values}, status=400)
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
                return render_index(values={**config.defaults.to_dict(), **values}, status=400)
        flash(f"queued as {name!r}; it appears below as soon as the service takes it", "success")
        return redirect(url_for("index"))

    @app.get("/jobs/<int:job_id>")
    def job_page(job_id: int):
        job = _job_or_404(store, job_id)
        files = _outbox_files(config, job)
        live, published = config.live_log(job.id), config.published_log(job.outbox_dir)
        return render_template(
            "job.html", job=job, files=files, params=json.dumps(job.params, indent=2) if job.params else "",
            has_log=live.exists() or bool(published and published.exists()) or job.state == JobStatus.RUNNING,
            can_retry=can_resubmit(config, job), estimate=_estimate(store, job),
            advice=advice(config.job_folder(job.outbox_dir)) if job.state == JobStatus.FAILED else None)

    @app.get("/jobs/<int:job_id>/live.jpg")
    def job_live(job_id: int):
        """The image being made, while the job runs (the worker replaces it every few seconds)."""
        job = _job_or_404(store, job_id)
        path = config.live_image(job.id)
        if job.state != JobStatus.RUNNING or not path.is_file():
            abort(404)
        response = send_file(io.BytesIO(path.read_bytes()), mimetype="image/jpeg")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/jobs/<int:job_id>/losses")
    def api_losses(job_id: int):
        """The loss curve so far: [{step, total, content, style, tv}, ...] (thinned to at most 500)."""
        job = _job_or_404(store, job_id)
        try:
            return jsonify(json.loads(config.live_losses(job.id).read_text()))
        except (OSError, ValueError):
            return jsonify([])

    @app.get("/jobs/<int:job_id>/files/<path:name>")
    def job_file(job_id: int, name: str):
        job = _job_or_404(store, job_id)
        files = _outbox_files(config, job)
        if name not in files:  # only files the folder really holds; never a path from the request
            abort(404)
        inline = INLINE_TYPES.get(Path(name).suffix.lower())
        if inline is None:  # anything else (archived .html, .svg, ...) never renders in our origin
            return send_file(files[name], mimetype="application/octet-stream", as_attachment=True,
                             download_name=Path(name).name)
        return send_file(files[name], mimetype=inline, as_attachment=request.args.get("download") == "1",
                         download_name=Path(name).name)

    @app.get("/jobs/<int:job_id>/zip")
    def job_zip(job_id: int):
        job = _job_or_404(store, job_id)
        files = _outbox_files(config, job)
        if not files:
            abort(404)
        # Streamed as it is made: built in memory, four downloads of a job with a 300 MB file
        # took the process (the worker's too) from 0.95 to 2.2 GB.
        response = Response(_zip_stream(files, job.outbox_dir), mimetype="application/zip")
        response.headers["Content-Disposition"] = content_disposition(f"{job.outbox_dir}.zip")
        return response

    @app.post("/jobs/<int:job_id>/cancel")
    def cancel(job_id: int):
        try:
            after = store.request_cancel(job_id)
            flash("cancelled" if after == JobStatus.CANCELLED else "stopping at the next iteration", "info")
        except StoreError as e:
            flash(str(e), "danger")
        return redirect(url_for("job_page", job_id=job_id))

    @app.post("/jobs/<int:job_id>/retry")
    def retry(job_id: int):
        job = _job_or_404(store, job_id)
        if not can_resubmit(config, job):
            flash(f"job {job_id} cannot be retried: only a failed or cancelled job whose images were kept "
                  "can be (drop its files into the inbox again instead)", "danger")
        else:
            try:
                name = resubmit_job(config, job, {})
                flash(f"queued again as {name!r}", "success")
            except (SubmitError, ImageError) as e:
                flash(str(e), "danger")
        return redirect(url_for("index"))

    @app.get("/metrics")
    def metrics():
        """The Prometheus text format; README 'Metrics' lists the series and example alerts."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from .metrics import registry_for

        return generate_latest(registry_for(store)), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.get("/api/jobs")
    def api_jobs():
        try:
            limit = min(500, max(1, int(request.args.get("limit", 50))))
        except ValueError:
            return jsonify(error="limit must be a number"), 400
        status = request.args.get("status") or None
        if status and status not in STATUS_NAMES:
            return jsonify(error=f"status must be one of {', '.join(STATUS_NAMES)}"), 400
        jobs = store.list_jobs(JobFilter(status=status, limit=limit, name_glob=request.args.get("name") or None))
        return jsonify([_api_job(j) for j in jobs])

    @app.get("/api/jobs/<int:job_id>")
    def api_job(job_id: int):
        job = _job_or_404(store, job_id)
        return jsonify({**_api_job(job, brief=False), "files": sorted(_outbox_files(config, job))})

    @app.get("/api/jobs/<int:job_id>/log")
    def api_log(job_id: int):
        job = _job_or_404(store, job_id)
        try:
            offset = max(0, int(request.args.get("offset", 0)))
        except ValueError:
            return jsonify(error="offset must be a whole number of bytes"), 400
        live, final = config.live_log(job.id), config.published_log(job.outbox_dir)
        path = live if live.exists() else final
        text = b""
        if path is not None and path.exists():
            with open(path, "rb") as f:
                offset = min(offset, os.fstat(f.fileno()).st_size)
                f.seek(offset)
                text = f.read(256 * 1024)
        return jsonify(text=text.decode("utf-8", "replace"), offset=offset + len(text),
                       finished=job.state.finished)

    return app


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


# Already compressed: stored as they are, which costs no CPU and loses nothing.
_STORED = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".zip", ".gz"}


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


def _api_job(job, *, brief: bool = True) -> dict[str, Any]:
    """The job's one serialization, with the page's address."""
    return {**job.to_dict(brief=brief), "url": f"/jobs/{job.id}"}


def _job_or_404(store: Store, job_id: int):
    job = store.get(job_id)
    if job is None:
        abort(404)
    return job


def _outbox_files(config: Config, job) -> dict[str, Path]:
    """Relative name -> path of every regular file in the job's outbox folder."""
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


def _estimate(store: Store, job) -> str:
    """The job's estimate in words while it waits or runs (afterwards the record has the facts)."""
    est = job.record.get("estimate")
    if not est or job.state not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return ""
    return estimate_text(est, store.device_rate(est["device"]) if est.get("device") else None)


def _form_values(form) -> dict[str, Any]:
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


def _client() -> str:
    """Who is asking: the peer's address, which waitress sets from X-Forwarded-For when the
    peer is the configured `[web] trusted_proxy`."""
    return request.remote_addr or "?"


def _local_target(target: str) -> str:
    """Where to go after logging in: a path of ours, never another site (`//evil`, `/\\evil`,
    a tab that browsers drop, a scheme)."""
    if not target or any(not c.isprintable() or c in " \\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _suggest_name(filename: str | None, *, stem: bool = True) -> str:
    stem = Path(filename or "upload").stem if stem else (filename or "upload")
    return "".join(c if c.isalnum() or c in "-_ " else "_" for c in stem)[:60] or "upload"


def _secret_key(config: Config) -> bytes:
    """A per-installation session key, kept in the state folder (mode 0600)."""
    config.state.mkdir(parents=True, exist_ok=True)
    path = config.state / "web-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


class WebServer:
    """The page served by waitress (a production WSGI server: pure Python, threads), with the
    two calls the daemon and `nst web` need. No access log: the page polls once a second, and
    those lines would drown the service log."""

    def __init__(self, app: Flask, host: str, port: int, *, threads: int = 8, trusted_proxy: str = "") -> None:
        from waitress import create_server

        # Behind the reverse proxy at `trusted_proxy`, the client is the address it forwards
        # (else every user would be the proxy, sharing one login limiter); from anyone else
        # such headers are dropped.
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"},
                 "trusted_proxy_count": 1} if trusted_proxy else {}
        self._server = create_server(app, host=host, port=port, threads=threads, ident="nst",
                                     clear_untrusted_proxy_headers=True, **proxy)
        # waitress gives the bound port as a string (and the one chosen for port 0).
        self.host, self.port = host, int(self._server.effective_port)

    def serve_forever(self) -> None:
        self._server.run()

    def shutdown(self) -> None:
        self._server.close()


def serve(config: Config, *, host: str | None = None, port: int | None = None) -> WebServer:
    """The web page's server; `serve_forever()` runs it, `shutdown()` stops it."""
    return WebServer(create_app(config), host or config.web.host, config.web.port if port is None else port,
                     trusted_proxy=config.web.trusted_proxy)
