"""ICC profiles for the tests, built here: Pillow can make only sRGB, Lab and XYZ profiles, and
this machine has no profile files. A v2 display profile is a header, a tag table and a few
tags; a matrix/TRC one (the kind phones and cameras embed: Display P3, Adobe RGB) is its three
primaries' XYZ colourants (adapted to the D50 connection space), a white point and a tone curve
per channel. The expected colours in the tests are computed from the same primaries with numpy,
independently of littleCMS.
"""

from __future__ import annotations

import struct

import numpy as np

# Adobe RGB (1998): its primaries' and white's chromaticities (xy) and its gamma, 563/256.
ADOBE_RGB = {"red": (0.6400, 0.3300), "green": (0.2100, 0.7100), "blue": (0.1500, 0.0600),
             "white": (0.3127, 0.3290), "gamma": 563 / 256}
DISPLAY_P3 = {"red": (0.680, 0.320), "green": (0.265, 0.690), "blue": (0.150, 0.060), "white": (0.3127, 0.3290),
              "gamma": "srgb"}  # Apple's: the DCI-P3 primaries, D65 and sRGB's curve
SRGB = {"red": (0.6400, 0.3300), "green": (0.3000, 0.6000), "blue": (0.1500, 0.0600), "white": (0.3127, 0.3290),
        "gamma": "srgb"}
D50 = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def rgb_to_xyz(space: dict) -> np.ndarray:
    """The matrix taking linear RGB of `space` to XYZ under its own white (white: Y = 1)."""
    def xyz(xy):
        x, y = xy
        return np.array([x / y, 1.0, (1 - x - y) / y])

    primaries = np.stack([xyz(space[c]) for c in ("red", "green", "blue")], axis=1)
    scale = np.linalg.solve(primaries, xyz(space["white"]))
    return primaries * scale


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
    """A v2 RGB display profile of `space`: its colourants adapted to D50 (Bradford), one gamma."""
    white = rgb_to_xyz(space) @ np.ones(3)
    cone = BRADFORD @ D50 / (BRADFORD @ white)
    adapted = np.linalg.inv(BRADFORD) @ np.diag(cone) @ BRADFORD @ rgb_to_xyz(space)
    curve = _curve(space["gamma"])
    tags = [(b"desc", _desc(description)), (b"cprt", _text("no copyright, built by the tests")),
            (b"wtpt", _xyz(D50)), (b"rXYZ", _xyz(adapted[:, 0])), (b"gXYZ", _xyz(adapted[:, 1])),
            (b"bXYZ", _xyz(adapted[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    return _profile(tags, space=b"RGB ")


def gray_profile(gamma: float, description: str) -> bytes:
    """A v2 grey display profile whose tone curve is `gamma` (1.0: linear light)."""
    return _profile([(b"desc", _desc(description)), (b"cprt", _text("no copyright")),
                     (b"wtpt", _xyz(D50)), (b"kTRC", _curve(gamma))], space=b"GRAY")


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
    table = (b"mft1\0\0\0\0" + struct.pack(">BBBB", 4, 3, grid, 0) + _s15(np.eye(3).ravel())
             + ramp * 4 + encoded.astype(np.uint8).tobytes() + ramp * 3)
    tags = [(b"desc", _desc(description)), (b"cprt", _text("no copyright")), (b"wtpt", _xyz(D50)), (b"A2B0", table)]
    return _profile(tags, space=b"CMYK", device_class=b"prtr", connection=b"Lab ")


def srgb_to_lab_d50(rgb: np.ndarray) -> np.ndarray:
    """sRGB levels (0..1) to CIELAB under D50, the profile connection space (Bradford-adapted)."""
    linear = decode(rgb, "srgb")
    white = rgb_to_xyz(SRGB) @ np.ones(3)
    adapt = np.linalg.inv(BRADFORD) @ np.diag(BRADFORD @ D50 / (BRADFORD @ white)) @ BRADFORD
    xyz = linear @ (adapt @ rgb_to_xyz(SRGB)).T / D50
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _profile(tags: list[tuple[bytes, bytes]], *, space: bytes, device_class: bytes = b"mntr",
             connection: bytes = b"XYZ ") -> bytes:
    table_size = 4 + 12 * len(tags)
    offset, entries, data = 128 + table_size, b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)  # each tag on a 4-byte boundary
        entries += struct.pack(">4sII", signature, offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s4sIII8sI12s4s16s28s", size, b"", 0x02100000, device_class, space, connection,
                         b"\0" * 12, b"acsp", b"", 0, 0, 0, b"", 0, _s15(D50), b"", b"", b"")
    return header + struct.pack(">I", len(tags)) + entries + data


def _s15(values) -> bytes:
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)


def _xyz(values) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(values)


def _curve(gamma: float | str) -> bytes:
    """A tone curve: one gamma, or "srgb": sRGB's own curve sampled at 1024 points, as the
    sRGB profiles cameras embed (HP's "sRGB IEC61966-2.1") carry it."""
    if gamma == "srgb":
        linear = decode(np.linspace(0.0, 1.0, 1024), "srgb")
        return b"curv\0\0\0\0" + struct.pack(">I", 1024) + np.round(linear * 65535).astype(">u2").tobytes()
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))


def _text(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)
