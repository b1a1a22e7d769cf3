"""An AVIF's colour description (nclx), read from its boxes.

Pillow decodes AVIF through libavif, which turns the YUV samples into RGB numbers by the
file's matrix but leaves them in the primaries the file declares, and tells Pillow only an
embedded ICC profile. A camera, a phone or a converter often declares the space by code
points instead (ISO/IEC 23091-2, "H.273"): Display P3, BT.2020. Those numbers read as sRGB
look duller than the picture. This reads the declaration where libavif found it: the `colr`
box of the primary item's properties (ISO/IEC 14496-12 and 23008-12, the HEIF container AVIF
is), and gives it in pillow-heif's words for a HEIF (`nclx_profile`), so one reader
(`images._nclx_space`) turns either into a profile.

The file is a user's: every length is checked, reads are bounded, and a damaged or unusual
file gives None (its numbers read as sRGB, as before), never an exception.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_D65, _C = (0.3127, 0.3290), (0.310, 0.316)  # whites
# H.273's colour primaries: a name for the log where the picture's space is a familiar one, and
# the chromaticities (x, y) of red, green, blue and white.
PRIMARIES = {
    1: ("BT.709", ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), _D65)),  # sRGB's
    4: (None, ((0.670, 0.330), (0.210, 0.710), (0.140, 0.080), _C)),  # BT.470 System M
    5: (None, ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060), _D65)),  # BT.601 625 lines
    6: (None, ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65)),  # BT.601 525 lines
    7: (None, ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65)),  # SMPTE 240M
    8: (None, ((0.681, 0.319), (0.243, 0.692), (0.145, 0.049), _C)),  # generic film
    9: ("BT.2020", ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), _D65)),  # and BT.2100
    11: ("DCI-P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.314, 0.351))),
    12: ("Display P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), _D65)),
    22: (None, ((0.630, 0.340), (0.295, 0.605), (0.155, 0.077), _D65)),  # EBU Tech 3213
}
MAX_META = 1 << 20  # bytes: a picture's meta box is a few hundred; a tiled one a few thousand
MAX_BOXES = 64  # top-level boxes looked through for `meta` (ftyp, meta, mdat come first)


def avif_nclx(fp: BinaryIO) -> dict | None:
    """The colour description of the AVIF in `fp` (from its start; `fp` is left where it was),
    as pillow-heif gives a HEIF's: code points and the primaries' chromaticities. None where
    the file declares none by code points, or cannot be read."""
    try:
        here = fp.tell()
        try:
            fp.seek(0)
            meta = _top_level_meta(fp)
        finally:
            fp.seek(here)
        found = _primary_colr(meta) if meta is not None else None
    except (OSError, ValueError, IndexError, OverflowError, struct.error):  # Overflow: a seek past 2**63
        return None
    if found is None:
        return None
    primaries, transfer, matrix, full_range = found
    nclx = {"color_primaries": primaries, "transfer_characteristics": transfer,
            "matrix_coefficients": matrix, "full_range_flag": full_range}
    return nclx | chromaticities(primaries)


def chromaticities(code: int) -> dict:
    """H.273 primaries `code`'s chromaticities in pillow-heif's words (`color_primary_red_x`,
    ...); empty for a code not in the table."""
    return {f"color_primary_{colour}_{axis}": value
            for colour, xy in zip(("red", "green", "blue", "white"), PRIMARIES.get(code, (None, ()))[1])
            for axis, value in zip("xy", xy)}


def primaries_name(code: int) -> str:
    """H.273 primaries `code` in words, for the log."""
    return PRIMARIES.get(code, (None,))[0] or f"the primaries of H.273 code {code}"


def _top_level_meta(fp: BinaryIO) -> bytes | None:
    """The body of the file's top-level `meta` box, or None."""
    for _ in range(MAX_BOXES):
        header = fp.read(8)
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header)
        start = 8
        if size == 1:  # a 64-bit size follows
            size, start = struct.unpack(">Q", fp.read(8))[0], 16
        if kind == b"meta":
            body = size - start if size else MAX_META + 1
            if not 0 < body <= MAX_META:
                return None
            data = fp.read(body)
            return data if len(data) == body else None
        if size == 0 or size < start:
            return None  # the last box (to the end of the file), or a damaged size
        fp.seek(size - start, 1)
    return None


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    """The boxes laid end to end in `data`, as (type, body); a damaged size ends the list."""
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        start = 8
        if size == 1:
            if at + 16 > len(data):
                break
            size, start = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = len(data) - at
        if size < start or at + size > len(data):
            break
        boxes.append((kind, data[at + start:at + size]))
        at += size
    return boxes


def _primary_colr(meta: bytes) -> tuple[int, int, int, int] | None:
    """The nclx `colr` property of the primary item (`pitm`), through the item property
    associations (`ipma`); None where it has none, or an ICC profile (`prof`, which Pillow gives)."""
    boxes = dict(_children(meta[4:]))  # meta is a full box: version and flags first
    if b"pitm" not in boxes or b"iprp" not in boxes:
        return None
    pitm = boxes[b"pitm"]
    primary = struct.unpack_from(">H" if pitm[0] == 0 else ">I", pitm, 4)[0]
    properties = dict(_children(boxes[b"iprp"]))
    if b"ipco" not in properties or b"ipma" not in properties:
        return None
    ipco = _children(properties[b"ipco"])
    for index in _associated(properties[b"ipma"], primary):
        if 1 <= index <= len(ipco) and ipco[index - 1][0] == b"colr":
            colr = ipco[index - 1][1]
            if colr[:4] == b"nclx" and len(colr) >= 11:
                primaries, transfer, matrix, flags = struct.unpack_from(">HHHB", colr, 4)
                return primaries, transfer, matrix, flags >> 7
    return None


def _associated(ipma: bytes, item: int) -> list[int]:
    """The property indices (1-based, into `ipco`) associated with `item`."""
    version, flags = ipma[0], int.from_bytes(ipma[1:4], "big")
    at, wide_id, wide_index = 4, version >= 1, bool(flags & 1)
    (count,) = struct.unpack_from(">I", ipma, at)
    at += 4
    for _ in range(count):
        item_id = struct.unpack_from(">I" if wide_id else ">H", ipma, at)[0]
        at += 4 if wide_id else 2
        n = ipma[at]
        at += 1
        indices = []
        for _ in range(n):
            if wide_index:
                indices.append(struct.unpack_from(">H", ipma, at)[0] & 0x7FFF)
                at += 2
            else:
                indices.append(ipma[at] & 0x7F)
                at += 1
        if item_id == item:
            return indices
    return []
