"""Formatting for people: durations, progress lines, aligned tables."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from PIL import Image



def printable(text: str) -> str:
    """`text` with control characters escaped (ESC, CR, BS, a newline -> \\x1b, \\r, \\x08, \\n),
    so a name dropped into the inbox can neither forge a log line nor drive a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)

def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(
    *, fraction: float, step: int, total: int, scale: int, scales: int, loss: float | None, eta: float | None,
    width: int = 24,
) -> str:
    """`[#########.......]  38%  step 120/450  scale 2/3  loss 1.23e+00  ETA 0:42`

    The bar and the percentage are `fraction`, the progress record's share of the work (what
    the page and the ETA show), not steps: a print's coarse scales are most of its steps and
    little of its work."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    bar = "#" * filled + "." * (width - filled)
    loss_text = f"loss {loss:.3e}" if loss is not None else "loss -"
    return (f"[{bar}] {fraction:4.0%}  step {step}/{total}  scale {scale}/{scales}  {loss_text}  "
            f"ETA {duration(eta)}")


def local_time(value: dt.datetime | None) -> str:
    """Stored UTC, shown in the local zone."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def estimate_text(estimate: dict[str, Any] | None, seconds_per_mpix_iteration: float | None) -> str:
    """E.g. "peak about 5.1 GiB of 10.0; 4 scales, the last in 48 tiles; about 9 min"."""
    if estimate and estimate.get("waits_for"):
        return f"waits for {estimate['waits_for']}: no worker that can run it has claimed it"
    if not estimate or "peak_mib" not in estimate:
        return ""
    scales = estimate.get("scales", [])
    tiled = [s for s in scales if s.get("tile")]
    parts = [f"peak about {estimate['peak_mib'] / 1024:.1f} GiB of {estimate.get('budget_mib', 0) / 1024:.1f}"]
    shape = f"{len(scales)} scale{'s' if len(scales) != 1 else ''}"
    if tiled:
        shape += ", " + ", ".join(f"{s['size'][0]}x{s['size'][1]} in {s['tiles']} tiles" for s in tiled)
    if estimate.get("batch", 1) > 1:
        shape += f", outputs {estimate['batch']} at a time"
    parts.append(shape)
    if seconds_per_mpix_iteration and estimate.get("work_mpix_iterations"):
        parts.append(f"about {duration(seconds_per_mpix_iteration * estimate['work_mpix_iterations'])}"
                     f" on {estimate.get('device', 'this device')}")
    return "; ".join(parts)


def face_guard_lines(record: dict[str, Any]) -> list[str]:
    """What the face guard did, for the job's log: which painting had a face, and whether its
    deepest layers' target came from the rest of its canvas or was left out."""
    faces = record.get("faces") or {}
    done = {"masked": "comes from the rest of its canvas", "left_out": "was left out (the face fills the canvas)"}
    lines = []
    for kind, what in done.items():
        for layer, paintings in (faces.get(kind) or {}).items():
            for number in paintings:
                share = max(f["share"] for f in faces["paintings"][number - 1])
                lines.append(f"painting {number} has a face ({share:.0%} of its canvas): its {layer} target {what} "
                             f"so that its eyes and mouth are not painted into the picture "
                             f"(face_guard = \"off\" keeps the face in)")
    return lines


def colour_lines(content: Image.Image, styles: Sequence[Image.Image], init: Image.Image | None = None
                 ) -> list[str]:
    """What decoding did with each picture's colour space (nst_engine.images.to_srgb: an embedded
    profile, or one its EXIF declares), for the job's log and the terminal: a photograph from a
    phone or camera converted to sRGB."""
    from nst_engine.images import colour_note

    named = [("photograph", content)] + [(f"painting {i}" if len(styles) > 1 else "painting", s)
                                         for i, s in enumerate(styles, start=1)]
    named += [("init image", init)] if init is not None else []
    return [f"{what}: {note}" for what, image in named if (note := colour_note(image))]
