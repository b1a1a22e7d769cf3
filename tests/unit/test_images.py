import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from nst_engine.images import ImageError, fit_long_edge, load_image, to_image, to_tensor


def test_corrupt_jpeg(tmp_path, content_image):
    good = tmp_path / "good.jpg"
    content_image.save(good)
    data = bytearray(good.read_bytes())
    data[200:400] = b"\x00" * 200
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ImageError, match="bad.jpg"):
        load_image(bad)


def test_truncated_png(tmp_path, content_image):
    p = tmp_path / "cut.png"
    content_image.save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ImageError, match="cut.png: the image is damaged or truncated"):
        load_image(p)


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(p)


def test_a_picture_in_memory_is_read_like_its_file(tmp_path, content_image):
    """The engine's API takes "a file opened for reading": an in-memory one (io.BytesIO, as a
    library user holds a download) has no descriptor to measure, and was called damaged."""
    path = tmp_path / "photo.png"
    content_image.save(path)
    memory = io.BytesIO(path.read_bytes())
    assert np.array_equal(np.asarray(load_image(memory)), np.asarray(load_image(path)))
    with pytest.raises(ImageError, match="upload: the file is empty"):
        load_image(io.BytesIO(b""), name="upload")


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, not a picture")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        load_image(p)


def bomb_png(path, width, height):
    """A valid small PNG whose header claims width x height (a decompression bomb)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (10_000, 9_000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    p = tmp_path / "bomb.png"
    bomb_png(p, width, height)
    assert p.stat().st_size < 1000
    with pytest.raises(ImageError, match="bomb.png: .*megapixels"):
        load_image(p, max_pixels=50_000_000)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr = np.full((40, 40), 32768, dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    img = load_image(p)
    assert img.mode == "RGB"
    assert abs(int(np.asarray(img)[0, 0, 0]) - 128) <= 1


def test_palette_with_transparency_goes_on_white(tmp_path):
    img = Image.new("P", (40, 40), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    p = tmp_path / "pal.png"
    img.save(p, transparency=0)
    out = load_image(p)
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_and_grayscale(tmp_path):
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    Image.new("L", (40, 40), 90).save(tmp_path / "g.png")
    assert load_image(tmp_path / "c.jpg").mode == "RGB"
    assert load_image(tmp_path / "g.png").getpixel((0, 0)) == (90, 90, 90)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 40), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).size == (40, 60)


def test_animated_gif_takes_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), c) for c in ("blue", "green")]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert load_image(p).getpixel((0, 0)) == (0, 0, 255)


def test_fit_long_edge_keeps_aspect_and_refuses_strips():
    assert fit_long_edge(Image.new("RGB", (400, 300)), 200).size == (200, 150)
    with pytest.raises(ImageError, match="too narrow"):
        fit_long_edge(Image.new("RGB", (60000, 10)), 512, what="strip.png")


def test_tensor_round_trip_is_exact(content_image):
    assert np.array_equal(np.asarray(to_image(to_tensor(content_image))), np.asarray(content_image))


def test_a_preview_is_averaged_down_to_its_long_edge_on_the_device():
    """The live preview of a print shrinks the tensor before converting it: its long edge is
    the one asked for, the aspect kept, and each pixel the average of those it covers (a
    one-pixel checkerboard comes out grey, not black or white as a sampled one would)."""
    import torch

    from nst_engine.images import to_image

    checker = ((torch.arange(1200)[:, None] + torch.arange(1600)[None, :]) % 2).float()
    picture = checker.expand(3, -1, -1)[None]
    small = to_image(picture, 400)
    assert small.size == (400, 300)
    assert np.abs(np.asarray(small).astype(int) - 128).max() <= 1
    assert to_image(picture[:, :, :100, :60], 400).size == (60, 100)  # never enlarged


def test_a_small_file_of_a_huge_picture_is_decoded_only_as_large_as_the_job_needs(tmp_path):
    """Issue 25: an 8900x8900 1-bit PNG of a few KB, used eight times as a style image, took
    the daemon from 1 GB to 4.1 GB. Measured in a fresh process (its peak resident memory)."""
    import subprocess
    import sys

    from PIL import ImageDraw

    big = Image.new("1", (8900, 8900))
    ImageDraw.Draw(big).ellipse((100, 100, 8800, 8800), fill=1)
    big.save(tmp_path / "bitmap.png")
    del big
    assert (tmp_path / "bitmap.png").stat().st_size < 200_000
    code = (
        "import resource, sys\n"
        "from nst_engine.images import load_image\n"
        "from nst_engine.params import Params\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "edge = Params(outputs=2).image_edges()[1]\n"
        "kept = [load_image(sys.argv[1], max_edge=edge) for _ in range(8)]\n"
        "grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
        "print(edge, max(kept[0].size), grew)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bitmap.png")], capture_output=True,
                         text=True, check=True).stdout.split()
    edge, kept_edge, grew_mib = map(int, out)
    assert edge == round(512 * 1.6)  # the second output's larger brushwork sees the painting larger
    assert 2 * edge <= kept_edge < 4 * edge
    assert grew_mib < 300, f"eight decodes took {grew_mib} MiB (whole, as RGB: 8 x 227 MiB)"


# -- embedded colour profiles (images.to_srgb) -------------------------------------------

def _patches() -> np.ndarray:
    """Saturated and muted colours, dark and light: where a wide gamut differs most from sRGB."""
    return np.random.default_rng(7).integers(0, 256, (24, 32, 3)).astype(np.uint8)


def test_a_wide_gamut_photograph_is_converted_to_srgb(tmp_path):
    """An Adobe RGB photograph read as sRGB numbers comes out duller than it looks; converted,
    each colour is the one computed from the two spaces' primaries (numpy, not littleCMS)."""
    from iccprofiles import ADOBE_RGB, expected_srgb, matrix_profile

    from nst_engine.images import CONVERTED, colour_note

    pixels = _patches()
    path = tmp_path / "adobe.png"
    Image.fromarray(pixels).save(path, icc_profile=matrix_profile(ADOBE_RGB, "Adobe RGB (1998) (test)"))
    img = load_image(path)
    got = np.asarray(img).astype(float)
    assert np.abs(got - expected_srgb(pixels.astype(float), ADOBE_RGB)).max() <= 1.0
    assert np.abs(got - pixels).mean() > 5.0  # not the numbers as they were
    assert img.info[CONVERTED] == "Adobe RGB (1998) (test)" and "icc_profile" not in img.info
    assert colour_note(img) == "colours converted to sRGB from its ICC profile 'Adobe RGB (1998) (test)'"


