"""Running the real daemon as a subprocess on a temporary folder, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from PIL import Image

import pace
from service.config import load_config
from service.store import JobFilter, Store

ROOT = Path(__file__).resolve().parent.parent
# However long things keep moving, a wait ends after this many of its ceilings.
MAX_WAITS = 20


def small_pair(edge: int = 96) -> tuple[Image.Image, Image.Image]:
    content = Image.open(ROOT / "samples" / "tubingen.jpg").convert("RGB")
    style = Image.open(ROOT / "samples" / "starry_night.jpg").convert("RGB")
    content.thumbnail((edge, edge))
    style.thumbnail((edge, edge))
    return content, style


class ServiceDir:
    """A config, inbox, outbox and state in a temporary folder, and the daemon on it."""

    def __init__(self, root: Path, *, defaults: dict | None = None, watch: dict | None = None,
                 worker: dict | None = None, extra: str = "", node: str = "", paths: dict | None = None,
                 cluster: dict | None = None) -> None:
        self.root = root
        self.config_path = root / f"config{'-' + node if node else ''}.toml"
        sections = {
            "defaults": {"size": 64, "iterations": 4, "scales": [1.0], **(defaults or {})},
            "watch": {"settle_seconds": 0.3, "rescan_seconds": 2.0, "missing_timeout": 3.0, **(watch or {})},
            "worker": {"checkpoint_seconds": 0.5, **(worker or {})},
        }
        if paths:
            sections["paths"] = paths
        if cluster:
            sections["cluster"] = cluster
        self.config_path.write_text("".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            for name, values in sections.items()) + extra)
        self.config = load_config(self.config_path)
        for folder in (self.config.inbox, self.config.outbox, self.config.state, self.config.shared_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.inbox, self.outbox = self.config.inbox, self.config.outbox
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self._store: Store | None = None

    # -- the daemon ------------------------------------------------------------------

    def start(self, env: dict | None = None) -> "ServiceDir":
        self.launch(env)
        return self.started()

    def launch(self, env: dict | None = None) -> "ServiceDir":
        """Start the daemon without waiting for it (`started` waits): several daemons start
        side by side, each loading torch and the network while the others do."""
        log = self.root / f"daemon-{self.config_path.stem}-{len(self.logs)}.log"
        self.logs.append(log)
        extra = env or {}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        env.update(extra)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--config", str(self.config_path), "serve"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )
        return self

    def started(self) -> "ServiceDir":
        self.wait_for(lambda: "serving:" in self.logs[-1].read_text(errors="replace"), timeout=60,
                      what="the daemon to start")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send `sig` and wait for the exit (`timeout` scaled to this machine's pace); return how
        long it took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=pace.ceiling(timeout))
        took = time.monotonic() - started
        self.proc = None
        return took

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    # -- jobs ------------------------------------------------------------------------

    def drop(self, name: str, sidecar: dict | str | None = None, *, content: Image.Image | None = None,
             style: Image.Image | None = None, suffix: str = ".toml") -> None:
        """Drop a pair and its sidecar the safe way: images first, the sidecar last, by rename."""
        c, s = small_pair()
        if content is not False:
            self._write(self.inbox / f"{name}.content.png", content or c)
        if style is not False:
            self._write(self.inbox / f"{name}.style.png", style or s)
        if isinstance(sidecar, dict):
            text = json.dumps(sidecar) if suffix == ".json" else "\n".join(
                f"{k} = {json.dumps(v)}" for k, v in sidecar.items())
        else:
            text = sidecar or ""
        tmp = self.inbox / f".{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.rename(self.inbox / f"{name}{suffix}")

    @staticmethod
    def _write(path: Path, img: Image.Image) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        img.save(tmp, format="PNG")
        tmp.rename(path)

    def store(self) -> Store:
        """The test's own connection to the daemon's store, kept for the test: a new engine for
        each look cost 5 ms of CPU every tenth of a second of a wait, taken from the daemon."""
        if self._store is None:
            self._store = Store(self.config.database)
        return self._store

    def jobs(self):
        url = self.config.database
        if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
            return []
        return self.store().list_jobs(JobFilter(limit=None))

    def job(self, name: str):
        matches = [j for j in self.jobs() if j.name == name]
        return matches[0] if matches else None

    def wait_job(self, name: str, status: str | tuple[str, ...] = ("done", "failed", "cancelled"),
                 timeout: float = 90.0):
        wanted = (status,) if isinstance(status, str) else status
        self.wait_for(lambda: (j := self.job(name)) is not None and j.status in wanted, timeout=timeout,
                      what=f"job {name} to be {'/'.join(wanted)}")
        return self.job(name)

    def wait_for(self, condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> None:
        """Until `condition()` holds. Fails only when nothing moved for `timeout` seconds (scaled
        to this machine's pace): no line in the daemons' logs or the jobs' logs, no change in the
        jobs' records or the outbox. A slow or busy machine only makes it wait longer; a stuck
        daemon fails it, saying what it waited for and what the daemon logged."""
        still = pace.ceiling(timeout)
        started = changed = time.monotonic()
        motion, looked = self._motion(), changed
        while True:
            if condition():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log_text()}")
            now = time.monotonic()
            if now - looked >= 1.0:
                looked, now_motion = now, self._motion()
                if now_motion != motion:
                    motion, changed = now_motion, now
            if now - changed > still or now - started > MAX_WAITS * still:
                quiet = f"nothing moved for {now - changed:.0f} s" if now - changed > still else \
                    f"still moving after {now - started:.0f} s"
                raise AssertionError(f"{quiet} waiting for {what}:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def _motion(self) -> tuple:
        """What changes while the service works: its logs' sizes, the jobs' records, the outbox."""
        logs = [p.stat().st_size for p in self.logs if p.exists()]
        logs += sorted(p.stat().st_size for p in self.config.shared_dir.glob("jobs/*/job.log"))
        try:
            jobs = [(j.id, j.status, j.progress_json, j.staged) for j in self.jobs()]
        except Exception:  # the database restarting (a fault test): no motion to read
            jobs = []
        outbox = sorted(p.name for p in self.outbox.iterdir()) if self.outbox.is_dir() else []
        return tuple(logs), tuple(jobs), tuple(outbox)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._store is not None:
            self._store.dispose()
            self._store = None


def start_all(nodes: list[ServiceDir], env: dict | None = None) -> list[ServiceDir]:
    """Start several daemons side by side and wait until each serves."""
    for node in nodes:
        node.launch(env)
    return [node.started() for node in nodes]

