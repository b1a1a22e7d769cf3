import numpy as np

from nst_engine.color import match_histograms, preserve_color


def test_preserve_color_keeps_the_contents_chroma(content_image, style_image):
    stylized = style_image.resize(content_image.size)
    out = preserve_color(stylized, content_image)
    out_ycc = np.asarray(out.convert("YCbCr")).astype(int)
    content_ycc = np.asarray(content_image.convert("YCbCr")).astype(int)
    stylized_ycc = np.asarray(stylized.convert("YCbCr")).astype(int)
    # Chroma from the content, luminance from the stylized image (up to RGB rounding).
    assert np.abs(out_ycc[..., 1:] - content_ycc[..., 1:]).mean() < 2.0
    assert np.abs(out_ycc[..., 0] - stylized_ycc[..., 0]).mean() < 2.0


def test_histogram_matching_moves_each_channel_toward_the_reference(content_image, style_image):
    stylized = style_image.resize(content_image.size)
    out = match_histograms(stylized, content_image)
    src, ref, got = (np.asarray(i).astype(float) for i in (stylized, content_image, out))
    for c in range(3):
        before = abs(np.sort(src[..., c].ravel()) - np.sort(ref[..., c].ravel())).mean()
        after = abs(np.sort(got[..., c].ravel()) - np.sort(ref[..., c].ravel())).mean()
        assert after < before * 0.2
