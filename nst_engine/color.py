"""Colour preservation (luminance transfer) and histogram-matching correction."""

from __future__ import annotations

import numpy as np
from PIL import Image


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


def match_histograms(image: Image.Image, reference: Image.Image) -> Image.Image:
    """Each RGB channel of `image` remapped so its histogram matches `reference`'s."""
    from skimage.exposure import match_histograms as _match  # import cost paid only when used

    src = np.asarray(image.convert("RGB"))
    ref = np.asarray(reference.convert("RGB"))
    matched = _match(src, ref, channel_axis=-1)
    return Image.fromarray(np.clip(matched + 0.5, 0, 255).astype(np.uint8), "RGB")
