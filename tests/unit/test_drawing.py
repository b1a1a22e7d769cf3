"""The pictures drawn about a job: the loss plot shows every term, on a log scale, with the
scales marked; the preview shows the pictures side by side."""

from PIL import Image

from service.pipeline.drawing import PLOT_MARGINS, PLOT_SIZE, TERMS, loss_plot


def _colours(img) -> set:
    return {colour for _, colour in img.getcolors(maxcolors=1 << 20)}


def test_the_loss_plot_draws_each_term_in_its_colour_and_marks_the_scales():
    history = [{"step": s, "total": 1e6 / s, "style": 1e5 / s, "content": 10.0 * s, "tv": 5.0}
               for s in range(1, 201)]
    img = loss_plot(history, title="harbour (job 7)", scales=[(101, "512x384")])
    assert img.size == PLOT_SIZE
    colours = _colours(img)
    assert all(colour in colours for _, colour in TERMS)
    # The total falls from 1e6 to 5e3: its line starts near the top of the plot, ends lower.
    left, top, right, bottom = PLOT_MARGINS
    black = [(x, y) for x in (left + 2, PLOT_SIZE[0] - right - 2) for y in range(top, PLOT_SIZE[1] - bottom)
             if img.getpixel((x, y)) == TERMS[0][1]]
    assert black and black[0][1] < black[-1][1]
    # The dashed scale mark at step 101, halfway along the axis.
    mid = left + round(100 / 199 * (PLOT_SIZE[0] - right - left))
    column = [img.getpixel((x, y)) for x in (mid - 1, mid, mid + 1) for y in range(top + 20, PLOT_SIZE[1] - bottom)]
    assert (150, 150, 150) in column


def test_a_one_iteration_job_still_shows_its_losses_and_a_term_never_positive_is_left_out():
    img = loss_plot([{"step": 1, "total": 3.0, "style": 2.0, "content": 1.0, "tv": 0.0}], title="tiny")
    colours = _colours(img)
    assert all(colour in colours for key, colour in TERMS if key != "tv")
    assert dict(TERMS)["tv"] not in colours  # neither a line nor a legend entry for it


def test_the_preview_shows_every_picture_at_one_height_and_never_blows_a_small_job_up():
    from service.pipeline.drawing import preview

    photo, painting = Image.new("RGB", (1024, 768), "red"), Image.new("RGB", (600, 800), "blue")
    large = preview([("content", photo), ("style", painting), ("result", Image.new("RGB", (512, 384)))])
    small = preview([("content", photo), ("style", painting), ("result", Image.new("RGB", (128, 96)))])
    caption_and_gaps = 22 + 2 * 8
    assert large.height == 256 + caption_and_gaps
    assert small.height == 96 + caption_and_gaps
    assert small.width == 8 + 128 + 8 + 72 + 8 + 128 + 8  # each picture at 96 px high, in order
    assert small.getpixel((8 + 10, 8 + 10)) == (255, 0, 0) and small.getpixel((8 + 128 + 8 + 10, 8 + 10)) == (0, 0, 255)
