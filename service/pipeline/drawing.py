"""The pictures drawn about a job, beside its stylized images: the preview (inputs and
results side by side) and the loss plot. Drawing only; the outbox decides where they go."""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont


def preview(tiles: Sequence[tuple[str, Image.Image]], *, height: int = 256) -> Image.Image:
    """Labelled images (content, style, result, corrected result...) side by side at one height:
    `height`, or the shortest image's where that is less. A small job's pictures are not blown
    up: a 128 px job's preview is a quarter of the pixels, and its PNG a quarter of the time
    (37 ms of a 128 px job's 165 ms outside the engine went to encoding it at 256 px)."""
    height = min([height, *(img.height for _, img in tiles)])
    scaled = [(label, img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS))
              for label, img in tiles]
    gap, caption = 8, 22
    width = sum(img.width for _, img in scaled) + gap * (len(scaled) + 1)
    canvas = Image.new("RGB", (width, height + caption + 2 * gap), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    x = gap
    for label, img in scaled:
        canvas.paste(img, (x, gap))
        draw.text((x, gap + height + 4), label, fill=(40, 40, 40), font=font)
        x += img.width + gap
    return canvas


# The loss plot: its size, margins (left, top, right, bottom) and each term's colour.
PLOT_SIZE = (800, 400)
PLOT_MARGINS = (70, 34, 110, 46)
TERMS = (("total", (0, 0, 0)), ("style", (214, 39, 40)), ("content", (31, 119, 180)), ("tv", (44, 160, 44)))


def loss_plot(history: Sequence[dict[str, float]], *, title: str,
              scales: Sequence[tuple[int, str]] = ()) -> Image.Image:
    """The loss terms per iteration on a log scale, as a PNG-ready image. `scales`: (first
    step, label) of each scale after the first, marked with a dashed line and its size.

    Drawn with PIL in a few milliseconds: matplotlib took 0.3-0.6 s a job on a 2-core CPU
    (its tight layout and log ticks), more than a small job's optimization."""
    width, height = PLOT_SIZE
    left, top, right, bottom = PLOT_MARGINS
    x0, y0, x1, y1 = left, top, width - right, height - bottom
    canvas = Image.new("RGB", PLOT_SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, small = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    ink, grid = (40, 40, 40), (225, 225, 225)
    draw.text((width // 2, 8), title, fill=ink, font=font, anchor="ma")

    steps = [h["step"] for h in history] or [1]
    series = {key: [(h["step"], h.get(key, 0.0)) for h in history if h.get(key, 0.0) > 0] for key, _ in TERMS}
    series = {key: points for key, points in series.items() if points}
    values = [v for points in series.values() for _, v in points]
    low_decade = math.floor(math.log10(min(values))) if values else 0
    high_decade = math.ceil(math.log10(max(values))) if values else 1
    high_decade = max(high_decade, low_decade + 1)
    first, last = min(steps), max(max(steps), min(steps) + 1)

    def x_of(step: float) -> float:
        return x0 + (step - first) / (last - first) * (x1 - x0)

    def y_of(value: float) -> float:
        return y1 - (math.log10(value) - low_decade) / (high_decade - low_decade) * (y1 - y0)

    every = max(1, math.ceil((high_decade - low_decade) / 8))  # at most about 8 labelled decades
    for decade in range(low_decade, high_decade + 1):
        y = y_of(10.0 ** decade)
        draw.line([(x0, y), (x1, y)], fill=grid)
        if (decade - low_decade) % every == 0:
            draw.text((x0 - 6, y), f"1e{decade}", fill=ink, font=small, anchor="rm")
    for step in _ticks(first, last):
        x = x_of(step)
        draw.line([(x, y0), (x, y1)], fill=grid)
        draw.text((x, y1 + 6), str(step), fill=ink, font=small, anchor="ma")
    for step, label in scales:
        x = x_of(step)
        for y in range(y0, y1, 8):
            draw.line([(x, y), (x, min(y + 4, y1))], fill=(150, 150, 150))
        draw.text((x + 3, y0 + 2), label, fill=(90, 90, 90), font=small)
    draw.rectangle([x0, y0, x1, y1], outline=ink)
    for index, (key, colour) in enumerate(TERMS):
        points = series.get(key)
        if not points:
            continue
        line = [(x_of(step), y_of(value)) for step, value in points]
        if len(line) == 1:  # one iteration: a dot, where a line would have no length
            (x, y), = line
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        else:
            draw.line(line, fill=colour, width=2 if key == "total" else 1)
        ly = y0 + 6 + 18 * index  # the legend beside the plot, not over the curves
        draw.line([(x1 + 12, ly + 6), (x1 + 32, ly + 6)], fill=colour, width=2)
        draw.text((x1 + 38, ly), key, fill=ink, font=small)
    draw.text(((x0 + x1) // 2, height - 6), "iteration (all scales)", fill=ink, font=small, anchor="md")
    draw.text((6, (y0 + y1) // 2), "loss", fill=ink, font=small, anchor="lm")
    draw.text((x1 + 12, y1), "total weighted;\nterms raw", fill=(90, 90, 90), font=small, anchor="ld")
    return canvas


def _ticks(first: int, last: int) -> list[int]:
    """About five round steps between `first` and `last`."""
    span = max(1, last - first)
    raw = span / 5
    base = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    start = math.ceil(first / step) * step
    return list(range(int(start), int(last) + 1, int(step)))