def test_the_profile_builders_primaries_are_adobes_published_matrix():
    """Adobe RGB (1998) Color Image Encoding, 4.3.4.3: linear RGB to XYZ (D65). The profiles the
    engine builds, and the tests' expected colours, start from `rgb_to_xyz`."""
    from nst_engine.profiles import ADOBE_RGB, rgb_to_xyz

    published = [[0.57667, 0.18556, 0.18823], [0.29734, 0.62736, 0.07529], [0.02703, 0.07069, 0.99134]]
    assert np.abs(rgb_to_xyz(ADOBE_RGB) - published).max() < 2e-4


def _camera_jpeg(path, pixels, *, color_space=None, interop=None, icc_profile=None) -> np.ndarray:
    """A JPEG as a camera writes it, with EXIF ColorSpace and interoperability index; returns
    its pixels as decoded, the numbers a reader starts from."""
    img = Image.fromarray(np.kron(pixels, np.ones((2, 2, 1), dtype=np.uint8)))
    exif = Image.Exif()
    exif[0x0110] = "Test camera"
    if color_space is not None:
        exif.get_ifd(0x8769)[0xA001] = color_space
    if interop is not None:
        exif.get_ifd(0x8769)[0xA005] = {1: interop}
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    img.save(path, quality=98, subsampling=0, exif=exif, **extra)
    with Image.open(path) as raw:
        return np.asarray(raw.convert("RGB")).astype(float)


