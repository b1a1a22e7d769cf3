"""The outbox contract: each job's folder appears whole, once, or not at all.

A folder is assembled under a hidden temporary name in the outbox, its name is
recorded in the store, and then it is renamed into place; the store is told
the job ended only after the rename. A crash at any point leaves either a
hidden partial folder (removed at the next start) or a complete folder the
store already knows to look for.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ..files import fsync_dir, image_bytes, write_bytes_atomic
from ..safefiles import copy_tree_regular
from .inbox import safe_component

PARTIAL_SUFFIX = ".partial"
PROBE_PREFIX = ".nst-probe-"  # a named writability probe (where O_TMPFILE is not supported)


@dataclass
class JobFolder:
    """What goes into one job's outbox folder."""

    job_id: int
    name: str
    files: dict[str, bytes] = field(default_factory=dict)  # relative name -> contents
    inputs_dir: Path | None = None  # copied as inputs/

    def add_image(self, name: str, img: Image.Image, *, fast: bool = False) -> None:
        """`fast`: a drawing to glance at, compressed quickly rather than small."""
        self.files[name] = image_bytes(img, Path(name).suffix, fast=fast)

    def add_text(self, name: str, text: str) -> None:
        self.files[name] = text.encode("utf-8")

    def add_json(self, name: str, value: Any) -> None:
        self.add_text(name, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


class Outbox:
    def __init__(self, root: Path, *, file_mode: int = 0o644, owner: str = "") -> None:
        self.root = root
        self.owner = owner_tag(owner)  # in every partial folder's name: whose it is
        self.file_mode = file_mode
        self.dir_mode = file_mode | ((file_mode & 0o444) >> 2)  # r -> x for folders
        self._lock = threading.Lock()  # the intake and the worker both publish

    def existing(self, dirname: str | None, job_id: int) -> Path | None:
        """The job's folder if an earlier attempt already published it."""
        if not dirname:
            return None
        folder = self.root / dirname
        try:
            recorded = json.loads((folder / "job.json").read_text())
        except (OSError, ValueError):
            return None
        return folder if recorded.get("id") == job_id else None

    def publish(self, folder: JobFolder, reserve) -> Path:
        """Write `folder`, call `reserve(dirname)` to record its final name, rename it into place."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{safe_component(folder.name)}.{folder.job_id}.{self.owner}{PARTIAL_SUFFIX}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(mode=self.dir_mode)
            try:
                for name, data in folder.files.items():
                    target = tmp / name
                    target.parent.mkdir(parents=True, exist_ok=True, mode=self.dir_mode)
                    write_bytes_atomic(target, data, mode=self.file_mode)
                if folder.inputs_dir is not None and folder.inputs_dir.is_dir():
                    # Regular files only, links never followed (the archive holds nothing else,
                    # but the outbox is served to people: the rule is kept here too).
                    copy_tree_regular(folder.inputs_dir, tmp / "inputs")
                    self._set_modes(tmp / "inputs")
                os.chmod(tmp, self.dir_mode)
                fsync_dir(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # a full or failing disk leaves nothing behind
                raise
            final = self._free_name(folder)
            reserve(final.name)
            os.rename(tmp, final)
            fsync_dir(self.root)
            return final

    def writable(self) -> str | None:
        """None if the outbox takes a file now (64 KiB written and synced), else why not.

        The probe is an unnamed file (O_TMPFILE) where the file system has them: a daemon killed
        mid-probe, before every claim, left its named probe in the users' outbox. Elsewhere (NFS,
        SMB) it is named with its owner, and a later start removes a dead owner's."""
        try:
            fd = os.open(self.root, os.O_TMPFILE | os.O_WRONLY, 0o600)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return f"{self.root}: {e.strerror or e}"
            return self._named_probe()
        try:
            _probe(fd)
            return None
        except OSError as e:
            return f"{self.root}: {e.strerror or e}"
        finally:
            os.close(fd)

    def _named_probe(self) -> str | None:
        probe = self.root / f"{PROBE_PREFIX}{self.owner}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                _probe(fd)
            finally:
                os.close(fd)
            return None
        except OSError as e:
            return f"{self.root}: {e.strerror or e}"
        finally:
            try:
                probe.unlink()
            except OSError:
                pass

    def _free_name(self, folder: JobFolder) -> Path:
        base = safe_component(folder.name)
        candidate = self.root / base
        if not candidate.exists():
            return candidate
        candidate = self.root / f"{base}-{folder.job_id}"
        n = 2
        while candidate.exists():
            candidate = self.root / f"{base}-{folder.job_id}-{n}"
            n += 1
        return candidate

    def _set_modes(self, top: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(top):
            os.chmod(dirpath, self.dir_mode)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), self.file_mode)

    def remove_partials(self, *, dead_owners: Sequence[str] = (), older_than_s: float = 3600) -> list[Path]:
        """Hidden partial folders left by a crash: those of `dead_owners` (earlier starts of this
        daemon) and any older than `older_than_s`. A peer's folder on a shared outbox is left
        alone, whatever roles the nodes run: it may be being written right now."""
        import time

        dead = {owner_tag(o) for o in dead_owners}
        removed = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if entry.name.startswith(PROBE_PREFIX) and entry.name[len(PROBE_PREFIX):] in dead:
                entry.unlink(missing_ok=True)  # a writability probe a kill left (named probes only)
                removed.append(entry)
                continue
            if not (entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX) and entry.is_dir()):
                continue
            owner = entry.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 1)[-1]
            if owner in dead or time.time() - entry.stat().st_mtime >= older_than_s:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed


def _probe(fd: int) -> None:
    os.write(fd, b"\0" * 65536)
    os.fsync(fd)


def owner_tag(run_id: str) -> str:
    """A short, name-safe tag for a daemon start's run id."""
    import hashlib

    return hashlib.sha256(run_id.encode()).hexdigest()[:10]


_ADVICE = "\n\nHow to fix it:\n  "


def error_text(name: str, message: str, hint: str) -> str:
    """`error.txt` of a failed job's folder; `advice` reads its hint back."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"Job {name!r} failed at {when}.\n\nWhat went wrong:\n  {message}{_ADVICE}{hint}\n"


def advice(folder: Path | None) -> str | None:
    """The "how to fix it" of a failed job's `error.txt` in its outbox folder, if it has one:
    for the page and `nst show`, which show the error recorded with the job."""
    if folder is None:
        return None
    try:
        text = (folder / "error.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.partition(_ADVICE)[2].strip() or None
