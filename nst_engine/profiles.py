"""ICC profiles built from a colour space's primaries, for spaces a picture declares without
carrying a profile: a camera set to Adobe RGB writes JPEGs that say so in their EXIF only (the
DCF "option file" rule), and Pillow makes no RGB profile but sRGB's.

A v2 display profile is a header, a tag table and a few tags; a matrix/TRC one (the kind phones
and cameras embed: Display P3, Adobe RGB) is its three primaries' XYZ colourants (adapted to the
D50 connection space, Bradford), a white point and a tone curve per channel.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

# Adobe RGB (1998): its primaries' and white's chromaticities (xy) and its gamma, 563/256.
ADOBE_RGB = {"red": (0.6400, 0.3300), "green": (0.2100, 0.7100), "blue": (0.1500, 0.0600),
             "white": (0.3127, 0.3290), "gamma": 563 / 256}
D50 = np.array([0.9642, 1.0, 0.8249])  # the profile connection space's white
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


@functools.cache
def adobe_rgb() -> bytes:
    """The Adobe RGB (1998) profile, for pictures whose EXIF declares that space."""
    return matrix_profile(ADOBE_RGB, "Adobe RGB (1998)")


def srgb_curve() -> bytes:
    """sRGB's own tone curve sampled at 1024 levels, as the sRGB profiles cameras embed (HP's
    "sRGB IEC61966-2.1") carry it; Display P3 has it too."""
    levels = np.linspace(0.0, 1.0, 1024)
    return sampled_curve(np.where(levels <= 0.04045, levels / 12.92, ((levels + 0.055) / 1.055) ** 2.4))


# HDR pictures (BT.2100's PQ and HLG signals) shown on an SDR screen, as the outputs are: the
# reference white (BT.2408's 203 cd/m2, where a picture's paper and faces sit) is SDR's white, a
# picture below KNEE of it is kept as mastered, and the highlights up to HDR_PEAK (the usual
# mastering peak; brighter is clipped) are rolled off into the rest. So the reference white
# comes out at 88 % linear light (level 241), 18 % grey at 18 % (level 118).
REFERENCE_WHITE = 203.0  # cd/m2
HDR_PEAK = 1000.0  # cd/m2
KNEE = 0.75  # of the reference white


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084's (PQ's) display light for a signal in 0..1, in cd/m2."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    e = np.clip(signal, 0.0, 1.0) ** (1 / m2)
    return 10000.0 * (np.maximum(e - c1, 0.0) / (c2 - c3 * e)) ** (1 / m1)


def hlg_to_nits(signal: np.ndarray) -> np.ndarray:
    """BT.2100 HLG's display light for a signal in 0..1 on a 1000 cd/m2 display, in cd/m2: the
    inverse OETF, then the OOTF's system gamma 1.2 taken per channel."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    signal = np.clip(signal, 0.0, 1.0)
    scene = np.where(signal <= 0.5, signal**2 / 3, (np.exp((np.maximum(signal, 0.5) - c) / a) + b) / 12)
    return 1000.0 * scene**1.2


def roll_off(light: np.ndarray) -> np.ndarray:
    """HDR light (1 = the reference white) as SDR light in 0..1: itself below KNEE, above it
    Reinhard's curve, extended so that HDR_PEAK lands on 1 with no bend at the knee."""
    span = 1.0 - KNEE
    t = np.maximum(light - KNEE, 0.0) / span
    top = (HDR_PEAK / REFERENCE_WHITE - KNEE) / span
    rolled = KNEE + span * t * (1 + t / top**2) / (1 + t)
    return np.where(light <= KNEE, light, np.minimum(rolled, 1.0))


def hdr_curve(transfer: str) -> bytes:
    """The tone curve of a PQ or HLG signal as SDR light (`roll_off`), sampled at 4096 levels."""
    to_nits = {"PQ": pq_to_nits, "HLG": hlg_to_nits}[transfer]
    return sampled_curve(roll_off(to_nits(np.linspace(0.0, 1.0, 4096)) / REFERENCE_WHITE))


@functools.lru_cache(maxsize=16)  # a daemon meets few spaces; a hostile inbox could send many
def primaries_profile(red: tuple[float, float], green: tuple[float, float], blue: tuple[float, float],
                      white: tuple[float, float], description: str, transfer: str = "sRGB") -> bytes:
    """A profile of these primaries (xy) and tone curve (sRGB's, or an HDR one's: "PQ", "HLG"):
    the space a HEIF or AVIF declares by its colour description (nclx) instead of carrying a profile."""
    curve = srgb_curve() if transfer == "sRGB" else hdr_curve(transfer)
    return matrix_profile({"red": red, "green": green, "blue": blue, "white": white}, description, curve=curve)


def rgb_to_xyz(space: dict) -> np.ndarray:
    """The matrix taking linear RGB of `space` to XYZ under its own white (white: Y = 1)."""
    def xyz(xy):
        x, y = xy
        return np.array([x / y, 1.0, (1 - x - y) / y])

    primaries = np.stack([xyz(space[c]) for c in ("red", "green", "blue")], axis=1)
    scale = np.linalg.solve(primaries, xyz(space["white"]))
    return primaries * scale


def matrix_profile(space: dict, description: str, curve: bytes | None = None) -> bytes:
    """A v2 RGB display profile of `space`: its colourants adapted to D50 (Bradford), and one
    tone curve for the three channels (`curve`, else `space["gamma"]`'s)."""
    white = rgb_to_xyz(space) @ np.ones(3)
    cone = BRADFORD @ D50 / (BRADFORD @ white)
    adapted = np.linalg.inv(BRADFORD) @ np.diag(cone) @ BRADFORD @ rgb_to_xyz(space)
    curve = curve or gamma_curve(space["gamma"])
    tags = [(b"desc", desc_tag(description)), (b"cprt", text_tag("no copyright, built by nst from the primaries")),
            (b"wtpt", xyz_tag(D50)), (b"rXYZ", xyz_tag(adapted[:, 0])), (b"gXYZ", xyz_tag(adapted[:, 1])),
            (b"bXYZ", xyz_tag(adapted[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    return profile(tags, space=b"RGB ")


def profile(tags: list[tuple[bytes, bytes]], *, space: bytes, device_class: bytes = b"mntr",
            connection: bytes = b"XYZ ") -> bytes:
    """A v2 profile of these (signature, body) tags."""
    table_size = 4 + 12 * len(tags)
    offset, entries, data = 128 + table_size, b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)  # each tag on a 4-byte boundary
        entries += struct.pack(">4sII", signature, offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s4sIII8sI12s4s16s28s", size, b"", 0x02100000, device_class, space, connection,
                         b"\0" * 12, b"acsp", b"", 0, 0, 0, b"", 0, s15(D50), b"", b"", b"")
    return header + struct.pack(">I", len(tags)) + entries + data


def s15(values) -> bytes:
    """s15Fixed16 numbers."""
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)


def xyz_tag(values) -> bytes:
    return b"XYZ \0\0\0\0" + s15(values)


def gamma_curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))


def sampled_curve(linear: np.ndarray) -> bytes:
    """A tone curve given by its linear values (0..1) at evenly spaced levels."""
    return b"curv\0\0\0\0" + struct.pack(">I", len(linear)) + np.round(linear * 65535).astype(">u2").tobytes()


def text_tag(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def desc_tag(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)
