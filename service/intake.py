"""Turning settled files in the inbox into recorded, staged jobs.

The folder is the truth: every scan looks at what is there, and watchdog
events only make the next scan come sooner. Staging is idempotent, so a crash
at any step is finished by the next scan or the next start:

1. the job is recorded under the sidecar's key (once, whatever calls it);
2. shared images are copied and the job's own files moved into
   `state/jobs/<id>/inputs/`, the sidecar last;
3. the job is marked staged, and only then can a worker claim it.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nst_engine.hashing import sha256_file

from .config import Config
from .inbox import (
    SIDECAR_EXTS, Settle, Sidecar, SidecarError, default_image, is_ignored, is_own_file, job_key, job_name,
    listdir, parse_sidecar, resolve_in_inbox, sha256_bytes,
)
from .outbox import JobFolder, Outbox, error_text
from .store import JobStatus, Store, utcnow

log = logging.getLogger("nst.intake")

# A job recorded but not staged for this long was left by a watcher that died mid-way.
STAGING_GRACE_S = 30.0


@dataclass
class _Input:
    role: str  # content, style, init, sidecar
    source: Path  # where it is in the inbox
    own: bool  # moved with the job (else copied)


class _NotReady(Exception):
    """Images named by a sidecar are missing, still being written, or not decodable yet."""


class Intake:
    def __init__(self, config: Config, store: Store, outbox: Outbox,
                 image_check: Callable[[Path], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.store = store
        self.outbox = outbox
        self.settle = Settle(config.watch.settle_seconds, clock)
        self.clock = clock
        self.image_check = image_check or _decode_check(config.limits.max_image_pixels)
        self._waiting: dict[Path, float] = {}  # sidecar -> when it first waited for its images
        self._checked: dict[tuple[Path, int, int], None] = {}
        self.inbox_missing_reported = False

    @property
    def archive(self) -> Path:
        return self.config.shared_dir / "jobs"

    def hint(self, path: Path) -> None:
        self.settle.hint(path)

    # -- the scan -------------------------------------------------------------------

    def scan(self) -> int:
        """Look at the whole inbox once; return how many jobs were queued."""
        inbox = self.config.inbox
        if not inbox.is_dir():
            if not self.inbox_missing_reported:
                log.error("inbox %s is missing or not a folder; waiting for it to come back", inbox)
                self.inbox_missing_reported = True
            return 0
        if self.inbox_missing_reported:
            log.warning("inbox %s is back; watching it again", inbox)
            self.inbox_missing_reported = False
        entries = listdir(inbox)
        seen: list[Path] = []
        queued = 0
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if is_ignored(entry.name, self.config.watch.ignore):
                continue
            if not (path.suffix.lower() in SIDECAR_EXTS):
                continue
            seen.append(path)
            if not self.settle.settled(path):
                continue
            try:
                if self._take(path):
                    queued += 1
            except _NotReady:
                continue
            except OSError as e:
                # A file vanished or is unreadable mid-scan: look again next time.
                log.warning("could not take %s yet: %s", path.name, e)
        # Only sidecars and the images they name are ever tracked; forget those that are gone.
        self.settle.keep_only(p for p in list(self.settle.tracked()) if p.exists())
        for gone in [p for p in self._waiting if p not in seen]:
            del self._waiting[gone]
        return queued

    def _take(self, sidecar_path: Path) -> bool:
        """Record and stage one settled sidecar. True if a job was queued."""
        st = sidecar_path.lstat()
        data = b"" if not sidecar_path.is_file() else sidecar_path.read_bytes()
        name = job_name(sidecar_path)
        key = job_key(sidecar_path.name, sha256_bytes(data), st.st_mtime_ns)
        try:
            sidecar = self._parse(sidecar_path, data)
            inputs = self._inputs(sidecar, sidecar_path)
        except SidecarError as e:
            self._fail(key, name, sidecar_path, str(e), self._hint_for(str(e)))
            return False
        job, created = self.store.enqueue(
            key=key, name=name, params=sidecar.params.to_dict(), priority=sidecar.priority,
            requires_gpu=sidecar.requires_gpu, tags=sidecar.tags,
        )
        if job.state != JobStatus.QUEUED or job.staged:
            # Already taken by an earlier scan or another watcher: only its leftovers remain.
            self._finish_leftover(job.id, sidecar_path)
            return False
        if not created and (utcnow() - job.submitted_at).total_seconds() < STAGING_GRACE_S:
            return False  # another watcher recorded it a moment ago and is staging it
        staged = self._stage(job.id, inputs)
        self.store.mark_staged(job.id, staged)
        self._waiting.pop(sidecar_path, None)
        self.settle.forget(sidecar_path)
        log.info("queued job %d %r (%s)", job.id, name, ", ".join(i["name"] for i in staged))
        return True

    def _parse(self, path: Path, data: bytes) -> Sidecar:
        if path.is_symlink():
            resolve_in_inbox(self.config.inbox, path.name)  # refuses links leaving the inbox
        if path.is_dir():
            raise SidecarError(f"{path.name}: is a folder; a sidecar must be a file")
        return parse_sidecar(
            data, name=job_name(path), suffix=path.suffix, base=self.config.defaults, limits=self.config.limits
        )

    def _inputs(self, sidecar: Sidecar, sidecar_path: Path) -> list[_Input]:
        inbox = self.config.inbox
        missing: list[str] = []
        found: list[_Input] = []

        def locate(role: str, relative: str | None) -> None:
            if relative is None:
                path = default_image(inbox, sidecar.name, role)
                if path is None:
                    missing.append(f"{sidecar.name}.{role}.jpg (or .jpeg, .png, .webp, .bmp, .tif, .tiff, .gif)")
                    return
                resolve_in_inbox(inbox, path.name)  # a symlink out of the inbox is refused here too
            else:
                path = resolve_in_inbox(inbox, relative)
                if not path.is_file():
                    missing.append(relative)
                    return
            found.append(_Input(role, path, is_own_file(inbox, path, sidecar.name)))

        locate("content", sidecar.content)
        for style in sidecar.styles or [None]:
            locate("style", style)
        if sidecar.params.init not in ("content", "noise"):
            locate("init", sidecar.params.init)
        if missing:
            self._wait_or_fail(sidecar_path, f"still missing: {', '.join(missing)}")
        undecodable = []
        for item in found:
            if not self.settle.settled(item.source):
                raise _NotReady()
            try:
                self._decodes(item.source)
            except SidecarError as e:
                undecodable.append(str(e))
        if undecodable:
            self._wait_or_fail(sidecar_path, "; ".join(undecodable))
        found.append(_Input("sidecar", sidecar_path, True))
        return found

    def _wait_or_fail(self, sidecar_path: Path, why: str) -> None:
        first = self._waiting.setdefault(sidecar_path, self.clock())
        if self.clock() - first < self.config.watch.missing_timeout:
            raise _NotReady()
        raise SidecarError(f"gave up after waiting {self.config.watch.missing_timeout:.0f} s; {why}")

    def _decodes(self, path: Path) -> None:
        st = path.stat()
        signature = (path, st.st_size, st.st_mtime_ns)
        if signature in self._checked:
            return
        try:
            self.image_check(path)
        except ValueError as e:
            raise SidecarError(str(e)) from None
        self._checked[signature] = None
        if len(self._checked) > 10_000:
            self._checked.clear()

    # -- staging --------------------------------------------------------------------

    def _stage(self, job_id: int, inputs: list[_Input]) -> list[dict]:
        """Copy shared images, move own ones, the sidecar last; idempotent."""
        target = self.archive / str(job_id) / "inputs"
        target.mkdir(parents=True, exist_ok=True)
        staged = []
        used: set[str] = set()
        for item in sorted(inputs, key=lambda i: i.role == "sidecar"):
            name = item.source.name
            if name in used:
                name = f"{len(used)}-{name}"
            used.add(name)
            dest = target / name
            if item.own:
                if item.source.exists() or item.source.is_symlink():
                    _move(item.source, dest)
            elif not dest.exists():
                tmp = dest.with_name(f".{dest.name}.copy")
                shutil.copy2(item.source, tmp)
                tmp.rename(dest)
            staged.append({
                "role": item.role, "name": name, "source": item.source.name if item.own else
                str(item.source.relative_to(self.config.inbox)), "moved": item.own,
                "sha256": sha256_file(dest) if dest.is_file() else None,
            })
        return staged

    def _fail(self, key: str, name: str, sidecar_path: Path, message: str, hint: str) -> None:
        """A job that cannot run: record it, move its files out of the inbox, answer in the outbox."""
        job, _ = self.store.enqueue(key=key, name=name, params={}, error=message)
        if job.state != JobStatus.QUEUED or job.staged:
            self._finish_leftover(job.id, sidecar_path)
            return
        own = [
            _Input("sidecar" if p == sidecar_path else "file", p, True)
            for p in [sidecar_path] + self._own_files(name, sidecar_path)
        ]
        self._stage(job.id, own)  # not marked staged: no worker may claim it
        self._waiting.pop(sidecar_path, None)
        self._publish_failure(job.id, name, message, hint)

    def _publish_failure(self, job_id: int, name: str, message: str, hint: str | None = None) -> None:
        inputs_dir = self.archive / str(job_id) / "inputs"
        staged = _describe_archive(inputs_dir)
        job = self.store.get(job_id)
        final = self.outbox.existing(job.outbox_dir, job_id)
        if final is None:
            folder = JobFolder(job_id, name, inputs_dir=inputs_dir)
            folder.add_text("error.txt", error_text(name, message, hint or self._hint_for(message)))
            folder.add_json("job.json", {"id": job_id, "name": name, "status": "failed", "error": message,
                                         "inputs": staged})
            final = self.outbox.publish(folder, lambda dirname: self.store.reserve_outbox_dir(job_id, None, dirname))
        self.store.mark_staged(job_id, staged)
        self.store.transition(job_id, JobStatus.FAILED, error=message, outbox_dir=final.name)
        shutil.rmtree(self.archive / str(job_id), ignore_errors=True)
        log.warning("job %d %r failed: %s (see %s)", job_id, name, message, final)

    def _own_files(self, name: str, sidecar_path: Path) -> list[Path]:
        inbox = self.config.inbox
        return [
            Path(e.path) for e in listdir(inbox)
            if e.name.startswith(name + ".") and Path(e.path) != sidecar_path
            and Path(e.path).suffix.lower() not in SIDECAR_EXTS and not e.is_dir(follow_symlinks=False)
        ]

    def _finish_leftover(self, job_id: int, sidecar_path: Path) -> None:
        # The job exists and is staged, but its sidecar is still here: a crash between
        # moving the other files and the sidecar, or a second watcher. Move it now.
        target = self.archive / str(job_id) / "inputs" / sidecar_path.name
        if target.parent.is_dir() and sidecar_path.exists():
            _move(sidecar_path, target)
        elif sidecar_path.exists():
            log.debug("job %d already handled; leaving %s for its owner", job_id, sidecar_path.name)

    @staticmethod
    def _hint_for(message: str) -> str:
        if "still missing" in message:
            return ("drop the missing image(s) into the inbox before the sidecar, or name them in it "
                    "(content = \"photo.jpg\", style = \"painting.jpg\"), then drop the sidecar again")
        if "inside the inbox" in message or "outside the inbox" in message:
            return "put the images in the inbox (a subfolder such as styles/ is fine) and name them relative to it"
        if "TOML" in message or "JSON" in message or "UTF-8" in message:
            return "fix the sidecar's syntax (a TOML or JSON table of key = value pairs) and drop it again"
        return "correct the sidecar as the message says and drop it again; see README 'The inbox contract'"

    def recover(self) -> None:
        """At start-up: finish staging of jobs whose sidecar already moved before a crash."""
        for job in self.store.list_jobs_unstaged():
            inputs_dir = self.archive / str(job.id) / "inputs"
            if not inputs_dir.is_dir() or not any(p.suffix.lower() in SIDECAR_EXTS for p in inputs_dir.iterdir()):
                continue  # the sidecar is still in the inbox; the scan will finish it
            if job.error:
                self._publish_failure(job.id, job.name, job.error)
                continue
            self.store.mark_staged(job.id, _describe_archive(inputs_dir))


def _describe_archive(inputs_dir: Path) -> list[dict]:
    """The input records of files already moved into an archive (recovery, failures)."""
    return [{"role": _role_guess(p.name), "name": p.name, "source": p.name, "moved": True,
             "sha256": sha256_file(p) if p.is_file() else None} for p in sorted(inputs_dir.glob("*"))]


def _role_guess(name: str) -> str:
    lower = name.lower()
    if lower.endswith(SIDECAR_EXTS):
        return "sidecar"
    if ".content." in lower:
        return "content"
    if ".style." in lower:
        return "style"
    return "file"


def _move(source: Path, dest: Path) -> None:
    try:
        source.rename(dest)
    except OSError:
        # Another file system (the state folder elsewhere): copy, then remove.
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
            shutil.rmtree(source)
        else:
            shutil.copy2(source, dest)
            source.unlink()


def _decode_check(max_pixels: int) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        from nst_engine.images import load_image

        load_image(path, max_pixels=max_pixels)

    return check
