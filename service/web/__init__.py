"""The web page: a second door into the same inbox and job history.

The page never runs a job: an upload is written into the inbox exactly as `nst submit` writes
it, and the daemon does the rest. No torch is imported. Its rooms are blueprints: `auth` (the
login and who may pass), `pages` (the form, the history, a job's page and its buttons), `files`
(a job's outbox files, its zip, the live image) and `api` (JSON for the page's polling, and
`/metrics`).
"""

from __future__ import annotations

import os
import secrets

from flask import Flask, jsonify, render_template, request
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from ..config import Config
from ..display import local_time
from ..store import Store
from .common import api_job
from .gate import PasswordGate

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
    from . import api, auth, files, pages

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
    # The server renders the first state of every bar, so nothing waits for the first poll.
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["fraction"] = lambda job: api_job(job)["progress"]["fraction"]
    store = store or Store(config.database)
    store.migrate()
    app.extensions["nst"] = {"config": config, "store": store,
                             "gate": PasswordGate(config.web.password, app.config["SECRET_KEY"])}
    for blueprint in (auth.bp, pages.bp, files.bp, api.bp):
        app.register_blueprint(blueprint)
    _errors(app)

    @app.after_request
    def security_headers(response):
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    return app


def _errors(app: Flask) -> None:
    """The API answers in JSON, the pages in HTML; a bug never shows a traceback."""

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

    @app.errorhandler(CSRFError)
    def csrf_failed(e):
        return render_template("message.html", title="Form expired", message=e.description), 400


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
