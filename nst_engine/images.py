"""Decoding user images safely and moving them between PIL and tensors (torch imported lazily)."""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from pathlib import Path

from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .boxes import avif_nclx, chromaticities, primaries_name
from .errors import UserError
from .profiles import adobe_rgb, primaries_profile

if TYPE_CHECKING:
    import torch
    from PIL import ImageCms

# The shortest edge VGG-19 can see through its four poolings up to relu5_1.
MIN_EDGE = 32


class ImageError(UserError):
    """An image a user gave cannot be used; the message names the file. `incomplete` says the
    file may still be arriving (empty, cut short), as opposed to a definite refusal."""

    def __init__(self, message: str, *, incomplete: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or (REPLACE_INCOMPLETE if incomplete else REPLACE))
        self.incomplete = incomplete


REPLACE = "replace the file with a JPEG, PNG, WebP, HEIC, AVIF, TIFF, BMP or GIF picture"
REPLACE_INCOMPLETE = "replace the file with a complete picture (it was empty or cut short)"
SCALE_DOWN = "scale the picture down (or, in the service, raise [limits] max_image_pixels in config.toml)"


def load_image(source: str | os.PathLike | BinaryIO, *, max_pixels: int = 80_000_000,
               name: str | None = None, max_edge: int | None = None) -> Image.Image:
    """Decode any Pillow-readable image to 8-bit sRGB, upright, alpha on white (`to_srgb`).

    `source` is a path or a file opened for reading (`name` then names it in messages).
    Dimensions are checked before any pixel is decoded, so a tiny file that
    declares a gigapixel image costs nothing. With `max_edge` (the longest edge a run will
    resize it to) a large picture is decoded smaller, never below twice that edge, so the
    final resize loses nothing: a JPEG at a reduced DCT scale, any other kind reduced in its
    own mode before it becomes RGB (a 9.7 KB 1-bit PNG of 8900x8900 px was 240 MB as RGB and
    950 MB as a float tensor; now it is about 3 MB at a 512 px job's needs).
    """
    _register_heif()
    opened = hasattr(source, "read")
    name = name or (getattr(source, "name", "image") if opened else Path(source).name)
    try:
        size = _bytes_left(source) if opened else Path(source).stat().st_size
        if size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes)", incomplete=True)
        with warnings.catch_warnings():
            # Pillow's own bomb guard stays on; its warning becomes a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                        f"more than the limit of {max_pixels / 1e6:.0f}; scale it down first", hint=SCALE_DOWN
                    )
                img.seek(0)  # the first frame of an animation
                profile, declared_by, unread = _colour_space(img)
                rgb = to_srgb(ImageOps.exif_transpose(_decode(img, max_edge)), profile, declared_by=declared_by)
                if unread:
                    rgb.info[IGNORED] = unread
                return rgb
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read (is it really a picture?)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: declares more than {max_pixels / 1e6:.0f} megapixels; refused as a possible "
            "decompression bomb (scale it down first)", hint=SCALE_DOWN
        ) from None
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found", incomplete=True) from None
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not _raised_by_a_decoder(e):
            raise  # ours: a bug, loudly
        raise ImageError(f"{name}: the image is damaged or truncated ({e})", incomplete=True) from None


def _raised_by_a_decoder(error: BaseException) -> bool:
    """Was `error` raised inside Pillow or pillow-heif? Pillow's AVIF reader says a damaged
    picture by RuntimeError ("Failed to decode frame 0: Decoding of color planes failed",
    "Invalid image grid"), which had reached the intake as a bug: a traceback at every scan
    and no answer."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith(("PIL.", "pillow_heif."))


def _bytes_left(f: BinaryIO) -> int:
    """How many bytes an opened file has from where it stands: a real file by its size, an
    in-memory one (`io.BytesIO`, a web upload's stream) by seeking, as it has no descriptor."""
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (AttributeError, io.UnsupportedOperation):
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end - here


@functools.cache
def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF, the format iPhones save photographs in (pillow-heif, libheif;
    Pillow reads AVIF itself). Once a process, on its first picture: the import is 40 ms that
    the CLI's other commands need not pay. libheif turns the picture upright (its rotation
    boxes) and sets the EXIF orientation to 1, so `exif_transpose` does not turn it again."""
    try:
        import pillow_heif
    except ImportError:  # the engine used without it: HEIC is "not an image Pillow can read"
        return
    pillow_heif.register_heif_opener()


def readers() -> dict[str, str | None]:
    """What this installation reads beyond Pillow's own JPEG, PNG, WebP, TIFF, BMP and GIF: each
    with its library's version, or None where it is missing (for `nst doctor`)."""
    from PIL import features

    try:
        import pillow_heif

        heic = f"pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_version()}"
    except ImportError:
        heic = None
    avif = features.version("avif") if features.check("avif") else None
    cms = features.version("littlecms2") if features.check("littlecms2") else None
    return {"HEIC": heic, "AVIF": f"libavif {avif}" if avif else None,
            "colour profiles": f"littleCMS {cms}" if cms else None}


