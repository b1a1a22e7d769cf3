"""Who may pass: the login form, logout, and the check in front of every other request
(a session cookie for the pages and the API, HTTP Basic for `/metrics`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, session, url_for

from . import common
from .gate import PasswordGate

bp = Blueprint("auth", __name__)
OPEN_ENDPOINTS = ("auth.login", "static", "bootstrap.static")


def gate() -> PasswordGate:
    return current_app.extensions["nst"]["gate"]


@bp.before_app_request
def require_login():
    if not gate().required or request.endpoint in OPEN_ENDPOINTS:
        return None
    if gate().session_valid(session.get("sid"), session.get("auth")):
        return None
    if request.path == "/metrics":
        given = request.authorization.password if request.authorization else ""
        verdict = gate().check(client(), given) if given else None
        if verdict and verdict.ok:
            return None
        if verdict and verdict.wait_s > 0:
            return f"too many wrong passwords; try again in {verdict.wait_s:.0f} s\n", 429, {
                "Retry-After": str(int(verdict.wait_s + 1))}
        return "log in first (HTTP Basic, any user name, the [web] password)\n", 401, {
            "WWW-Authenticate": 'Basic realm="nst metrics"'}
    if request.path.startswith("/api/"):
        return jsonify(error="log in first"), 401
    return redirect(url_for("auth.login", next=request.path))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        verdict = gate().check(client(), request.form.get("password", "")) if gate().required else None
        if verdict and verdict.wait_s > 0:
            flash(f"too many wrong passwords; try again in {verdict.wait_s:.0f} s", "danger")
            return render_template("login.html"), 429, {"Retry-After": str(int(verdict.wait_s + 1))}
        if verdict and verdict.ok:
            gate().close_session(session.get("sid"))
            session.clear()
            session["auth"], session["sid"] = gate().tag, gate().open_session()
            return redirect(local_target(request.args.get("next", "/")))
        flash("wrong password", "danger")
        return render_template("login.html"), 401
    return render_template("login.html")


@bp.post("/logout")
def logout():
    gate().close_session(session.get("sid"))  # the cookie, if kept, opens nothing any more
    session.clear()
    return redirect(url_for("auth.login") if common.config().web.password else url_for("pages.index"))


def client() -> str:
    """Who is asking: the peer's address, which waitress sets from X-Forwarded-For when the
    peer is the configured `[web] trusted_proxy`."""
    return request.remote_addr or "?"


def local_target(target: str) -> str:
    """Where to go after logging in: a path of ours, never another site (`//evil`, `/\\evil`,
    a tab that browsers drop, a scheme)."""
    if not target or any(not c.isprintable() or c in " \\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
