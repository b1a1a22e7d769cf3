import numpy as np

from nst_engine.color import match_colors, preserve_color


def test_preserve_color_keeps_the_contents_chroma(content_image, style_image):
    stylized = style_image.resize(content_image.size)
    out = preserve_color(stylized, content_image)
    out_ycc = np.asarray(out.convert("YCbCr")).astype(int)
    content_ycc = np.asarray(content_image.convert("YCbCr")).astype(int)
    stylized_ycc = np.asarray(stylized.convert("YCbCr")).astype(int)
    # Chroma from the content, luminance from the stylized image (up to RGB rounding).
    assert np.abs(out_ycc[..., 1:] - content_ycc[..., 1:]).mean() < 2.0
    assert np.abs(out_ycc[..., 0] - stylized_ycc[..., 0]).mean() < 2.0


def test_colour_correction_gives_the_photographs_lightness_and_colours(content_image, style_image):
    from skimage import color

    stylized = style_image.resize(content_image.size)
    out = match_colors(stylized, content_image)
    src, ref, got = (color.rgb2lab(np.asarray(i)) for i in (stylized, content_image, out))
    # Lightness: the photograph's histogram.
    before = abs(np.sort(src[..., 0].ravel()) - np.sort(ref[..., 0].ravel())).mean()
    after = abs(np.sort(got[..., 0].ravel()) - np.sort(ref[..., 0].ravel())).mean()
    assert after < before * 0.2
    # Chroma: the photograph's mean and spread, up to the clipping back into RGB.
    for c in (1, 2):
        assert abs(got[..., c].mean() - ref[..., c].mean()) < 0.25 * abs(src[..., c].mean() - ref[..., c].mean()) + 1
        assert abs(got[..., c].std() - ref[..., c].std()) < 0.15 * ref[..., c].std() + 1


def test_colour_correction_keeps_the_painted_hues_apart(content_image):
    """Two regions of different painted hue stay different hues: no channel is remapped alone."""
    from PIL import Image

    from nst_engine.color import match_colors

    left = np.zeros((64, 128, 3), np.uint8)
    left[:, :64] = (200, 40, 40)   # red
    left[:, 64:] = (40, 40, 200)   # blue
    out = np.asarray(match_colors(Image.fromarray(left), content_image)).astype(int)
    red_side, blue_side = out[:, :64].mean(axis=(0, 1)), out[:, 64:].mean(axis=(0, 1))
    assert red_side[0] - red_side[2] > 0 and blue_side[2] - blue_side[0] > 0


def test_a_grey_picture_is_not_coloured_by_its_noise(content_image):
    from PIL import Image

    from nst_engine.color import match_colors

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(100, 156, (64, 64, 1)), 3, axis=2) + rng.integers(-1, 2, (64, 64, 3))
    grey = grey.astype(np.uint8)  # nearly grey: a little chroma noise
    out = np.asarray(match_colors(Image.fromarray(grey), content_image).convert("HSV"))
    assert out[..., 1].mean() < 40  # saturation stays low: the gain is capped