# The modes Pillow's reduce() takes as they are.
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F")


def _decode(img: Image.Image, max_edge: int | None) -> Image.Image:
    """The pixels, at no less than twice `max_edge` on the long side where that is smaller."""
    keep = 2 * max_edge if max_edge else None
    if keep and max(img.size) > keep and img.format == "JPEG":
        factor = keep / max(img.size)
        img.draft(img.mode, (math.ceil(img.width * factor), math.ceil(img.height * factor)))
    img.load()
    factor = max(img.size) // keep if keep else 1
    if factor < 2:
        return img
    if img.mode == "1":
        img = img.convert("L")  # reduce() takes no 1-bit pictures; one byte a pixel, not three
    elif img.mode not in _REDUCIBLE:
        img = to_rgb(img)
    reduced = img.reduce(factor)
    reduced.info = img.info  # the EXIF orientation, read after the reduction
    return reduced


# What `to_srgb` did with a picture's embedded profile, in the returned image's `info`: the
# profile's name under CONVERTED, or why it was not used under IGNORED.
CONVERTED, IGNORED = "nst_converted_from", "nst_profile_ignored"
DECLARED = "nst_space_declared_by"  # where a converted picture's space was said, when not by its profile
# EXIF's ColorSpace (in its Exif IFD) and the interoperability index (in its Interop IFD).
_COLOR_SPACE, _INTEROP_INDEX = 0xA001, 0x0001
_UNCALIBRATED, _ADOBE_RGB_SPACE = 0xFFFF, 2
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_srgb(img: Image.Image, icc_profile: bytes | None, *, declared_by: str | None = None) -> Image.Image:
    """`img` as 8-bit sRGB (`to_rgb`), its colours converted from the space its embedded ICC
    profile describes. The network and the outputs (written untagged, which every viewer reads
    as sRGB) are sRGB; a phone's Display P3 or a camera's Adobe RGB photograph taken as sRGB
    numbers came out duller than the photograph looks, its colour-corrected copy too.

    RGB profiles, CMYK ones on CMYK pictures (a print file's) and grey ones on grey pictures are
    converted (littleCMS, perceptual: for the matrix profiles phones and cameras embed, the same
    as relative colorimetric); a profile that maps colours to themselves (an sRGB profile, by
    whatever name: a name is no proof, linear "sRGB" profiles exist) leaves the pixels bit for bit.
    A damaged profile, or one that does not fit the pixels, is ignored as browsers ignore it:
    the numbers are read as sRGB (CMYK by Pillow's formula), and `info[IGNORED]` says so. The
    result carries no profile (saved, it would label sRGB pixels with the source's space).
    `declared_by` says where the profile came from when the picture did not carry it."""
    source, name = _profile(icc_profile)
    if source is None:
        return _untagged(to_rgb(img), f"{name}; {_as_read(img)}" if name else None)
    space = source.profile.xcolor_space.strip()
    if space == "RGB":
        pixels = to_rgb(img)
    elif space == "GRAY" and img.mode in _GRAY_MODES:
        pixels = to_rgb(img).convert("L")  # a grey picture: R = G = B, so exactly its levels
    elif space == "CMYK" and img.mode == "CMYK":
        pixels = img  # its inks through the printer's profile, not Pillow's formula that knows no printer
    else:
        return _untagged(to_rgb(img), f"its {space} ICC profile does not fit a picture of mode {img.mode}; "
                                      f"{_as_read(img)}")
    from PIL import ImageCms

    try:
        transform = ImageCms.buildTransform(source, _srgb(), pixels.mode, "RGB")
        if space == "RGB" and _maps_to_itself(transform):
            return _untagged(pixels)
        converted = transform.apply(pixels)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        return _untagged(to_rgb(img), f"its ICC profile {name!r} could not be applied ({e}); {_as_read(img)}")
    converted.info = {k: v for k, v in img.info.items() if k != "icc_profile"} | {CONVERTED: name}
    if declared_by:
        converted.info[DECLARED] = declared_by
    return converted


def _colour_space(img: Image.Image) -> tuple[bytes | None, str | None, str | None]:
    """The ICC profile of the space the picture's numbers are in, where it was declared when
    the picture does not carry it, and why a declared space is not used: its embedded profile,
    else Adobe RGB's where its EXIF says so, else what a HEIF's or an AVIF's colour description
    (nclx) says."""
    embedded = img.info.get("icc_profile")
    if embedded:
        return embedded, None, None
    declared_by = _declared_space(img)
    if declared_by:
        return adobe_rgb(), declared_by, None
    if img.format == "AVIF" and img.fp is not None:  # Pillow's reader tells only a profile
        return _nclx_space(avif_nclx(img.fp), "AVIF")
    return _nclx_space(img.info.get("nclx_profile"))