def test_a_cameras_adobe_rgb_jpeg_declared_only_in_its_exif_is_converted(tmp_path):
    """Cameras set to Adobe RGB write no profile: the EXIF says so by the DCF rule (ColorSpace
    uncalibrated, interoperability index "R03"), or ColorSpace 2. Read as sRGB numbers it came
    out duller; sRGB ("R98", ColorSpace 1) and undeclared pictures are read as they are, and an
    embedded profile says more than the EXIF."""
    from iccprofiles import ADOBE_RGB, DISPLAY_P3, expected_srgb, matrix_profile

    from nst_engine.images import CONVERTED, colour_note

    pixels = _patches()
    for name, declared in [("_MG_0001.JPG", {"color_space": 0xFFFF, "interop": "R03"}),
                           ("DSC_0002.JPG", {"color_space": 2})]:
        raw = _camera_jpeg(tmp_path / name, pixels, **declared)
        img = load_image(tmp_path / name)
        assert np.abs(np.asarray(img).astype(float) - expected_srgb(raw, ADOBE_RGB)).max() <= 1.0, name
        assert img.info[CONVERTED] == "Adobe RGB (1998)" and "EXIF" in colour_note(img)
    assert colour_note(img) == "colours converted to sRGB from Adobe RGB (1998), which its EXIF colour space declares"

    for name, declared in [("IMG_0003.JPG", {"color_space": 1, "interop": "R98"}),
                           ("uncalibrated.jpg", {"color_space": 0xFFFF}), ("plain.jpg", {})]:
        raw = _camera_jpeg(tmp_path / name, pixels, **declared)
        img = load_image(tmp_path / name)
        assert np.array_equal(np.asarray(img).astype(float), raw) and colour_note(img) is None, name

    _camera_jpeg(tmp_path / "tagged.jpg", pixels, color_space=0xFFFF, interop="R03",
                 icc_profile=matrix_profile(DISPLAY_P3, "Display P3 (test)"))
    assert load_image(tmp_path / "tagged.jpg").info[CONVERTED] == "Display P3 (test)"


def test_an_iphones_heic_is_read_and_its_display_profile_converted(tmp_path):
    """iPhones save HEIC with a Display P3 profile: read (pillow-heif), and converted."""
    import pillow_heif

    from iccprofiles import DISPLAY_P3, expected_srgb, matrix_profile

    from nst_engine.images import CONVERTED

    pillow_heif.register_heif_opener()  # to write one; load_image registers it itself
    pixels = np.kron(_patches(), np.ones((2, 2, 1), dtype=np.uint8))  # 64x48
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(pixels).save(path, format="HEIF", quality=-1, chroma=444,  # lossless: levels within one
                                 icc_profile=matrix_profile(DISPLAY_P3, "Display P3 (test)"))
    img = load_image(path, max_edge=32)
    assert img.size == (64, 48) and img.info[CONVERTED] == "Display P3 (test)"
    # A fresh interpreter, where nothing but load_image has told Pillow about HEIC.
    read = subprocess.run([sys.executable, "-c", "import sys; from nst_engine.images import load_image; "
                           "print(load_image(sys.argv[1]).size)", str(path)], capture_output=True, text=True)
    assert read.returncode == 0 and read.stdout.strip() == "(64, 48)", read.stderr[-2000:]
    assert np.abs(np.asarray(img).astype(float) - expected_srgb(pixels.astype(float), DISPLAY_P3)).mean() < 1.5
    assert np.abs(np.asarray(img).astype(float) - pixels).mean() > 3.0  # not the numbers as they were


def test_an_avif_is_read(tmp_path):
    path = tmp_path / "photo.avif"
    Image.new("RGB", (64, 48), (200, 80, 30)).save(path, quality=90)
    img = load_image(path)
    assert img.size == (64, 48) and np.abs(np.asarray(img).astype(int) - (200, 80, 30)).max() <= 4


def test_a_large_tagged_jpeg_decoded_smaller_and_turned_upright_is_still_converted(tmp_path):
    from iccprofiles import ADOBE_RGB, matrix_profile

    from nst_engine.images import CONVERTED

    big = Image.fromarray(np.kron(_patches(), np.ones((20, 20, 1), dtype=np.uint8)))  # 640x480
    exif = big.getexif()
    exif[0x0112] = 6
    path = tmp_path / "camera.jpg"
    big.save(path, quality=95, exif=exif, icc_profile=matrix_profile(ADOBE_RGB, "Adobe RGB (1998) (test)"))
    img = load_image(path, max_edge=64)  # a reduced DCT scale, then reduce()
    assert img.size[0] < img.size[1] and img.info[CONVERTED] == "Adobe RGB (1998) (test)"


def test_a_grey_scan_with_a_linear_profile_is_converted(tmp_path):
    from iccprofiles import gray_profile, srgb_encode

    path = tmp_path / "scan.png"
    Image.new("L", (40, 40), 128).save(path, icc_profile=gray_profile(1.0, "linear grey (test)"))
    level = round(float(srgb_encode(np.array(128 / 255))) * 255)  # 188: linear mid-grey is light in sRGB
    assert load_image(path).getpixel((0, 0)) == (level, level, level)


