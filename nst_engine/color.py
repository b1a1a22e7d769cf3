"""Colour preservation (luminance transfer) and colour correction (matching in CIELAB)."""

from __future__ import annotations

import numpy as np
from PIL import Image

MAX_CHROMA_GAIN = 4.0


def preserve_color(stylized: Image.Image, content: Image.Image) -> Image.Image:
    """The stylized image's luminance with the content's chroma (YCbCr, as JPEG defines it).

    Gatys et al. ("Preserving Color in Neural Artistic Style Transfer", 2016):
    the style's brush strokes and texture live mostly in luminance, so keeping
    the content's Cb and Cr keeps the photograph's colours.
    """
    content = content.convert("RGB").resize(stylized.size, Image.Resampling.LANCZOS)
    y, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def match_colors(image: Image.Image, reference: Image.Image) -> Image.Image:
    """`image` in `reference`'s colours, in CIELAB: lightness histogram-matched, and each
    chroma channel (a*, b*) moved to the reference's mean and spread.

    Chosen on the quality grid (docs/quality.md) over matching each RGB channel's histogram:
    RGB channels matched one by one move hues independently, and a stylized picture whose
    channels are distributed unlike the photograph's comes out with casts no one painted (a
    purple and magenta room behind a red motorcycle); matching a* and b* histograms in CIELAB
    did the same. Moving chroma by its mean and spread (Reinhard et al. 2001) keeps the
    painted hues' relations, and the lightness histogram gives the photograph's tonal range.
    """
    from skimage import color, exposure  # import cost paid only when used

    src = color.rgb2lab(np.asarray(image.convert("RGB")))
    ref = color.rgb2lab(np.asarray(reference.convert("RGB")))
    out = np.empty_like(src)
    out[..., 0] = exposure.match_histograms(src[..., 0], ref[..., 0])
    for c in (1, 2):
        spread = src[..., c].std()
        # A nearly grey picture has almost no chroma to stretch: cap the gain so that noise
        # is not blown up into colour.
        gain = min(ref[..., c].std() / spread, MAX_CHROMA_GAIN) if spread > 1e-6 else 0.0
        out[..., c] = (src[..., c] - src[..., c].mean()) * gain + ref[..., c].mean()
    rgb = np.clip(color.lab2rgb(out), 0.0, 1.0)
    return Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8), "RGB")
