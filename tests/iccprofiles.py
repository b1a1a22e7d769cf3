"""ICC profiles for the tests: Pillow can make only sRGB, Lab and XYZ profiles, and this
machine has no profile files. The RGB ones are built by the engine's own builder
(`nst_engine.profiles`, which a camera's EXIF-declared Adobe RGB needs), the grey and CMYK ones
here from its tags. The expected colours in the tests are computed from the same primaries with
numpy, independently of littleCMS (and `rgb_to_xyz` is held to Adobe's published matrix).
"""

from __future__ import annotations

import struct

import numpy as np

from nst_engine.profiles import (
    ADOBE_RGB, BRADFORD, D50, desc_tag, gamma_curve, profile, rgb_to_xyz, s15, srgb_curve, text_tag, xyz_tag,
)
from nst_engine.profiles import matrix_profile as _matrix_profile

DISPLAY_P3 = {"red": (0.680, 0.320), "green": (0.265, 0.690), "blue": (0.150, 0.060), "white": (0.3127, 0.3290),
              "gamma": "srgb"}  # Apple's: the DCI-P3 primaries, D65 and sRGB's curve
SRGB = {"red": (0.6400, 0.3300), "green": (0.3000, 0.6000), "blue": (0.1500, 0.0600), "white": (0.3127, 0.3290),
        "gamma": "srgb"}
__all__ = ["ADOBE_RGB", "DISPLAY_P3", "INKS", "SRGB", "cmyk_model", "cmyk_profile", "decode", "expected_srgb",
           "gray_profile", "matrix_profile", "rgb_to_xyz", "srgb_encode", "srgb_to_lab_d50"]


def decode(levels: np.ndarray, gamma: float | str) -> np.ndarray:
    """Levels (0..1) to linear light through a tone curve: one gamma, or "srgb"."""
    if gamma == "srgb":
        return np.where(levels <= 0.04045, levels / 12.92, ((levels + 0.055) / 1.055) ** 2.4)
    return levels ** gamma


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def expected_srgb(pixels: np.ndarray, space: dict) -> np.ndarray:
    """8-bit pixels of `space` as 8-bit sRGB (relative colorimetric, clipped)."""
    linear = decode(pixels / 255.0, space["gamma"])
    to_srgb = np.linalg.inv(rgb_to_xyz(SRGB)) @ rgb_to_xyz(space)  # the same white: no adaptation
    return np.round(srgb_encode(linear @ to_srgb.T) * 255.0)


def matrix_profile(space: dict, description: str) -> bytes:
    """A v2 RGB display profile of `space` (the engine's builder), its curve one gamma or sRGB's."""
    return _matrix_profile(space, description, curve=_curve(space["gamma"]))


def gray_profile(gamma: float, description: str) -> bytes:
    """A v2 grey display profile whose tone curve is `gamma` (1.0: linear light)."""
    return profile([(b"desc", desc_tag(description)), (b"cprt", text_tag("no copyright")),
                    (b"wtpt", xyz_tag(D50)), (b"kTRC", _curve(gamma))], space=b"GRAY")


# The test printer's inks: the share of red, green and blue light each absorbs at full strength
# (real cyan takes some green, magenta some blue; black is not quite neutral).
INKS = np.array([[0.85, 0.30, 0.10], [0.10, 0.80, 0.35], [0.02, 0.08, 0.85], [0.88, 0.90, 0.92]])


def cmyk_model(cmyk: np.ndarray) -> np.ndarray:
    """The test printer's colour of ink amounts (0..1) in sRGB levels (0..1): each ink lets
    through (1 - amount x absorption) of each light. Far from Pillow's plain formula,
    (1 - ink)(1 - black), which knows no printer."""
    light = np.ones(cmyk.shape[:-1] + (3,))
    for ink in range(4):
        light = light * (1 - cmyk[..., ink:ink + 1] * INKS[ink])
    return light


def cmyk_profile(description: str, grid: int = 9) -> bytes:
    """A v2 CMYK output profile whose A2B0 table (lut8Type, Lab) is `cmyk_model` on a grid."""
    axis = np.linspace(0.0, 1.0, grid)
    points = np.stack(np.meshgrid(axis, axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 4)  # C slowest
    lab = srgb_to_lab_d50(cmyk_model(points))
    encoded = np.clip(np.round(np.stack([lab[:, 0] * 255 / 100, lab[:, 1] + 128, lab[:, 2] + 128], axis=1)), 0, 255)
    ramp = bytes(range(256))
    table = (b"mft1\0\0\0\0" + struct.pack(">BBBB", 4, 3, grid, 0) + s15(np.eye(3).ravel())
             + ramp * 4 + encoded.astype(np.uint8).tobytes() + ramp * 3)
    tags = [(b"desc", desc_tag(description)), (b"cprt", text_tag("no copyright")), (b"wtpt", xyz_tag(D50)),
            (b"A2B0", table)]
    return profile(tags, space=b"CMYK", device_class=b"prtr", connection=b"Lab ")


def srgb_to_lab_d50(rgb: np.ndarray) -> np.ndarray:
    """sRGB levels (0..1) to CIELAB under D50, the profile connection space (Bradford-adapted)."""
    linear = decode(rgb, "srgb")
    white = rgb_to_xyz(SRGB) @ np.ones(3)
    adapt = np.linalg.inv(BRADFORD) @ np.diag(BRADFORD @ D50 / (BRADFORD @ white)) @ BRADFORD
    xyz = linear @ (adapt @ rgb_to_xyz(SRGB)).T / D50
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _curve(gamma: float | str) -> bytes:
    """A tone curve: one gamma, or "srgb": sRGB's own curve sampled at 1024 points, as the
    sRGB profiles cameras embed (HP's "sRGB IEC61966-2.1") carry it."""
    if gamma == "srgb":
        return srgb_curve()
    return gamma_curve(gamma)