def test_a_print_files_cmyk_is_converted_through_its_printers_profile(tmp_path):
    """A print file's CMYK inks through its profile's table (a test printer whose inks absorb some of
    their neighbours' light), not Pillow's plain formula, which knows no printer."""
    from iccprofiles import cmyk_model, cmyk_profile

    from nst_engine.images import CONVERTED

    inks = np.random.default_rng(3).integers(0, 256, (24, 32, 4)).astype(np.uint8)
    inks[..., 3] //= 3  # some black, not so much that every colour is dark
    path = tmp_path / "print.tif"  # lossless: the inks as they were
    Image.fromarray(inks, "CMYK").save(path, icc_profile=cmyk_profile("test printer (test)"))
    img = load_image(path)
    expected = cmyk_model(inks / 255.0) * 255.0
    error = np.abs(np.asarray(img).astype(float) - expected)
    assert error.mean() < 1.0 and error.max() <= 4.0  # the table's 9 points a side, interpolated
    plain = np.asarray(Image.fromarray(inks, "CMYK").convert("RGB")).astype(float)
    assert np.abs(plain - expected).mean() > 10.0  # what the picture was without its profile
    assert img.info[CONVERTED] == "test printer (test)"


def test_a_linear_profile_named_srgb_is_converted_by_what_it_does(tmp_path):
    from iccprofiles import SRGB, matrix_profile, srgb_encode

    pixels = _patches()
    path = tmp_path / "linear.png"
    Image.fromarray(pixels).save(path, icc_profile=matrix_profile(SRGB | {"gamma": 1.0}, "sRGB linear (test)"))
    expected = np.round(srgb_encode(pixels / 255.0) * 255.0)
    assert np.abs(np.asarray(load_image(path)).astype(float) - expected).max() <= 1.0


def test_srgb_profiles_keep_the_pixels_and_unusable_ones_are_ignored_with_a_reason(tmp_path):
    from PIL import ImageCms

    from iccprofiles import SRGB, gray_profile, matrix_profile

    from nst_engine.images import CONVERTED, IGNORED, colour_note

    pixels = _patches()
    builtin = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cases = {"srgb": (builtin, None), "camera-srgb": (matrix_profile(SRGB, "IEC 61966-2.1 (test)"), None),
             "damaged": (b"not a profile" * 16, "its ICC profile is damaged"),
             "grey-on-colour": (gray_profile(2.2, "grey (test)"), "its GRAY ICC profile does not fit a picture of mode RGB")}
    for name, (profile, why) in cases.items():
        path = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(path, icc_profile=profile)
        img = load_image(path)
        assert np.array_equal(np.asarray(img), pixels), name  # bit for bit the numbers in the file
        assert CONVERTED not in img.info and "icc_profile" not in img.info
        if why is None:
            assert IGNORED not in img.info and colour_note(img) is None
        else:
            assert colour_note(img) == img.info[IGNORED]
            assert img.info[IGNORED].startswith(why) and img.info[IGNORED].endswith("; its colours taken as sRGB")


def _heif(path, pixels, **nclx) -> np.ndarray:
    """A HEIF with no ICC profile, its space declared by its colour description (nclx) only, as
    Android phones write it; lossless (RGB, no YCbCr round-off). Returns its numbers as decoded."""
    import pillow_heif

    pillow_heif.register_heif_opener()  # to write one; load_image registers it itself
    Image.fromarray(pixels).save(path, format="HEIF", quality=-1, chroma=444, matrix_coefficients=0,
                                 full_range_flag=1, **nclx)
    with Image.open(path) as raw:
        assert "icc_profile" not in raw.info and raw.info["nclx_profile"]["color_primaries"] == nclx["color_primaries"]
        return np.asarray(raw.convert("RGB")).astype(float)


