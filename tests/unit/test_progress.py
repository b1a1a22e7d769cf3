"""The progress record and the ETA: what the bar and the clock on the page say."""

from service.status import JobProgress


def test_the_eta_uses_the_devices_rate_until_the_job_has_measured_its_own():
    from types import SimpleNamespace

    from service.pipeline.worker import ETA_OWN_RATE_AFTER, _Reporter

    reporter = _Reporter.__new__(_Reporter)
    reporter.rate = 2.0  # seconds per megapixel-iteration, from earlier jobs
    early = SimpleNamespace(work=1.0, work_total=10.0, eta=999.0, fraction=0.1)
    assert reporter._eta(early) == 18.0  # 9 megapixel-iterations left at 2 s each
    late = SimpleNamespace(work=5.0, work_total=10.0, eta=7.5, fraction=0.5)
    assert ETA_OWN_RATE_AFTER < 0.5 and reporter._eta(late) == 7.5  # its own pace now
    reporter.rate = None  # a new device: its own pace from the start
    assert reporter._eta(early) == 999.0


def test_the_fraction_is_the_share_of_the_work_not_of_the_iterations():
    # 100 iterations at 128 px (1 unit each) then 100 at 256 px (4 units each): after the
    # first scale, 100 of 200 iterations are done but a fifth of the work.
    p = JobProgress(step=100, total=200, work=100 * 128 * 96 / 1e6, work_total=500 * 128 * 96 / 1e6)
    assert abs(p.fraction - 0.2) < 1e-9
    assert JobProgress(step=5, total=10).fraction == 0.0  # no work counted: nothing claimed
    assert JobProgress.from_dict({**p.to_dict(), "unknown": 1}) == p


def test_the_terminal_bar_shows_the_works_share_as_the_page_does():
    """A print at 80 % of its iterations (the cheap coarse scales) is 6 % of its work: `nst status`
    and `nst stylize` say 6 %, as the page and the ETA do, not 80 %."""
    from service.display import progress_line

    p = JobProgress(step=80, total=100, scale=3, scales=4, work=6.0, work_total=100.0)
    line = progress_line(fraction=p.fraction, step=p.step, total=p.total, scale=p.scale, scales=p.scales,
                         loss=None, eta=None, width=50)
    assert line.startswith("[" + "#" * 3 + "." * 47 + "]") and "  6%" in line and "step 80/100" in line
