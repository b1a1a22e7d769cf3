"""The one rule for files somebody else dropped into the inbox.

The inbox is a shared folder, so anything in it may be hostile. The service:
- opens only regular files whose real path is inside the inbox, checked after
  the file is open (so a link swapped in between the check and the open is
  caught too);
- never follows a link out of the inbox, never copies a link as a link;
- never opens a special file (FIFO, socket, device) for reading, so nothing
  can block it or feed it endless bytes;
- reads at most the bytes a caller allows;
- never opens a file with a second hard link (its other name may be anywhere on the
  file system: it is not the dropper's own file to give);
- copies keep a sparse file's holes as holes;
- names a file in messages by `shown(name)`, text that can be stored and printed even
  when the name's bytes are not UTF-8.

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
_ZEROS = bytes(_CHUNK)


def shown(name: str) -> str:
    """A file name as text that a database, a log and a page can hold. Python hands names
    that are not UTF-8 (shares written from old Windows or Latin-1 systems) over with each
    stray byte as a lone surrogate, which no encoder takes; each becomes its Latin-1
    character where that is printable (b'caf\\xe9' -> 'café'), else a visible \\xNN."""
    if not any("\udc80" <= c <= "\udcff" for c in name):
        return name
    out = []
    for c in name:
        byte = ord(c) - 0xDC00 if "\udc80" <= c <= "\udcff" else None
        out.append(c if byte is None else chr(byte) if byte >= 0xA0 else f"\\x{byte:02x}")
    return "".join(out)


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


def refusal(path: Path, root: Path, *, max_bytes: int | None = None) -> str | None:
    """Why `path` may not be opened (without opening it), or None if it may. A file that
    is not there (taken by another watcher a moment ago) raises FileNotFoundError: that
    is no refusal, only a reason to look again."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        if not inside(path, root):
            return f"{shown(path.name)}: a link that points outside the inbox; refused (links are never followed out)"
        try:
            st = path.stat()
        except OSError:
            return f"{shown(path.name)}: a link to nothing (the file it names is missing)"
    return _refused_stat(path.name, st, max_bytes)


def _refused_stat(name: str, st: os.stat_result, max_bytes: int | None) -> str | None:
    """What a file's own stat says against opening it: its kind, its links, its size."""
    if not stat.S_ISREG(st.st_mode):
        return f"{shown(name)}: is a {kind_of(st.st_mode)}, not a file; refused"
    if st.st_nlink > 1:
        # `ln /etc/shadow inbox/x.key` needs no read access to the file: a second name may be
        # anywhere on the same file system, so such a file is nobody's to give through the inbox.
        return (f"{shown(name)}: has {st.st_nlink} hard links (another name elsewhere on this file system); "
                "refused: copy the file into the inbox instead of linking it")
    if max_bytes is not None and st.st_size > max_bytes:
        return f"{shown(name)}: {size_text(st.st_size)}, more than the {size_text(max_bytes)} a file may have; refused"
    return None


def size_text(n: int) -> str:
    """Bytes in words: '4.0 GiB', '640 KiB', '12 bytes'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} bytes"


def open_regular(path: Path, root: Path, *, max_bytes: int | None = None) -> BinaryIO:
    """Open a dropped file for reading, or raise RefusedFile saying why not."""
    path = Path(path)
    why = refusal(path, root, max_bytes=max_bytes)
    if why:
        raise RefusedFile(why)
    real = os.path.realpath(path)
    if not inside(real, root):  # through a linked folder
        raise RefusedFile(f"{shown(path.name)}: resolves outside the inbox; refused")
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as e:
        # ELOOP: a link was swapped in after the check above.
        raise RefusedFile(f"{shown(path.name)}: cannot be opened safely ({e.strerror or e}); refused") from None
    try:
        st = os.fstat(fd)
        why = _refused_stat(path.name, st, max_bytes)  # the file opened, whatever was swapped in
        if why:
            raise RefusedFile(why)
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened) and not inside(opened, root):
            # It was inside when opened: it has been moved out since (another host's watcher
            # staging the same job) or a linked folder was swapped in. Either way nothing is
            # read, and no refusal: the next scan looks again (it was failing a job that
            # another daemon was staging).
            raise FileNotFoundError(errno.ENOENT, f"{shown(path.name)} left the inbox while being opened", str(path))
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
        raise RefusedFile(f"{shown(Path(path).name)}: more than {max_bytes} bytes; refused")
    return data


def copy_regular(path: Path, root: Path, dest: Path, *, max_bytes: int | None = None) -> str:
    """Copy a dropped file's bytes to `dest` (via a hidden name, then a rename); its sha256.
    Runs of zeros are skipped, not written, so a sparse file's holes stay holes (`truncate -s
    4G` dropped beside a job had become 4 GB of real blocks in its outbox folder)."""
    digest = hashlib.sha256()
    with open_regular(path, root, max_bytes=max_bytes) as src:
        # A short hidden name: the file's own name may already be as long as names go.
        fd, tmp = tempfile.mkstemp(prefix=".nst-", suffix=".copy", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(block)
                    if block == _ZEROS[: len(block)]:
                        out.seek(len(block), os.SEEK_CUR)
                    else:
                        out.write(block)
                out.truncate()  # the length a trailing hole leaves unwritten
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
