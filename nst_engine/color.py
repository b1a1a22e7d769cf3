"""Colour preservation (luminance transfer) and colour correction (matching in CIELAB)."""

from __future__ import annotations

import numpy as np
from PIL import Image

MAX_CHROMA_GAIN = 4.0
STATS_PIXELS = 4_000_000  # colour statistics from at most this many pixels of a picture
BAND_PIXELS = 1_000_000  # colours converted this many at a time
# Up to this many pixels a picture's distinct colours are found by sorting (a 512 px picture in
# 4 ms); above it, by marking a table of every 24-bit colour, whose 80 MiB cost a fixed 50 ms
# and which beats sorting from about a megapixel (3 Mpx: 54 against 113 ms).
SORT_PIXELS = 1_000_000

# sRGB and CIELAB as skimage.color defines them (D65, 2-degree observer), computed here for
# 8-bit colours: their linear values are a 256-entry table, and the way back to 8 bits looks up
# where each level begins in linear light instead of raising every channel to a power. With the
# quantiles from one sort and the covariances from dot products, a 512 px picture's correction
# takes 67 ms instead of skimage's 127, the same picture bit for bit (tests/unit/test_color.py).
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE = np.array([0.95047, 1.0, 1.08883])


def _linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB's transfer function undone (encoded values in 0..1)."""
    return np.where(encoded > 0.04045, ((encoded + 0.055) / 1.055) ** 2.4, encoded / 12.92)


_LINEAR = _linear(np.arange(256) / 255.0)  # an 8-bit level's linear value
# The linear value from which a colour rounds to each level 1..255 (`* 255 + 0.5` truncated),
# and the way to a level without searching them: linear values in 8192 bins, each narrower than
# the closest two starts (1/3295, in the dark linear segment), so that a bin holds at most one
# start: the level at the bin's start, or the next where the value is past the next's start.
_LEVEL_STARTS = _linear((np.arange(1, 256) - 0.5) / 255.0)
_BINS = 8192
_BIN_LEVEL = np.searchsorted(_LEVEL_STARTS, np.arange(_BINS + 1) / _BINS, side="right").astype(np.uint8)
_NEXT_START = np.append(_LEVEL_STARTS, np.inf)  # level v's next level begins at _NEXT_START[v]


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
    # Statistics from at most STATS_PIXELS of each picture; the mapping is then a function of
    # the 8-bit colour alone, computed once for each distinct colour the picture has (a 50
    # megapixel print has a few million) and looked up for every pixel: converting every
    # pixel to CIELAB and back took 23 s at 8192x6144 on a 2-core CPU.
    src_l, src_ab = _lab_sample(image)
    ref_l, ref_ab = _lab_sample(reference)
    levels = np.linspace(0.0, 1.0, 1025)
    src_q, ref_q = _quantiles(src_l, levels), _quantiles(ref_l, levels)
    transform = _chroma_transform(src_ab, ref_ab)
    src_mean, ref_mean = src_ab.mean(axis=0), ref_ab.mean(axis=0)
    rgb = np.asarray(image.convert("RGB"))
    distinct, inverse = _distinct_colours(_colour_codes(rgb))
    corrected = np.empty((len(distinct), 3), dtype=np.uint8)  # for each distinct colour
    for start in range(0, len(distinct), BAND_PIXELS):  # a bounded CIELAB copy at a time
        part = distinct[start:start + BAND_PIXELS]
        lab = _lab(_colours(part))
        lab[:, 0] = np.interp(lab[:, 0], src_q, ref_q)
        lab[:, 1:] = (lab[:, 1:] - src_mean) @ transform.T + ref_mean
        corrected[start:start + len(part)] = _rgb8(lab)
    return Image.fromarray(corrected[inverse].reshape(rgb.shape), "RGB")


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


def _quantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """np.quantile's (linear interpolation) from one sort: numpy partitions once for each of
    1025 levels (13 ms for a 512 px picture's lightness, against 1.4 ms)."""
    ordered = np.sort(values)
    position = levels * (len(ordered) - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _chroma_transform(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The 2x2 linear map taking `src`'s chroma covariance to `ref`'s with the least
    displacement: T = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2 (Pitie and Kokaram 2007). Its gains
    (singular values) are capped at MAX_CHROMA_GAIN, so that a nearly grey picture's noise is
    not blown up into colour."""
    eps = 1e-6 * np.eye(2)
    s_cov, r_cov = _covariance(src) + eps, _covariance(ref) + eps
    s_half = _sqrtm(s_cov)
    s_inv_half = np.linalg.inv(s_half)
    transform = s_inv_half @ _sqrtm(s_half @ r_cov @ s_half) @ s_inv_half
    u, gains, vt = np.linalg.svd(transform)
    return (u * np.minimum(gains, MAX_CHROMA_GAIN)) @ vt


def _covariance(ab: np.ndarray) -> np.ndarray:
    """np.cov of the (N, 2) chroma's two columns, from three dot products of contiguous
    columns (np.cov's copy and product of the transposed pair: 5 ms for a 512 px picture)."""
    a, b = np.ascontiguousarray(ab[:, 0]), np.ascontiguousarray(ab[:, 1])
    a, b = a - a.mean(), b - b.mean()
    n = len(a) - 1
    cross = a @ b / n
    return np.array([[a @ a / n, cross], [cross, b @ b / n]])


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(m)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _lab_sample(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB lightness and chroma of an evenly spread sample of at most STATS_PIXELS pixels."""
    rgb = np.asarray(img.convert("RGB"))
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / STATS_PIXELS))))
    lab = _lab(rgb[::step, ::step].reshape(-1, 3))
    return lab[:, 0], lab[:, 1:]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB colours (N, 3) in CIELAB (as skimage's rgb2lab)."""
    xyz = (_LINEAR[rgb] @ _XYZ_FROM_RGB.T) / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[:, 0] = 116.0 * f[:, 1] - 16.0
    lab[:, 1] = 500.0 * (f[:, 0] - f[:, 1])
    lab[:, 2] = 200.0 * (f[:, 1] - f[:, 2])
    return lab


def _rgb8(lab: np.ndarray) -> np.ndarray:
    """CIELAB colours (N, 3) as 8-bit sRGB, each channel clipped to the gamut (as skimage's
    lab2rgb, then `* 255 + 0.5` truncated). Chroma moved outside sRGB's gamut can ask for
    a negative Z: it is clipped, as skimage does, to the nearest displayable colour."""
    f = np.empty_like(lab)
    f[:, 1] = (lab[:, 0] + 16.0) / 116.0
    f[:, 0] = lab[:, 1] / 500.0 + f[:, 1]
    f[:, 2] = np.maximum(f[:, 1] - lab[:, 2] / 200.0, 0.0)
    xyz = np.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787) * _WHITE
    linear = np.clip(xyz @ _RGB_FROM_XYZ.T, 0.0, 1.0)
    level = _BIN_LEVEL[(linear * _BINS).astype(np.intp)]
    level += linear >= _NEXT_START[level]
    return level