def test_colour_correction_clips_out_of_gamut_colours_without_a_warning():
    """Chroma moved past sRGB's gamut is clipped to the nearest displayable colour, quietly:
    skimage's "negative Z values" warning would otherwise land in every job's log."""
    import warnings

    from PIL import Image

    rng = np.random.default_rng(0)
    # Yellowish pixels of every lightness, matched to a dark olive and a bright yellow: the
    # dark ones get more yellow (b*) than any displayable colour of their lightness has.
    yellowish = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    yellowish[..., 2] //= 4
    vivid = np.zeros((48, 64, 3), np.uint8)
    vivid[:, :32] = (60, 40, 0)
    vivid[:, 32:] = (255, 255, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = match_colors(Image.fromarray(yellowish, "RGB"), Image.fromarray(vivid, "RGB"))
    assert not [w for w in caught if "negative Z" in str(w.message)], [str(w.message) for w in caught]
    assert out.size == (64, 48)


def test_colour_correction_moves_chroma_as_a_pair_so_a_painted_blue_does_not_turn_violet():
    """A stylized picture's chroma runs along the painting's axis (blue to yellow: a* and b*
    of opposite signs), the photograph's along another (teal to orange: the same signs).
    Matching a* and b* one at a time keeps the painting's axis and turns its blues violet; the
    correction moves them as a pair, so the copy's chroma runs along the photograph's axis."""
    from PIL import Image
    from skimage import color

    t = np.linspace(0.0, 1.0, 64)[None, :, None]
    painted = (1 - t) * np.array([40, 70, 200]) + t * np.array([230, 210, 60])  # blue .. yellow
    photo = (1 - t) * np.array([40, 150, 150]) + t * np.array([230, 120, 40])  # teal .. orange
    as_image = lambda a: Image.fromarray(np.repeat(a, 32, axis=0).astype(np.uint8), "RGB")  # noqa: E731
    out = match_colors(as_image(painted), as_image(photo))

    def chroma_correlation(img):
        lab = color.rgb2lab(np.asarray(img)).reshape(-1, 3)
        return np.corrcoef(lab[:, 1], lab[:, 2])[0, 1]

    assert chroma_correlation(as_image(painted)) < -0.5 and chroma_correlation(as_image(photo)) > 0.5
    assert chroma_correlation(out) > 0.5, chroma_correlation(out)


def test_colour_correction_looked_up_by_colour_equals_converting_every_pixel(content_image):
    """The correction is computed once per distinct 8-bit colour and looked up for each pixel
    (a print has 50 million pixels but a few million colours): every pixel must get what
    converting it on its own to CIELAB and back gives, whatever its channels' order."""
    import warnings

    from PIL import Image
    from skimage import color

    from nst_engine import color as nst_color

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (96, 128, 3)).astype(np.uint8)
    rgb[:48, :64] = rgb[:48, :64][:, :, ::-1]  # the same colours with R and B swapped
    rgb[48:, 64:] = rgb[0, 0]  # and one colour many times
    image = Image.fromarray(rgb, "RGB")
    got = np.asarray(match_colors(image, content_image))

    # Every pixel on its own, with the same statistics.
    src_l, src_ab = nst_color._lab_sample(image)
    ref_l, ref_ab = nst_color._lab_sample(content_image)
    levels = np.linspace(0.0, 1.0, 1025)
    lab = color.rgb2lab(rgb)
    lab[..., 0] = np.interp(lab[..., 0], np.quantile(src_l, levels), np.quantile(ref_l, levels))
    lab[..., 1:] = ((lab[..., 1:] - src_ab.mean(axis=0)) @ nst_color._chroma_transform(src_ab, ref_ab).T
                    + ref_ab.mean(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = (np.clip(color.lab2rgb(lab), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    assert np.abs(got.astype(int) - want).max() <= 1  # float rounding at a half-level at most
    assert (got == want).mean() > 0.999


def test_cielab_conversions_are_skimages():
    """The correction's own conversions of 8-bit colours (a table, and levels looked up in
    linear light) give what skimage's rgb2lab and lab2rgb give: the colours of every channel's
    every level, random colours, and CIELAB colours past sRGB's gamut (clipped, as skimage's)."""
    import warnings

    from skimage import color

    from nst_engine import color as nst_color

    rng = np.random.default_rng(7)
    ramps = np.stack([np.eye(3, dtype=int)[c] * level for c in range(3) for level in range(256)])
    rgb = np.concatenate([ramps, np.repeat(np.arange(256)[:, None], 3, axis=1),
                          rng.integers(0, 256, (100_000, 3))]).astype(np.uint8)
    assert np.abs(nst_color._lab(rgb) - color.rgb2lab(rgb[None])[0]).max() < 1e-9

    lab = np.stack([rng.uniform(0, 100, 200_000), rng.uniform(-128, 128, 200_000), rng.uniform(-128, 128, 200_000)], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage's "negative Z values" for colours past the gamut
        want = (np.clip(color.lab2rgb(lab[None])[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    got = nst_color._rgb8(lab)
    assert np.abs(got.astype(int) - want).max() <= 1  # a half-level tie at most
    assert (got == want).mean() > 0.9999