# H.273 (ISO/IEC 23091-2) tone curves a HEIF's or an AVIF's nclx box names (its primaries:
# `boxes.PRIMARIES`): those read as sRGB's, as browsers read them (BT.709, BT.601, sRGB, BT.2020's
# 10 and 12 bit); the HDR ones (BT.2100), tone-mapped for an SDR screen (`profiles.roll_off`).
_NCLX_SDR_CURVES = {1, 6, 13, 14, 15}
_NCLX_HDR_CURVES = {16: "PQ", 18: "HLG"}


def _nclx_space(nclx: dict | None, container: str = "HEIF") -> tuple[bytes | None, str | None, str | None]:
    """A profile of the primaries and tone curve a HEIF or AVIF declares in its colour
    description where it carries no ICC profile (pillow-heif gives the primaries as xy,
    `boxes.avif_nclx` as pillow-heif does), as cameras and converters write them. BT.709's
    primaries (sRGB's own) with an SDR curve, and unspecified ones, give none. An HDR curve
    (PQ, HLG) gives a profile whose curve maps its light onto SDR's (`profiles.roll_off`); where
    its primaries cannot be read, the words for its numbers read as sRGB."""
    if not isinstance(nclx, dict):
        return None, None, None
    code, curve = nclx.get("color_primaries"), nclx.get("transfer_characteristics")
    hdr = _NCLX_HDR_CURVES.get(curve)
    if hdr is None and (code in (1, 2) or curve not in _NCLX_SDR_CURVES):
        return None, None, None
    if hdr is not None and code == 2:  # unspecified: BT.2100's own
        code, nclx = 9, nclx | chromaticities(9)
    name = primaries_name(code)
    if hdr is not None:
        name += f" with the {hdr} tone curve (HDR; highlights rolled off for an SDR screen)"
    try:
        xy = {c: (float(nclx[f"color_primary_{c}_x"]), float(nclx[f"color_primary_{c}_y"]))
              for c in ("red", "green", "blue", "white")}
        if not all(0.0 < v < 1.0 for pair in xy.values() for v in pair):
            raise ValueError("not chromaticities")
        with np.errstate(all="raise"):
            profile = primaries_profile(xy["red"], xy["green"], xy["blue"], xy["white"], name, hdr or "sRGB")
    except (KeyError, TypeError, ValueError, ArithmeticError, np.linalg.LinAlgError):
        # A damaged box declares nothing (ArithmeticError: numpy's FloatingPointError, primaries
        # on one line); an HDR picture's numbers read as they are look flat: the log says so.
        return None, None, (f"an HDR picture ({hdr} tone curve, its primaries unreadable): its colours taken as "
                            "sRGB, so it looks flat; export it as SDR for true colours") if hdr else None
    return profile, f"its {container} colour description (nclx)", None


def _declared_space(img: Image.Image) -> str | None:
    """Where an RGB picture without an ICC profile declares Adobe RGB in its EXIF, the words for
    it; else None. A camera set to Adobe RGB writes JPEGs without a profile that say so by the
    DCF rule: ColorSpace "uncalibrated" and the interoperability index "R03" (the DCF option
    file; "R98" is sRGB); some write ColorSpace 2. Browsers read them as sRGB numbers, duller than
    the photograph; photo editors (and now we) read them as Adobe RGB."""
    if img.mode not in ("RGB", "RGBA", "YCbCr"):
        return None
    try:
        exif = img.getexif()
        space = exif.get_ifd(ExifTags.IFD.Exif).get(_COLOR_SPACE)
        index = exif.get_ifd(ExifTags.IFD.Interop).get(_INTEROP_INDEX)
    except Exception:  # noqa: BLE001 - a damaged EXIF block declares nothing (Pillow raises many kinds)
        return None
    if space == _ADOBE_RGB_SPACE:
        return "its EXIF colour space"
    if space == _UNCALIBRATED and isinstance(index, str) and index.strip("\0 ") == "R03":
        return "its EXIF (the DCF option file, as cameras set to Adobe RGB write)"
    return None


def _untagged(rgb: Image.Image, ignored: str | None = None) -> Image.Image:
    """`rgb` (`to_rgb`'s, whose `info` is its source's) without the profile its numbers are not
    in, and why that profile was not used."""
    rgb.info.pop("icc_profile", None)
    if ignored:
        rgb.info[IGNORED] = ignored
    return rgb


