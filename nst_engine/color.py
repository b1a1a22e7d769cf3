"""Colour preservation (luminance transfer) and colour correction (matching in CIELAB)."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

MAX_CHROMA_GAIN = 4.0
STATS_PIXELS = 4_000_000  # colour statistics from at most this many pixels of a picture
BAND_PIXELS = 1_000_000  # colours converted this many at a time
# Up to this many pixels a picture's distinct colours are found by sorting (a 512 px picture in
# 4 ms); above it, by marking a table of every 24-bit colour, whose 80 MiB cost a fixed 50 ms
# and which beats sorting from about a megapixel (3 Mpx: 54 against 113 ms).
SORT_PIXELS = 1_000_000


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
    quantiles), and chroma (a*, b* together) moved onto the reference's by the linear map
    that matches their mean and covariance with the least change (Monge-Kantorovich).

    Chosen on the quality grid (docs/quality.md, docs/quality-colours.png). Matching each RGB
    channel's histogram moves hues independently: a stylized picture whose channels are
    distributed unlike the photograph's comes out with casts no one painted (a purple and
    magenta room behind a red motorcycle); matching a* and b* one at a time, by histogram or
    by mean and spread, still did it, because a painted blue is a* and b* together (b* below
    zero, a* above): pulling b* up alone leaves the a* of a violet. Moved as a pair, the
    painting's dominant chroma direction is turned onto the photograph's (the motorcycle red
    again, the astronaut's suit orange), and the lightness histogram gives the photograph's
    tonal range.
    """
    from skimage import color  # import cost paid only when used

    # Statistics from at most STATS_PIXELS of each picture; the mapping is then a function of
    # the 8-bit colour alone, computed once for each distinct colour the picture has (a 50
    # megapixel print has a few million) and looked up for every pixel: converting every
    # pixel to CIELAB and back took 23 s at 8192x6144 on a 2-core CPU.
    src_l, src_ab = _lab_sample(image, color)
    ref_l, ref_ab = _lab_sample(reference, color)
    levels = np.linspace(0.0, 1.0, 1025)
    src_q, ref_q = np.quantile(src_l, levels), np.quantile(ref_l, levels)
    transform = _chroma_transform(src_ab, ref_ab)
    src_mean, ref_mean = src_ab.mean(axis=0), ref_ab.mean(axis=0)
    rgb = np.asarray(image.convert("RGB"))
    distinct, inverse = _distinct_colours(_colour_codes(rgb))
    corrected = np.empty((len(distinct), 3), dtype=np.uint8)  # for each distinct colour
    for start in range(0, len(distinct), BAND_PIXELS):  # a bounded CIELAB copy at a time
        part = distinct[start:start + BAND_PIXELS]
        lab = color.rgb2lab(_colours(part)[None])[0]
        lab[:, 0] = np.interp(lab[:, 0], src_q, ref_q)
        lab[:, 1:] = (lab[:, 1:] - src_mean) @ transform.T + ref_mean
        with warnings.catch_warnings():
            # Chroma moved outside sRGB's gamut comes back with negative Z, which skimage clips
            # and warns about: the clip is what is wanted (the nearest displayable colour).
            warnings.filterwarnings("ignore", message=".*negative Z values", category=UserWarning)
            back = color.lab2rgb(lab[None])[0]
        corrected[start:start + len(part)] = (np.clip(back, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(corrected[inverse].reshape(rgb.shape), "RGB")


def load() -> None:
    """Import what `match_colors` calls. skimage loads its submodules on first attribute access,
    so `from skimage import color` alone leaves the conversions' import (about 0.2 s) to the
    first picture corrected: a long-running caller's first job (`optimize.preload`)."""
    from skimage import color

    color.rgb2lab, color.lab2rgb  # noqa: B018  (the access is the import)


def _distinct_colours(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct colour codes, ascending, and each pixel's index among them."""
    if codes.size <= SORT_PIXELS:
        distinct, inverse = np.unique(codes, return_inverse=True)
        return distinct, inverse.ravel()
    present = np.zeros(1 << 24, dtype=bool)
    present[codes] = True
    distinct = np.flatnonzero(present).astype(np.uint32)
    index = np.empty(1 << 24, dtype=np.uint32)  # colour code -> its place in `distinct` (64 MiB)
    index[distinct] = np.arange(len(distinct), dtype=np.uint32)
    return distinct, index[codes]


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's 8-bit colour as one 24-bit number (R, G, B from the most significant)."""
    codes = rgb[..., 0].astype(np.uint32) << 16
    codes |= rgb[..., 1].astype(np.uint32) << 8
    codes |= rgb[..., 2]
    return codes.ravel()


def _colours(codes: np.ndarray) -> np.ndarray:
    """The 24-bit colour codes back to (N, 3) uint8 RGB."""
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)


def _chroma_transform(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The 2x2 linear map taking `src`'s chroma covariance to `ref`'s with the least
    displacement: T = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2 (Pitie and Kokaram 2007). Its gains
    (singular values) are capped at MAX_CHROMA_GAIN, so that a nearly grey picture's noise is
    not blown up into colour."""
    eps = 1e-6 * np.eye(2)
    s_cov, r_cov = np.cov(src.T) + eps, np.cov(ref.T) + eps
    s_half = _sqrtm(s_cov)
    s_inv_half = np.linalg.inv(s_half)
    transform = s_inv_half @ _sqrtm(s_half @ r_cov @ s_half) @ s_inv_half
    u, gains, vt = np.linalg.svd(transform)
    return (u * np.minimum(gains, MAX_CHROMA_GAIN)) @ vt


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(m)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _lab_sample(img: Image.Image, color) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB lightness and chroma of an evenly spread sample of at most STATS_PIXELS pixels."""
    rgb = np.asarray(img.convert("RGB"))
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / STATS_PIXELS))))
    lab = color.rgb2lab(rgb[::step, ::step]).reshape(-1, 3)
    return lab[:, 0], lab[:, 1:]
