"""The pictures drawn about a job: the loss plot shows every term, on a log scale, with the
scales marked."""

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