def colour_note(img: Image.Image) -> str | None:
    """What decoding did with the picture's embedded colour profile, in words (for a job's log);
    None where there was nothing to do."""
    if DECLARED in img.info:
        return f"colours converted to sRGB from {img.info[CONVERTED]}, which {img.info[DECLARED]} declares"
    if CONVERTED in img.info:
        return f"colours converted to sRGB from its ICC profile {img.info[CONVERTED]!r}"
    return img.info.get(IGNORED)


def _as_read(img: Image.Image) -> str:
    """How a picture's numbers are read where its profile is not used."""
    return "its inks converted by Pillow's plain formula" if img.mode == "CMYK" else "its colours taken as sRGB"


def _profile(icc_profile: bytes | None) -> "tuple[ImageCms.ImageCmsProfile | None, str]":
    """The embedded profile and its name; (None, "") where there is none, (None, why) where it
    cannot be read."""
    if not icc_profile:
        return None, ""
    try:
        from PIL import ImageCms  # littleCMS: in every Pillow wheel, not in every Pillow
    except ImportError:
        return None, "its ICC profile is not read (this Pillow was built without littleCMS)"
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        name = ImageCms.getProfileDescription(profile).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        return None, f"its ICC profile is damaged ({e})"
    return profile, name


# Every level of grey and a cube of colours (6 levels a channel): what an RGB profile must map to
# themselves, within a level of round-off, to be sRGB.
_PROBE = np.concatenate([np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
                         np.stack(np.meshgrid(*[np.arange(0, 256, 51, dtype=np.uint8)] * 3), -1).reshape(-1, 3)])


def _maps_to_itself(transform: "ImageCms.ImageCmsTransform") -> bool:
    probe = Image.fromarray(_PROBE[None])
    mapped = np.asarray(transform.apply(probe), dtype=np.int16)[0]
    return int(np.abs(mapped - _PROBE).max()) <= 1


def _srgb() -> "ImageCms.ImageCmsProfile":
    # Made for each picture (microseconds): littleCMS's profiles are not for sharing between the
    # threads that decode a batch's pictures side by side.
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to RGB: 16-bit scaled (not clipped), transparency composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" else max(float(arr.max()), 1.0)
        if img.mode == "I" and arr.max() <= 255:
            top = 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def fitted_size(size: tuple[int, int], long_edge: int, *, what: str = "image") -> tuple[int, int]:
    """`size` scaled so its longer side is `long_edge`, keeping the aspect ratio; refused
    where the short side would be too small for the network."""
    width, height = size
    scale = long_edge / max(width, height)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(fitted) < MIN_EDGE:
        raise ImageError(
            f"{what}: {width}x{height} is too narrow; at {long_edge} px its short side would be "
            f"{min(fitted)} px, below the {MIN_EDGE} px the network needs",
            hint="crop the picture to a less extreme aspect ratio, or ask for a larger size"
        )
    return fitted


def fit_long_edge(img: Image.Image, long_edge: int, *, what: str = "image") -> Image.Image:
    """Resize so the longer side is `long_edge`, keeping the aspect ratio."""
    size = fitted_size(img.size, long_edge, what=what)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image) -> "torch.Tensor":
    """RGB PIL image to a (1, 3, H, W) float32 tensor in 0..1."""
    import torch  # decoding and checking images does not need torch; the CLI uses them

    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(tensor: "torch.Tensor") -> "torch.Tensor":
    """(1, 3, H, W) or (3, H, W) tensor in 0..1 to (3, H, W) uint8 pixels (clamped, rounded) on
    its device; uint8 pixels as they are."""
    import torch
    t = tensor.detach()
    if t.dim() == 4:
        t = t[0]
    if t.dtype == torch.uint8:
        return t
    # One float temporary, scaled in place: at print sizes each is 12 bytes a pixel.
    return t.float().clamp(0, 1).mul_(255).round_().to(torch.uint8)


def to_image(tensor: "torch.Tensor", max_edge: int | None = None) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor in 0..1 (clamped, rounded), or of uint8 pixels, to an RGB
    PIL image; with `max_edge`, averaged down on its device to at most that long edge first (a
    live preview of a print: converting all 50 megapixels to shrink them took 1.1 s, the
    average 0.1 s)."""
    import torch
    from torch.nn import functional as F

    if max_edge is not None and max(tensor.shape[-2:]) > max_edge:
        height, width = tensor.shape[-2:]
        factor = max_edge / max(height, width)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        t = tensor.detach().reshape(1, 3, height, width)
        if t.dtype == torch.uint8:
            t = t.float().div_(255.0)
        tensor = F.interpolate(t, size=size, mode="area")
    arr = to_uint8(tensor).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")
