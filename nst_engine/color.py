"""Colour preservation (luminance transfer) and colour correction (matching in CIELAB)."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

MAX_CHROMA_GAIN = 4.0
STATS_PIXELS = 4_000_000  # colour statistics from at most this many pixels of a picture
BAND_PIXELS = 1_000_000  # colours converted this many pixels at a time


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
    """`image` in `reference`'s colours, in CIELAB: lightness histogram-matched (by 1024
    quantiles), and each chroma channel (a*, b*) moved to the reference's mean and spread.

    Chosen on the quality grid (docs/quality.md) over matching each RGB channel's histogram:
    RGB channels matched one by one move hues independently, and a stylized picture whose
    channels are distributed unlike the photograph's comes out with casts no one painted (a
    purple and magenta room behind a red motorcycle); matching a* and b* histograms in CIELAB
    did the same. Moving chroma by its mean and spread (Reinhard et al. 2001) keeps the
    painted hues' relations, and the lightness histogram gives the photograph's tonal range.
    """
    from skimage import color  # import cost paid only when used

    # Statistics from at most STATS_PIXELS of each picture, then the mapping applied in
    # bands of rows: a print's CIELAB copy would be gigabytes of float64 at once.
    src_l, src_ab = _lab_sample(image, color)
    ref_l, ref_ab = _lab_sample(reference, color)
    levels = np.linspace(0.0, 1.0, 1025)
    src_q, ref_q = np.quantile(src_l, levels), np.quantile(ref_l, levels)
    gains, shifts = [], []
    for c in (0, 1):
        spread = src_ab[:, c].std()
        # A nearly grey picture has almost no chroma to stretch: cap the gain so that noise
        # is not blown up into colour.
        gain = min(ref_ab[:, c].std() / spread, MAX_CHROMA_GAIN) if spread > 1e-6 else 0.0
        gains.append(gain)
        shifts.append(ref_ab[:, c].mean() - src_ab[:, c].mean() * gain)
    rgb = np.asarray(image.convert("RGB"))
    out = np.empty_like(rgb)
    band = max(1, BAND_PIXELS // max(1, rgb.shape[1]))
    for top in range(0, rgb.shape[0], band):
        lab = color.rgb2lab(rgb[top:top + band])
        lab[..., 0] = np.interp(lab[..., 0], src_q, ref_q)
        for c in (0, 1):
            lab[..., c + 1] = lab[..., c + 1] * gains[c] + shifts[c]
        with warnings.catch_warnings():
            # Chroma moved outside sRGB's gamut comes back with negative Z, which skimage clips
            # and warns about: the clip is what is wanted (the nearest displayable colour).
            warnings.filterwarnings("ignore", message=".*negative Z values", category=UserWarning)
            rgb_band = color.lab2rgb(lab)
        out[top:top + band] = (np.clip(rgb_band, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def _lab_sample(img: Image.Image, color) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB lightness and chroma of an evenly spread sample of at most STATS_PIXELS pixels."""
    rgb = np.asarray(img.convert("RGB"))
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / STATS_PIXELS))))
    lab = color.rgb2lab(rgb[::step, ::step]).reshape(-1, 3)
    return lab[:, 0], lab[:, 1:]
