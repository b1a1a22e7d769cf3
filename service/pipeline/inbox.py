"""The inbox contract: which files are jobs, when a file is complete, what a sidecar says.

No torch here. Reading a sidecar either returns a `Sidecar` with validated
parameters or raises `SidecarError`, the one documented error type.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from nst_engine.params import Limits, ParamError, Params

from ..errors import SidecarError
from ..safefiles import read_regular, shown

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")
PRIORITIES = (-1000, 1000)  # a job's priority, lowest to highest (the sidecar, `nst submit`, the form)


def in_priority_range(priority: int) -> bool:
    return PRIORITIES[0] <= priority <= PRIORITIES[1]
SIDECAR_EXTS = (".toml", ".json")
# Checking that a picture decodes needs every byte decoded, but no large picture kept.
CHECK_EDGE = 64
MAX_SIDECAR_BYTES = 64 * 1024


# Room in a 255-byte file name for what the service adds to a job's name
# (".stylized-16-partial.png", ".NAME.ID.partial", "NAME-ID-N").
NAME_BYTES = 200
# Only the built-in networks from a sidecar: a weights *file* is the operator's choice
# ([defaults] in config.toml), never an inbox user's (it would name any file on the host).
SIDECAR_WEIGHTS = ("caffe", "torchvision")

__all__ = ["SidecarError"]


@dataclass(frozen=True)
class Sidecar:
    name: str  # the job's name: the sidecar's file name without its extension
    content: str | None  # inbox-relative path, or None for NAME.content.EXT
    styles: tuple[str, ...] | None  # inbox-relative paths, or None for NAME.style.EXT
    priority: int
    params: Params
    requires_gpu: bool = False
    tags: tuple[str, ...] = ()


def is_ignored(relative: PurePosixPath | str, patterns: Iterable[str]) -> bool:
    """True if any component of the inbox-relative path matches an ignore pattern."""
    parts = PurePosixPath(relative).parts
    return any(fnmatch.fnmatchcase(part, pattern) for part in parts for pattern in patterns)


def job_name(sidecar: Path) -> str:
    return sidecar.name[: -len(sidecar.suffix)]


def parse_sidecar(data: bytes, *, name: str, suffix: str, base: Params, limits: Limits) -> Sidecar:
    """Bytes of `NAME.toml` / `NAME.json` to a job description, or SidecarError. `name` is
    the name as on disk (it finds the job's files); messages show it as text."""
    label = shown(name)
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"{label}{suffix}: {len(data)} bytes; a sidecar may be at most {MAX_SIDECAR_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SidecarError(f"{label}{suffix}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    values = decode_table(text, label + suffix, suffix.lower())
    # The keys that say where the images are, how urgent the job is and where it may run;
    # every other key is an engine parameter.
    content = values.pop("content", None)
    style = values.pop("style", None)
    priority = values.pop("priority", 0)
    requires_gpu = values.pop("requires_gpu", False)
    tags = values.pop("tags", [])
    if not isinstance(requires_gpu, bool):
        raise SidecarError(f"{label}{suffix}: requires_gpu must be true or false")
    if not isinstance(tags, list) or len(tags) > 16 or not all(
            isinstance(t, str) and 0 < len(t) <= 64 and t.isprintable() for t in tags):
        raise SidecarError(f"{label}{suffix}: tags must be a list of short printable strings, e.g. tags = [\"a100\"]")
    if content is not None and not _is_path_text(content):
        raise SidecarError(f"{label}{suffix}: content must be a file name such as \"photo.jpg\"")
    if style is not None:
        style = [style] if isinstance(style, str) else style
        if not isinstance(style, list) or not style or not all(_is_path_text(s) for s in style):
            raise SidecarError(f"{label}{suffix}: style must be a file name or a list of file names")
        if len(style) > 16:
            raise SidecarError(f"{label}{suffix}: at most 16 style images")
    if isinstance(priority, bool) or not isinstance(priority, int) or not in_priority_range(priority):
        raise SidecarError(f"{label}{suffix}: priority must be a whole number from {PRIORITIES[0]} to {PRIORITIES[1]}")
    if "weights" in values and values["weights"] not in SIDECAR_WEIGHTS:
        raise SidecarError(f"{label}{suffix}: weights: a sidecar may choose \"caffe\" or \"torchvision\"; "
                           "a weights file is set by the operator in config.toml [defaults]")
    try:
        params = Params.from_mapping(values, base=base, limits=limits)
    except ParamError as e:
        raise SidecarError(f"{label}{suffix}: {e}", hint="correct the parameter in the sidecar and drop it "
                           "again; README 'Parameters' lists every key and its range") from None
    for key, path in [("content", content), *[("style", s) for s in style or []],
                      *([("init", params.init)] if params.init_is_image else [])]:
        if path is not None and (why := never_in_inbox(path)):
            raise SidecarError(f"{label}{suffix}: {key} = {path!r} is {why}; it can never arrive in the inbox",
                               hint="copy the picture into the inbox and name it relative to the inbox "
                                    "(content = \"photo.jpg\", style = \"styles/painting.jpg\")")
    return Sidecar(name, content, tuple(style) if style else None, priority, params, requires_gpu, tuple(tags))


def decode_table(text: str, filename: str, suffix: str) -> dict[str, Any]:
    """The parsed table; whatever a parser raises on hostile text becomes a SidecarError."""
    syntax = "fix the sidecar's syntax (a TOML or JSON table of key = value pairs) and drop it again"
    try:
        value = _parse_text(text, filename, suffix)
    except SidecarError:
        raise
    except Exception as e:  # e.g. ValueError for a 5000-digit integer, MemoryError, RecursionError
        raise SidecarError(f"{filename}: cannot be read ({type(e).__name__}: {str(e)[:200]})", hint=syntax) \
            from None
    if not isinstance(value, dict):
        raise SidecarError(f"{filename}: must hold a table of key = value pairs", hint=syntax)
    return value


def _parse_text(text: str, filename: str, suffix: str) -> Any:
    syntax = "fix the sidecar's syntax (a TOML or JSON table of key = value pairs) and drop it again"
    if suffix == ".json":
        if not text.strip():
            return {}
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, RecursionError) as e:
            raise SidecarError(f"{filename}: not valid JSON: {e}", hint=syntax) from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise SidecarError(f"{filename}: not valid TOML: {e}", hint=syntax) from None