def test_a_damaged_nclx_colour_description_declares_nothing():
    """Chromaticities off the diagram, missing, not numbers, or primaries on top of each other
    (no matrix): the numbers are read as sRGB, never an exception out of the decoder."""
    from nst_engine.images import _nclx_space

    p3 = {"color_primaries": 12, "transfer_characteristics": 13, "color_primary_red_x": 0.68, "color_primary_red_y": 0.32,
          "color_primary_green_x": 0.265, "color_primary_green_y": 0.69, "color_primary_blue_x": 0.15,
          "color_primary_blue_y": 0.06, "color_primary_white_x": 0.3127, "color_primary_white_y": 0.329}
    assert _nclx_space(p3)[0] is not None
    for damaged in [p3 | {"color_primary_red_y": 0.0}, p3 | {"color_primary_red_x": float("nan")},
                    p3 | {"color_primary_white_x": "x"}, {k: v for k, v in p3.items() if "blue" not in k},
                    p3 | {"color_primary_green_x": 0.68, "color_primary_green_y": 0.32,
                          "color_primary_blue_x": 0.68, "color_primary_blue_y": 0.32}, "nclx", None]:
        assert _nclx_space(damaged) == (None, None, None), damaged
    hdr = p3 | {"transfer_characteristics": 16}
    profile, _by, unread = _nclx_space(hdr | {"color_primary_red_y": 0.0})
    assert profile is None and unread.startswith("an HDR picture (PQ tone curve, its primaries unreadable): its colours")
    assert _nclx_space(hdr | {"color_primaries": 2})[0] is not None  # unspecified: BT.2100's own, BT.2020


