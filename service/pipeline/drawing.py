"""The pictures drawn about a job, beside its stylized images: the preview (inputs and
results side by side) and the loss plot. Drawing only; the outbox decides where they go."""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont


def preview(tiles: Sequence[tuple[str, Image.Image]], *, height: int = 256) -> Image.Image:
    """Labelled images (content, style, result, corrected result...) side by side at one height."""
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


def loss_plot(history: Sequence[dict[str, float]], *, title: str,
              scales: Sequence[tuple[int, str]] = ()) -> Image.Image:
    """The loss terms per iteration, log scale, as a PNG-ready image. `scales`: (first step,
    label) of each scale after the first, marked with a dashed line and its size."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    steps = [h["step"] for h in history]
    for key, colour in (("total", "black"), ("style", "tab:red"), ("content", "tab:blue"), ("tv", "tab:green")):
        values = [h.get(key, 0.0) for h in history]
        if any(v > 0 for v in values):
            ax.plot(steps, values, label=key, color=colour, linewidth=1.4 if key == "total" else 1.0)
    ax.set_yscale("log")
    for step, label in scales:
        ax.axvline(step, color="0.6", linestyle="--", linewidth=0.8)
        ax.text(step, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=8,
                color="0.35")
    ax.set_xlabel("iteration (all scales)")
    ax.set_ylabel("loss (total is weighted; terms are raw)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    # Beside the plot, not over the curves.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
