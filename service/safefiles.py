"""The one rule for files somebody else dropped into the inbox.

The inbox is a shared folder, so anything in it may be hostile. The service:
- opens only regular files whose real path is inside the inbox, checked after
  the file is open (so a link swapped in between the check and the open is
  caught too);
- never follows a link out of the inbox, never copies a link as a link;
- never opens a special file (FIFO, socket, device) for reading, so nothing
  can block it or feed it endless bytes;
- reads at most the bytes a caller allows.

Everything that reads or copies a dropped file goes through this module.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import RefusedFile

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


def kind_of(mode: int) -> str:
    """A file type in words, for messages."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def inside(path: str | os.PathLike, root: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def refusal(path: Path, root: Path) -> str | None:
    """Why `path` may not be opened (without opening it), or None if it may. A file that
    is not there (taken by another watcher a moment ago) raises FileNotFoundError: that
    is no refusal, only a reason to look again."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        if not inside(path, root):
            return f"{path.name}: a link that points outside the inbox; refused (links are never followed out)"
        try:
            st = path.stat()
        except OSError:
            return f"{path.name}: a link to nothing (the file it names is missing)"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name}: is a {kind_of(st.st_mode)}, not a file; refused"
    return None


def open_regular(path: Path, root: Path, *, max_bytes: int | None = None) -> BinaryIO:
    """Open a dropped file for reading, or raise RefusedFile saying why not."""
    path = Path(path)
    why = refusal(path, root)
    if why:
        raise RefusedFile(why)
    real = os.path.realpath(path)
    if not inside(real, root):  # through a linked folder
        raise RefusedFile(f"{path.name}: resolves outside the inbox; refused")
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as e:
        # ELOOP: a link was swapped in after the check above.
        raise RefusedFile(f"{path.name}: cannot be opened safely ({e.strerror or e}); refused") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"{path.name}: is a {kind_of(st.st_mode)}, not a file; refused")
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened) and not inside(opened, root):
            # It was inside when opened: it has been moved out since (another host's watcher
            # staging the same job) or a linked folder was swapped in. Either way nothing is
            # read, and no refusal: the next scan looks again (it was failing a job that
            # another daemon was staging).
            raise FileNotFoundError(errno.ENOENT, f"{path.name} left the inbox while being opened", str(path))
        if max_bytes is not None and st.st_size > max_bytes:
            raise RefusedFile(f"{path.name}: {st.st_size} bytes; at most {max_bytes} are allowed")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, root: Path, *, max_bytes: int) -> bytes:
    """The bytes of a dropped file, never more than `max_bytes` read (a file that grew is refused)."""
    with open_regular(path, root, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedFile(f"{Path(path).name}: more than {max_bytes} bytes; refused")
    return data


def copy_regular(path: Path, root: Path, dest: Path) -> str:
    """Copy a dropped file's bytes to `dest` (via a hidden name, then a rename); its sha256."""
    digest = hashlib.sha256()
    with open_regular(path, root) as src:
        # A short hidden name: the file's own name may already be as long as names go.
        fd, tmp = tempfile.mkstemp(prefix=".nst-", suffix=".copy", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest.hexdigest()


def sha256_regular(path: Path) -> str | None:
    """The digest of a file in our own archive, or None for anything that is not a regular file."""
    try:
        with open_regular(path, Path(path).parent) as f:
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(_CHUNK), b""):
                digest.update(block)
            return digest.hexdigest()
    except (RefusedFile, OSError):
        return None


def copy_tree_regular(src: Path, dest: Path) -> list[str]:
    """Copy the regular files under `src` into `dest`, links and special files left out;
    returns the relative names left out."""
    skipped: list[str] = []
    dest.mkdir(parents=True, exist_ok=True)
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            target = dest / entry.name
            if entry.is_dir(follow_symlinks=False):
                skipped += [f"{entry.name}/{s}" for s in copy_tree_regular(Path(entry.path), target)]
            elif entry.is_file(follow_symlinks=False):
                try:
                    copy_regular(Path(entry.path), src, target)
                except RefusedFile:
                    skipped.append(entry.name)
            else:
                skipped.append(entry.name)
    return skipped