def _avif(path, pixels, *, color_primaries: int, transfer_characteristics: int) -> np.ndarray:
    """An AVIF with no ICC profile whose colour description (nclx) declares these primaries and
    tone curve (Pillow writes BT.709 and sRGB's curve; the box's two numbers are set after, as a
    phone or converter would have written them). Returns its numbers as libavif decodes them."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="AVIF", quality=100, subsampling="4:4:4")
    data = bytearray(buffer.getvalue())
    at = data.index(b"colrnclx") + 8
    assert struct.unpack_from(">HH", data, at) == (1, 13)
    struct.pack_into(">HH", data, at, color_primaries, transfer_characteristics)
    path.write_bytes(bytes(data))
    with Image.open(buffer) as raw:
        assert "icc_profile" not in raw.info
        return np.asarray(raw.convert("RGB")).astype(float)


@pytest.mark.parametrize("container", ["HEIF", "AVIF"])
def test_a_heif_or_avif_declaring_display_p3_in_its_nclx_box_is_converted(tmp_path, container):
    """A HEIF or AVIF that says Display P3 by its colour description, not a profile, read as sRGB
    numbers came out duller than it looks (Pillow's AVIF reader tells only a profile: 13 levels
    off on these patches). Converted as an embedded Display P3 profile would be; BT.709's
    primaries (sRGB's own) are read as they are; an HDR one is tone-mapped (below)."""
    from iccprofiles import DISPLAY_P3, expected_srgb

    from nst_engine.images import CONVERTED, colour_note

    write, suffix = (_heif, "heif") if container == "HEIF" else (_avif, "avif")
    pixels = np.kron(_patches(), np.ones((4, 4, 1), dtype=np.uint8))
    raw = write(tmp_path / f"PXL_0001.{suffix}", pixels, color_primaries=12, transfer_characteristics=13)
    img = load_image(tmp_path / f"PXL_0001.{suffix}")
    assert np.abs(np.asarray(img).astype(float) - expected_srgb(raw, DISPLAY_P3)).max() <= 1.0
    assert np.abs(np.asarray(img).astype(float) - raw).mean() > 3.0  # not the numbers as they were
    assert img.info[CONVERTED] == "Display P3"
    assert colour_note(img) == f"colours converted to sRGB from Display P3, which its {container} colour description (nclx) declares"
    with open(tmp_path / f"PXL_0001.{suffix}", "rb") as f:  # as the web page's upload gives it: an open file
        assert np.array_equal(np.asarray(load_image(f)), np.asarray(img))

    raw = write(tmp_path / f"srgb.{suffix}", pixels, color_primaries=1, transfer_characteristics=13)
    img = load_image(tmp_path / f"srgb.{suffix}")
    assert np.array_equal(np.asarray(img).astype(float), raw) and colour_note(img) is None

    write(tmp_path / f"hdr.{suffix}", pixels, color_primaries=9, transfer_characteristics=18)
    assert colour_note(load_image(tmp_path / f"hdr.{suffix}")) == (
        "colours converted to sRGB from BT.2020 with the HLG tone curve (HDR; highlights rolled off for an SDR "
        f"screen), which its {container} colour description (nclx) declares")


def _box(kind: bytes, body: bytes, version: int | None = None, flags: int = 0) -> bytes:
    if version is not None:  # a full box
        body = bytes([version]) + flags.to_bytes(3, "big") + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _colr(primaries: int) -> bytes:
    return _box(b"colr", b"nclx" + struct.pack(">HHHB", primaries, 13, 6, 0x80))


@pytest.mark.parametrize("ipma_version, wide", [(0, False), (1, False), (0, True), (1, True)])
def test_an_avifs_colour_description_is_its_primary_pictures(ipma_version, wide):
    """A file holds several items (tiles of a grid, an alpha plane, a thumbnail), each with its
    properties; the one that counts is the primary item's (`pitm`), found through `ipma` in each
    of its four layouts (16- or 32-bit item numbers, 7- or 15-bit property indices), past a
    box with a 64-bit size. (Checked by hand on libavif's avifenc output too: one picture, with
    alpha, a 2x2 grid, 10-bit HDR.)"""
    from nst_engine.boxes import avif_nclx

    def associations(item: int, index: int) -> bytes:
        number = struct.pack(">I" if ipma_version else ">H", item)
        return number + b"\x01" + (struct.pack(">H", 0x8000 | index) if wide else bytes([0x80 | index]))

    def avif(primary: int) -> bytes:
        ipma = _box(b"ipma", struct.pack(">I", 2) + associations(1, 1) + associations(2, 2),
                    version=ipma_version, flags=int(wide))
        meta = _box(b"meta", _box(b"pitm", struct.pack(">H", primary), version=0)
                    + _box(b"iprp", _box(b"ipco", _colr(1) + _colr(12)) + ipma), version=0)
        free = struct.pack(">I4sQ", 1, b"free", 16 + 5) + b"\x00" * 5  # a 64-bit size
        return _box(b"ftyp", b"avif\x00\x00\x00\x00mif1avif") + free + meta + _box(b"mdat", b"")

    assert avif_nclx(io.BytesIO(avif(primary=2)))["color_primaries"] == 12
    assert avif_nclx(io.BytesIO(avif(primary=1)))["color_primaries"] == 1
    assert avif_nclx(io.BytesIO(avif(primary=3))) is None  # no properties: declares nothing


def test_a_damaged_avif_box_declares_nothing_and_never_raises(tmp_path):
    """The boxes are a user's bytes: cut short anywhere, or any byte of them changed, the reader
    gives a description or None, and leaves the file where it was."""
    from nst_engine.boxes import avif_nclx

    _avif(tmp_path / "p3.avif", np.kron(_patches(), np.ones((2, 2, 1), dtype=np.uint8)), color_primaries=12,
          transfer_characteristics=13)
    data = (tmp_path / "p3.avif").read_bytes()
    meta_end = data.index(b"mdat") - 4  # the meta box ends where the pictures' data begins
    assert avif_nclx(io.BytesIO(data[:meta_end]))["color_primaries"] == 12
    rng = np.random.default_rng(0)
    for cut in range(meta_end):
        f = io.BytesIO(data[:cut])
        f.seek(cut // 2)
        assert avif_nclx(f) is None and f.tell() == cut // 2
    huge = struct.pack(">I4sQ", 1, b"free", 2**64 - 1)  # a box of a 64-bit size past any seek
    ftyp = struct.unpack(">I", data[:4])[0]
    assert avif_nclx(io.BytesIO(data[:ftyp] + huge + data[ftyp:])) is None
    for _ in range(2000):
        damaged = bytearray(data)
        for at in rng.integers(0, meta_end, 3):
            damaged[at] = int(rng.integers(0, 256))
        found = avif_nclx(io.BytesIO(bytes(damaged)))
        assert found is None or isinstance(found["color_primaries"], int)


# BT.2100's signals from display light, written from the standard (the reader's inverses): PQ
# (SMPTE ST 2084) of cd/m2, HLG's OETF of scene light whose OOTF (gamma 1.2, 1000 cd/m2) gives it.
def _pq_signal(nits: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = (np.asarray(nits, dtype=float) / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def _hlg_signal(nits: np.ndarray) -> np.ndarray:
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    scene = (np.asarray(nits, dtype=float) / 1000) ** (1 / 1.2)
    signal = np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)
    return np.minimum(signal, 1.0)  # its display's peak: brighter is that


BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])  # BT.2087


@pytest.mark.parametrize("curve, signal", [(16, _pq_signal), (18, _hlg_signal)], ids=["PQ", "HLG"])
def test_an_hdr_picture_is_tone_mapped_for_an_sdr_screen(tmp_path, curve, signal):
    """An HDR HEIF or AVIF (BT.2020, PQ or HLG) read as sRGB numbers came out grey and flat (its
    reference white, 203 cd/m2, is PQ level 148). Now the reference white is near SDR's (level
    241, leaving room for the highlights), 18 % grey stays 18 % grey, 1000 cd/m2 is white, the
    levels keep their order, and a picture's colours below the highlights come out as they were
    mastered: an sRGB picture put into BT.2020 PQ or HLG at 203 cd/m2 comes back as its 8-bit
    HDR levels say (within one level; those levels lose up to 13 sRGB levels in dark saturated
    colours, a mean of 0.5-0.9)."""
    from iccprofiles import decode, srgb_encode

    nits = np.array([0.0, 0.18 * 203, 203.0, 1000.0, 4000.0])
    greys = np.repeat(np.round(signal(nits) * 255).astype(np.uint8)[None, :, None], 3, axis=2)
    ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None], 3, axis=2)
    _heif(tmp_path / "greys.heif", np.kron(greys, np.ones((8, 8, 1), dtype=np.uint8)), color_primaries=9,
          transfer_characteristics=curve)
    _heif(tmp_path / "ramp.heif", ramp, color_primaries=9, transfer_characteristics=curve)
    read = np.asarray(load_image(tmp_path / "greys.heif"))[4, 4::8, 0].astype(int)
    assert read[0] == 0 and abs(read[1] - 118) <= 2 and abs(read[2] - 241) <= 2 and read[3] == read[4] == 255, read
    levels = np.asarray(load_image(tmp_path / "ramp.heif"))[..., 1].ravel().astype(int)
    assert np.all(np.diff(levels) >= 0) and levels[-1] == 255

    pixels = np.kron(_patches() // 4 * 3, np.ones((2, 2, 1), dtype=np.uint8))  # below the highlights
    light = decode(pixels.astype(float) / 255, "srgb") @ BT709_TO_BT2020.T * 203
    hdr = np.round(signal(light) * 255).astype(np.uint8)
    _heif(tmp_path / "mastered.heif", hdr, color_primaries=9, transfer_characteristics=curve)
    back = np.asarray(load_image(tmp_path / "mastered.heif")).astype(float)
    table = np.concatenate([[0.0], np.geomspace(1e-5, 10000, 400_000)])  # the signal inverted by table
    said = np.interp(hdr / 255, signal(table), table) / 203 @ np.linalg.inv(BT709_TO_BT2020).T
    assert np.abs(back - np.round(srgb_encode(said) * 255)).max() <= 1
    assert np.abs(back - pixels).mean() < 1.0


def test_a_damaged_avif_is_a_clear_answer_not_a_traceback(tmp_path, monkeypatch):
    """Pillow's AVIF reader says a damaged picture by RuntimeError (libavif's "Decoding of color
    planes failed"), which went past `load_image`: the intake logged it as a bug at every scan and
    the job never had an answer. It is a damaged picture like any other; a RuntimeError of
    our own code is still raised."""
    from nst_engine import images

    buffer = io.BytesIO()
    Image.fromarray(np.kron(_patches(), np.ones((2, 2, 1), dtype=np.uint8))).save(buffer, format="AVIF", quality=90)
    data = bytearray(buffer.getvalue())
    start = data.index(b"mdat") + 4 + 16  # the picture's AV1 data after its first bytes
    data[start:] = b"\xff" * (len(data) - start)
    (tmp_path / "IMG_7.avif").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="Decoding of color planes failed"), Image.open(tmp_path / "IMG_7.avif") as raw:
        raw.load()  # what Pillow says
    with pytest.raises(ImageError, match=r"IMG_7.avif: the image is damaged or truncated \(Failed to decode frame 0"):
        load_image(tmp_path / "IMG_7.avif")

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug of ours")

    Image.new("RGB", (40, 30)).save(tmp_path / "fine.png")
    monkeypatch.setattr(images, "to_srgb", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        load_image(tmp_path / "fine.png")