def never_in_inbox(path: str) -> str | None:
    """What kind of path `path` is if no file dropped into the inbox can ever answer it (so its
    job fails at once instead of waiting `missing_timeout` for it), else None."""
    if "://" in path:
        return "a web address (nst reads only files in the inbox; it never downloads)"
    if path.startswith(("~/", "~\\")):
        return "a path in a home folder"
    if len(path) > 2 and path[0].isascii() and path[0].isalpha() and path[1] == ":" and path[2] in "\\/":
        return "a Windows drive path"
    if path.startswith(("\\\\", "//")):
        return "a network share path"
    return None  # absolute paths and '..' are refused as leaving the inbox (resolve_in_inbox)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a job can use")


def _is_path_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 1024 and "\x00" not in value


def resolve_in_inbox(inbox: Path, relative: str) -> Path:
    """An inbox-relative path from a sidecar, refused if it leaves the inbox."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    inside_hint = "put the images in the inbox (a subfolder such as styles/ is fine) and name them relative to it"
    if pure.is_absolute() or Path(relative).is_absolute() or ".." in pure.parts:
        raise SidecarError(f"{relative!r}: paths must stay inside the inbox (no absolute paths, no '..')",
                           hint=inside_hint)
    candidate = inbox.joinpath(*pure.parts)
    real_inbox = inbox.resolve()
    try:
        real = candidate.resolve()
    except (OSError, RuntimeError):
        raise SidecarError(f"{relative!r}: cannot be resolved (a symlink loop?)", hint=inside_hint) from None
    if real != real_inbox and real_inbox not in real.parents:
        raise SidecarError(f"{relative!r}: a link that points outside the inbox; refused", hint=inside_hint)
    return candidate


def default_images(entries: list[os.DirEntry]) -> dict[tuple[str, str], Path]:
    """Every default image name in one listing of the inbox root, by (job name as on disk, role):
    `NAME.content.EXT`, `NAME.style.EXT`. Where a job has several, the usual spelling wins (the
    extension in IMAGE_EXTS's order, lower case before upper), then any other case however a
    camera or a case-insensitive file system wrote it (`trip.Content.jpg`, `trip.style.Jpg`).
    Whatever kind of file it is: the intake's safe open says if it may be read."""
    best: dict[tuple[str, str], tuple[tuple[bool, int, bool], Path]] = {}
    for entry in entries:
        role = image_role(entry.name)
        owner = image_owner(entry.name) if role else None
        if not owner:
            continue
        spelled, _, ext = entry.name[len(owner) + 1:].rpartition(".")
        rank = (spelled != role or ext not in (ext.lower(), ext.upper()), IMAGE_EXTS.index("." + ext.lower()),
                ext != ext.lower())
        if (owner, role) not in best or rank < best[owner, role][0]:
            best[owner, role] = (rank, Path(entry.path))
    return {key: path for key, (_rank, path) in best.items()}


def image_owner(filename: str) -> str | None:
    """The job a default image name belongs to: `trip.2024.content.jpg` -> `trip.2024`."""
    role = image_role(filename)
    if role is None:
        return None
    return filename.rpartition(".")[0][: -len(role) - 1] or None


def image_role(filename: str) -> str | None:
    """"content" or "style" for a default image name (`NAME.content.EXT`, `NAME.style.EXT`)."""
    stem, dot, ext = filename.rpartition(".")
    if dot and ("." + ext.lower()) in IMAGE_EXTS:
        for role in ("content", "style"):
            if stem.lower().endswith("." + role):
                return role
    return None


def is_own_file(inbox: Path, path: Path, name: str) -> bool:
    """Files in the inbox root named NAME.* belong to job NAME and move with it;
    anything else (a shared `styles/` library) is copied."""
    return path.parent == inbox and path.name.startswith(name + ".")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Settle:
    """When is a file complete? When its size and mtime have not changed for
    `seconds` since we last saw them change, by the monotonic clock.

    Events only re-arm the timer (a scanner or SMB client touches a file many
    times while writing); the decision is always taken on a fresh stat. Wall-clock
    jumps and odd mtimes do not matter: mtimes are compared for equality only.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._seen: dict[Path, tuple[tuple[int, int, int], float]] = {}

    def hint(self, path: Path) -> None:
        """Something happened to `path`: wait a full settle time from now."""
        if path in self._seen:
            signature, _ = self._seen[path]
            self._seen[path] = (signature, self.clock())

    def settled(self, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            try:
                st = path.lstat()  # a link to nothing settles too, and is refused as such
            except OSError:
                self._seen.pop(path, None)
                return False
        except OSError:
            self._seen.pop(path, None)
            return False
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        now = self.clock()
        previous = self._seen.get(path)
        if previous is None or previous[0] != signature:
            self._seen[path] = (signature, now)
            return self.seconds <= 0
        return now - previous[1] >= self.seconds

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def keep_only(self, paths: Iterable[Path]) -> None:
        """Drop state for files that are gone, so memory stays bounded."""
        keep = set(paths)
        for path in list(self._seen):
            if path not in keep:
                del self._seen[path]

    def tracked(self) -> Iterable[Path]:
        return self._seen.keys()

    def __len__(self) -> int:
        return len(self._seen)


def job_key(relative: str, digest: str, mtime_ns: int) -> str:
    """A job file's identity: where it is, what it says and when it was written.

    The same file seen again (a duplicate event, a rescan, a restart, a second
    watcher) has the same key; the same name dropped again later does not.
    """
    return f"{relative}|{digest}|{mtime_ns}"


def read_sidecar(path: Path, inbox: Path) -> bytes:
    """A sidecar's bytes by the safe-file rule, never more than the limit read."""
    return read_regular(path, inbox, max_bytes=MAX_SIDECAR_BYTES)


def safe_component(name: str, max_bytes: int = NAME_BYTES) -> str:
    """A job name as a single, visible, harmless folder name, at most `max_bytes` of UTF-8
    (file systems count bytes: 83 CJK characters already fill 255)."""
    cleaned = "".join(c if c.isprintable() and c not in '/\\:*?"<>|' else "_" for c in name).strip()
    cleaned = cleaned.lstrip(".-") or "job"
    return cut_utf8(cleaned, max_bytes).rstrip() or "job"


def cut_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8 at a character boundary, never leaving a
    joiner or a lone base character whose combining marks were cut off."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    out = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    while out and _extends(text[len(out)]):
        out = out[:-1]  # the cut fell inside a grapheme: drop its start too
    return out.rstrip("\u200d")


def _extends(c: str) -> bool:
    """A character that belongs to the grapheme before it (combining marks, joiners,
    variation selectors, skin-tone modifiers)."""
    return unicodedata.category(c).startswith("M") or c in "\u200d\ufe0e\ufe0f" or 0x1F3FB <= ord(c) <= 0x1F3FF


def listdir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []
