"""Several jobs optimized as one batch (`stylize_many`), with the real weights on tiny images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from nst_engine import ImageError, Params, Request, stylize, stylize_many

TINY = dict(size=96, iterations=8, scales=(1.0,))
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def requests(content_image, style_image):
    """Three jobs that can share a batch: two photographs, two paintings, their own weights and
    seeds, one with two outputs: four pictures."""
    other_photo = ImageOps.mirror(content_image)
    other_painting = Image.open(SAMPLES / "the_scream.jpg").convert("RGB")
    other_painting.thumbnail((128, 128), Image.Resampling.LANCZOS)
    return [
        Request(content_image, [style_image], Params(**TINY, seed=1)),
        Request(other_photo, [other_painting], Params(**TINY, seed=2, style_weight=3e4)),
        Request(content_image, [other_painting], Params(**TINY, outputs=2)),
    ]


def test_jobs_of_one_shape_are_one_batch_and_each_makes_the_picture_made_alone(requests):
    alone = [stylize(r.content, r.styles, params=r.params) for r in requests]
    together = stylize_many(requests)
    for a, t in zip(alone, together):
        assert (t.record["memory"]["batch"], t.record["memory"]["jobs"]) == (4, 3)
        assert a.record["memory"]["jobs"] == 1
        # Each job's own history, numbered as alone; its first evaluations from its own targets
        # and its own L-BFGS state (a shared state or mixed gradients move them apart at once).
        assert [h["step"] for h in t.history] == [h["step"] for h in a.history]
        first = [[h["total"] for h in run.history if h["step"] % 8 in (1, 2, 3)] for run in (a, t)]
        assert first[1] == pytest.approx(first[0], rel=2e-3)
        assert len(t.outputs) == len(a.outputs) and not t.stopped
        for x, y in zip(a.outputs, t.outputs):  # round-off grown by L-BFGS: close, not equal
            diff = np.abs(pixels(x.stylized) - pixels(y.stylized))
            assert diff.mean() < 2.5 and diff.max() <= 40
    assert len({round(t.history[0]["total"], 2) for t in together}) == 3  # three different jobs


def test_a_job_that_stops_leaves_the_batch_and_the_others_finish(requests):
    stops, reports = {"n": 0}, []

    def second_stops():
        stops["n"] += 1
        return stops["n"] == 3

    runs = [r if k != 1 else Request(r.content, r.styles, r.params, should_stop=second_stops,
                                     progress=lambda p: reports.append(p.iteration))
            for k, r in enumerate(requests)]
    together = stylize_many(runs)
    assert [t.stopped for t in together] == [False, True, False]
    state = together[1].state
    assert (state.output, state.iteration, state.pictures) == (0, 3, 1)
    assert reports == [1, 2, 3]  # no report after it left
    assert [len(t.history) for t in together] == [8, 3, 16]
    # It resumes alone from where it stopped; the others finished as they would have in the batch.
    resumed = stylize(runs[1].content, runs[1].styles, params=runs[1].params, resume=state)
    assert not resumed.stopped and [h["step"] for h in resumed.history] == list(range(1, 9))
    whole = stylize_many(requests)
    for k in (0, 2):
        for x, y in zip(whole[k].outputs, together[k].outputs):
            assert np.abs(pixels(x.stylized) - pixels(y.stylized)).mean() < 2.5


def test_a_failing_job_costs_no_other_its_result(requests, content_image):
    narrow = content_image.resize((400, 20))  # too narrow for the network at this size
    runs = [requests[0], Request(narrow, requests[0].styles, Params(**TINY)),
            Request(content_image, requests[0].styles, Params(**TINY, init="image"))]
    results = stylize_many(runs)
    assert not results[0].stopped and len(results[0].outputs) == 1
    assert isinstance(results[1], ImageError) and "too narrow" in str(results[1])
    assert isinstance(results[2], ValueError) and "init_image" in str(results[2])


def test_jobs_that_cannot_share_a_batch_run_one_after_another(requests):
    different = [
        requests[0],
        Request(requests[0].content, requests[0].styles, Params(**{**TINY, "iterations": 6})),  # other iterations
        Request(requests[0].content, requests[0].styles, Params(**TINY, optimizer="adam")),  # Adam
    ]
    results = stylize_many(different)
    assert [r.record["memory"]["jobs"] for r in results] == [1, 1, 1]
    assert [len(r.history) for r in results] == [8, 6, 8]
    capped = stylize_many(requests[:2], batch=1)  # the worker's `batch = 1`: nothing shared
    assert [r.record["memory"]["jobs"] for r in capped] == [1, 1]
    two = stylize_many(requests, batch=2)  # room for two pictures: the first two jobs, then the third
    assert [r.record["memory"]["jobs"] for r in two] == [2, 2, 1]
