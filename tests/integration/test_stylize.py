"""End-to-end stylizations with the real weights on tiny images."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from nst_engine import Params, RunState, estimate, stylize

TINY = dict(size=96, iterations=30, scales=(1.0,))


def luminance(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def default_run(content_image, style_image):
    return stylize(content_image, [style_image], params=Params(**TINY))


def test_style_loss_falls_tenfold_and_output_differs(default_run, content_image):
    history = default_run.history
    assert len(history) == 30
    assert history[-1]["style"] < history[0]["style"] / 10
    out = default_run.outputs[0].stylized
    assert out.size == (96, 72)
    reference = content_image.resize(out.size, Image.Resampling.LANCZOS)
    assert np.abs(pixels(out) - pixels(reference)).mean() > 10


def test_low_style_weight_keeps_the_contents_structure(content_image, style_image):
    # With style 50x weaker than the default the picture keeps the photograph's edges and
    # shapes. Measured here: SSIM of luminance 0.86 for this run, 0.52 for the default
    # style weight, 0.05 for an unrelated picture; 0.7 separates "kept" from "repainted".
    weak = stylize(content_image, [style_image], params=Params(**TINY, style_weight=1.0)).outputs[0].stylized
    reference = content_image.resize(weak.size, Image.Resampling.LANCZOS)
    ssim = structural_similarity(luminance(weak), luminance(reference), data_range=255)
    assert ssim > 0.7


def test_same_seed_is_identical_and_another_seed_differs(default_run, content_image, style_image):
    again = stylize(content_image, [style_image], params=Params(**TINY))
    other = stylize(content_image, [style_image], params=Params(**TINY, seed=1))
    assert np.array_equal(pixels(again.outputs[0].stylized), pixels(default_run.outputs[0].stylized))
    assert not np.array_equal(pixels(other.outputs[0].stylized), pixels(default_run.outputs[0].stylized))


def test_record_says_what_ran(default_run):
    r = default_run.record
    assert r["weights"]["sha256"] == "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
    assert r["params"]["size"] == 96 and r["iterations_run"] == 30
    assert set(r["final_losses"]) == {"total", "content", "style", "tv"}
    assert r["device"] == "cpu" and r["precision"] in ("fp32", "bf16")


def test_record_timings_account_for_the_run(default_run):
    """Where a job's time went (a print's outputs and targets took seconds beside its
    iterations): set-up, targets, optimizing and outputs are parts of the total, and together
    nearly all of it."""
    t = default_run.record["timings"]
    parts = [t["setup_s"], t["targets_s"], t["optimize_s"], t["outputs_s"]]
    # The set-up with the network cached can round to 0.000 s on a fast idle CPU (AMX: it did),
    # and so can the outputs of a small picture (its colour correction is made when asked for).
    assert t["setup_s"] >= 0 and t["outputs_s"] >= 0 and t["targets_s"] > 0 and t["optimize_s"] > 0, t
    assert 0.8 * t["total_s"] <= sum(parts) <= t["total_s"] + 0.01, t


def test_corrected_output_takes_the_photographs_lightness_and_colours(default_run, content_image):
    from skimage import color

    out = default_run.outputs[0]
    reference = color.rgb2lab(np.asarray(content_image.resize(out.stylized.size)))

    def gaps(img):
        lab = color.rgb2lab(np.asarray(img))
        lightness = abs(np.sort(lab[..., 0].ravel()) - np.sort(reference[..., 0].ravel())).mean()
        chroma = sum(abs(lab[..., c].mean() - reference[..., c].mean()) for c in (1, 2))
        return lightness, chroma

    (light_c, chroma_c), (light_s, chroma_s) = gaps(out.corrected), gaps(out.stylized)
    assert light_c < light_s / 2 and chroma_c < chroma_s / 2


@pytest.mark.parametrize("batch", [1, None])
def test_progress_reports_every_iteration_with_an_eta(content_image, style_image, batch):
    seen = []
    result = stylize(content_image, [style_image], params=Params(size=128, iterations=5, scales=(0.5, 1.0), outputs=2),
                     progress=seen.append, batch=batch)
    # 128 px: the 64 px coarse scale is below the useful minimum and skipped.
    if batch == 1:  # one output after the other: a report for each one's iterations
        assert result.record["memory"]["batch"] == 1
        assert [p.step for p in seen] == list(range(1, 11))
        assert seen[-1].output == 1 and seen[-1].pictures == 1 and seen[-1].outputs_label == "2/2"
        assert seen[-1].image().size == (128, 96)
    else:  # both as one batch: a report for each of the batch's iterations, counting both pictures
        assert result.record["memory"]["batch"] == 2
        assert [p.step for p in seen] == list(range(2, 11, 2))
        assert seen[-1].output == 0 and seen[-1].pictures == 2 and seen[-1].outputs_label == "1-2/2"
        live = seen[-1].image()  # the live view shows both pictures side by side
        assert live.size == (256, 96)
        assert np.array_equal(pixels(live.crop((128, 0, 256, 96))), pixels(result.outputs[1].stylized))
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen) and seen[-1].fraction == 1.0
    assert seen[-1].total_steps == 10 and seen[-1].eta == pytest.approx(0, abs=1e-6)
    assert seen[0].eta > 0 and set(seen[0].losses) == {"total", "content", "style", "tv"}


def test_a_batch_of_outputs_makes_the_pictures_made_one_after_another(content_image, style_image):
    """Each picture of a batch has its own targets (its variant's), its own L-BFGS state and its
    own gradient from the batch's one pass: its picture is the one made alone, within the
    round-off in which a batched convolution may differ from a single one."""
    params = Params(**{**TINY, "iterations": 8}, outputs=3)
    alone = stylize(content_image, [style_image], params=params, batch=1)
    batched = stylize(content_image, [style_image], params=params)
    assert batched.record["memory"]["batch"] == 3 and alone.record["memory"]["batch"] == 1
    assert [s["pictures"] for s in batched.record["memory"]["scales"]] == [3]
    # The same history, step for step: each picture numbered as it is alone.
    assert [h["step"] for h in batched.history] == [h["step"] for h in alone.history] == list(range(1, 25))
    # Each picture's first three evaluations: its own targets, then the steps its own gradient and
    # its own L-BFGS state give (a shared state or mixed gradients move them apart at once).
    early = [[h["total"] for h in run.history if h["step"] % 8 in (1, 2, 3)] for run in (alone, batched)]
    assert early[1] == pytest.approx(early[0], rel=2e-3)
    assert len({round(t, 3) for t in early[1][::3]}) == 3  # three variants: three different pictures
    # Later the round-off grows as L-BFGS's does between any two runs (by 30 iterations a few
    # levels on average; the loss within 1%): close, not equal.
    for a, b in zip(alone.outputs, batched.outputs):
        diff = np.abs(pixels(a.stylized) - pixels(b.stylized))
        assert diff.mean() < 2.5 and diff.max() <= 40
    assert batched.history[-1]["total"] == pytest.approx(alone.history[-1]["total"], rel=0.02)


def test_a_stopped_batch_resumes_together_or_starts_again_where_it_does_not_fit(content_image, style_image):
    params = Params(**{**TINY, "iterations": 12}, outputs=2)
    full = stylize(content_image, [style_image], params=params)
    calls = {"n": 0}

    def stop_after_5():
        calls["n"] += 1
        return calls["n"] == 5

    stopped = stylize(content_image, [style_image], params=params, should_stop=stop_after_5)
    state = stopped.state
    assert (state.output, state.pictures, state.iteration, len(state.finished)) == (0, 2, 5, 0)
    assert len(stopped.outputs) == 2  # both partial
    restored = RunState.from_dict(torch.load(_save(state), weights_only=True))
    resumed = stylize(content_image, [style_image], params=params, resume=restored)
    assert resumed.record["memory"]["batch"] == 2 and not resumed.stopped
    for a, b in zip(resumed.outputs, full.outputs):  # L-BFGS's memory restarts: close, not equal
        assert np.abs(pixels(a.stylized) - pixels(b.stylized)).mean() < 12
    assert [h["step"] for h in resumed.history] == list(range(1, 25))
    assert resumed.history[4]["total"] == stopped.history[4]["total"]  # the steps before the stop kept
    # A worker with room for one picture at a time (taking the job over): the batch's pictures start
    # again one after another, rather than overrun the memory plan.
    one = estimate(Params(**{**TINY, "iterations": 12}), content_image.size)
    budget = (one["peak_mib"] + 2) * 2**20  # one picture's plan and a little: not two
    again = stylize(content_image, [style_image], params=params, resume=restored, memory_budget=budget)
    assert again.record["memory"]["batch"] == 1 and not again.stopped
    assert [h["step"] for h in again.history] == list(range(1, 25))
    assert again.history[4]["total"] != stopped.history[4]["total"] or again.history[5]["total"] != stopped.history[5]["total"]


def test_coarse_to_fine_runs_each_scale(content_image, style_image):
    result = stylize(content_image, [style_image], params=Params(size=256, iterations=3, scales=(0.5, 1.0)))
    assert result.record["scales"] == [[128, 96], [256, 192]]
    assert result.outputs[0].stylized.size == (256, 192)


def test_stop_returns_a_partial_result_that_resumes_to_the_same_end(content_image, style_image):
    params = Params(**{**TINY, "iterations": 12}, outputs=2)
    full = stylize(content_image, [style_image], params=params, batch=1)  # one output after the other
    calls = {"n": 0}

    def stop_after_16():
        calls["n"] += 1
        return calls["n"] == 16

    stopped = stylize(content_image, [style_image], params=params, should_stop=stop_after_16, batch=1)
    assert stopped.stopped and len(stopped.outputs) == 2  # one finished, one partial
    state = stopped.state
    assert (state.output, state.iteration, len(state.finished)) == (1, 4, 1)
    # Through a serialization round trip, as the service checkpoints it.
    restored = RunState.from_dict(torch.load(_save(state), weights_only=True))
    resumed = stylize(content_image, [style_image], params=params, resume=restored, batch=1)
    assert not resumed.stopped and len(resumed.outputs) == 2
    assert np.array_equal(pixels(resumed.outputs[0].stylized), pixels(full.outputs[0].stylized))
    # L-BFGS restarts its curvature memory on resume, so the second image is close, not equal.
    diff = np.abs(pixels(resumed.outputs[1].stylized) - pixels(full.outputs[1].stylized)).mean()
    assert diff < 12
    # The loss history runs on across the stop: one entry per step, numbered without a gap.
    assert [h["step"] for h in resumed.history] == list(range(1, len(full.history) + 1))


def test_a_run_stopped_on_its_last_iteration_resumes_and_finishes(content_image, style_image):
    """The stop landed on the scale's last iteration: the checkpoint has nothing left to run at
    that scale. Resuming finishes the picture (it failed with an internal error: found by the
    SIGTERM-under-load test once stops became quick)."""
    params = Params(**{**TINY, "iterations": 6})
    calls = {"n": 0}

    def stop_on_the_last():
        calls["n"] += 1
        return calls["n"] == 6

    stopped = stylize(content_image, [style_image], params=params, should_stop=stop_on_the_last)
    assert stopped.stopped and stopped.state.iteration == 6
    restored = RunState.from_dict(torch.load(_save(stopped.state), weights_only=True))
    resumed = stylize(content_image, [style_image], params=params, resume=restored)
    assert not resumed.stopped and len(resumed.outputs) == 1


def test_a_finished_state_rebuilds_the_result_without_computing(content_image, style_image):
    params = Params(**TINY, outputs=2, color_correction=True)
    full = stylize(content_image, [style_image], params=params)
    assert full.state is not None and full.state.complete(params.outputs)
    restored = RunState.from_dict(torch.load(_save(full.state), weights_only=True))
    steps = []
    rebuilt = stylize(content_image, [style_image], params=params, resume=restored, progress=steps.append)
    assert steps == []  # not one iteration
    for a, b in zip(rebuilt.outputs, full.outputs):
        assert np.array_equal(pixels(a.stylized), pixels(b.stylized))
        assert np.array_equal(pixels(a.corrected), pixels(b.corrected))
    assert rebuilt.history == full.history


def _save(state):
    import io

    buf = io.BytesIO()
    torch.save(state.to_dict(), buf)
    buf.seek(0)
    return buf


def test_several_styles_blend_and_preserve_color(content_image, style_image):
    second = Image.new("RGB", (96, 96), (200, 30, 30))
    p = Params(**TINY, style_blend=(3.0, 1.0), preserve_color=True)
    result = stylize(content_image, [style_image, second], params=p)
    out = result.outputs[0].stylized
    content_ycc = np.asarray(content_image.resize(out.size, Image.Resampling.LANCZOS).convert("YCbCr"), dtype=float)
    out_ycc = np.asarray(out.convert("YCbCr"), dtype=float)
    assert np.abs(out_ycc[..., 1:] - content_ycc[..., 1:]).mean() < 3
    with pytest.raises(ValueError, match="one per style"):
        stylize(content_image, [style_image], params=Params(**TINY, style_blend=(1.0, 2.0)))


def test_a_painting_with_a_face_gives_its_deepest_target_from_outside_the_face(content_image, style_image):
    """A portrait's relu5_1 Gram matrix asks the picture for its face (docs/quality.md): with the
    face guard (the default) a painting with a face gives relu5_1 the statistics of the rest of
    its canvas, a face that fills the canvas gives none (exactly as if the job had listed the
    other layers), a painting without a face keeps every layer whole; the record says which."""
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())
    portrait = photo.copy()
    portrait.thumbnail((256, 256))  # its face about 45 px: found (faces.MIN_FACE is 20)
    small = dict(size=64, iterations=4)
    guarded = stylize(content_image, [portrait], params=Params(**small))
    assert guarded.record["faces"]["masked"] == {"relu5_1": [1]} and guarded.record["faces"]["left_out"] == {}
    assert guarded.record["faces"]["paintings"][0][0]["probability"] > 0.99
    without_deep = Params(**small, face_guard="off", style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    listed = stylize(content_image, [portrait], params=without_deep)
    assert listed.record["faces"] == {"guard": "off", "paintings": [[]], "masked": {}, "left_out": {}}
    unguarded = stylize(content_image, [portrait], params=Params(**small, face_guard="off"))
    assert not np.array_equal(pixels(guarded.outputs[0].stylized), pixels(listed.outputs[0].stylized))
    assert not np.array_equal(pixels(guarded.outputs[0].stylized), pixels(unguarded.outputs[0].stylized))

    # The face alone, cropped from the photograph: nothing is left outside it, no relu5_1 target.
    (left, top, right, bottom), (width, height) = guarded.record["faces"]["paintings"][0][0]["box"], portrait.size
    face = portrait.crop((round(left * width) - 2, round(top * height) - 2,
                          round(right * width) + 2, round(bottom * height) + 2)).resize((96, 120))
    filled = stylize(content_image, [face], params=Params(**small))
    assert filled.record["faces"]["left_out"] == {"relu5_1": [1]} and filled.record["faces"]["masked"] == {}
    assert np.array_equal(pixels(filled.outputs[0].stylized),
                          pixels(stylize(content_image, [face], params=without_deep).outputs[0].stylized))

    # Blended with a painting without a face, that painting's relu5_1 target stays whole.
    blend = stylize(content_image, [portrait, style_image], params=Params(**small))
    assert blend.record["faces"]["masked"] == {"relu5_1": [1]}
    assert [bool(found) for found in blend.record["faces"]["paintings"]] == [True, False]
    plain = stylize(content_image, [style_image], params=Params(**small))
    assert plain.record["faces"]["masked"] == {} and plain.record["faces"]["left_out"] == {}
    off = stylize(content_image, [style_image], params=Params(**small, face_guard="off"))
    assert np.array_equal(pixels(plain.outputs[0].stylized), pixels(off.outputs[0].stylized))

    # A job that lists only the deepest block's layers asked for exactly them: it keeps them.
    deep_only = stylize(content_image, [portrait], params=Params(size=64, iterations=2, style_layers=("relu5_1",)))
    assert deep_only.record["faces"]["masked"] == {} and deep_only.record["final_losses"]["style"] > 0


def test_the_deepest_target_of_a_painting_with_a_face_is_the_gram_matrix_of_the_rest():
    """The masked target is the Gram matrix of exactly the positions outside the face's box,
    tiled or not: a different face changes nothing, a different background does."""
    import torch

    from nst_engine.faces import Face
    from nst_engine.optimize import _gram_outside

    torch.manual_seed(0)
    features = torch.rand(1, 8, 6, 4)
    face = Face((0.5, 0.0, 1.0, 0.5), 0.99)  # the top right quarter: rows 0-2, columns 2-3
    target = _gram_outside(features, [face])
    rest = torch.cat([features[0, :, 3:, :].reshape(8, -1), features[0, :, :3, :2].reshape(8, -1)], dim=1)
    assert torch.allclose(target[0], rest @ rest.T / (8 * rest.shape[1]))
    other_face = features.clone()
    other_face[:, :, :3, 2:] = 5.0
    assert torch.equal(_gram_outside(other_face, [face]), target)
    other_rest = features.clone()
    other_rest[:, :, 5, 0] = 5.0
    assert not torch.allclose(_gram_outside(other_rest, [face]), target)
    assert _gram_outside(features, [Face((0.0, 0.0, 1.0, 1.0), 0.99)]) is None


def test_adam_with_noise_init_lowers_the_loss(content_image, style_image):
    p = Params(**TINY, optimizer="adam", learning_rate=0.05, init="noise")
    result = stylize(content_image, [style_image], params=p)
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_the_plateau_schedule_halves_the_rate_when_the_loss_stops_falling(content_image, style_image):
    # A rate far too large: the loss stops improving at once, so after `patience` steps
    # the plateau schedule halves it; the constant schedule keeps it.
    common = {**TINY, "iterations": 40, "optimizer": "adam", "learning_rate": 2.0}
    plateau = stylize(content_image, [style_image], params=Params(**common, lr_schedule="plateau"))
    constant = stylize(content_image, [style_image], params=Params(**common, lr_schedule="constant"))
    assert plateau.history[0]["lr"] == 2.0 and plateau.history[-1]["lr"] <= 1.0
    assert {h["lr"] for h in constant.history} == {2.0}


def test_init_from_a_given_image(content_image, style_image):
    p = Params(**{**TINY, "iterations": 2}, init="start.png", init_noise=0.0)
    result = stylize(content_image, [style_image], params=p, init_image=style_image)
    assert result.outputs[0].stylized.size == (96, 72)
    with pytest.raises(ValueError, match="init_image"):
        stylize(content_image, [style_image], params=p)


def test_preload_builds_the_network_a_run_then_uses(content_image, style_image):
    from nst_engine import optimize, preload

    optimize.clear_caches()
    params = Params(**TINY)
    preload(params)
    built = optimize._network.cache_info()
    assert built.currsize == 1
    stylize(content_image, [style_image], params=params)
    after = optimize._network.cache_info()
    assert after.misses == built.misses and after.hits > built.hits


def test_preload_leaves_no_import_to_a_jobs_colour_correction():
    """A first import inside a job holds the interpreter, and the service's liveness thread with
    it: after preload, the first colour correction imports nothing (it once imported skimage's
    conversions, which load on first use). In a fresh interpreter: this one has imported
    everything already."""
    code = textwrap.dedent("""
        import sys
        from PIL import Image
        from nst_engine import Params, preload
        from nst_engine.color import match_colors
        preload(Params(size=64, face_guard="off"))
        before = set(sys.modules)
        match_colors(Image.new("RGB", (16, 16), (200, 40, 40)), Image.new("RGB", (16, 16), (20, 40, 200)))
        print(sorted(m for m in set(sys.modules) - before if not m.startswith("PIL.")))  # Pillow's: a ms
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"imported by the first colour correction: {out.stdout}"


@pytest.mark.parametrize("photo, painting, floor", [
    ("tubingen", "starry_night", 0.40),  # measured 0.478 when the floor was set
    ("astronaut", "the_scream", 0.28),  # a face and a painted face: measured 0.354
])
def test_the_defaults_keep_the_photographs_structure(photo, painting, floor):
    """A floor under the defaults' picture quality at 128 px (SSIM of luminance against the
    photograph), so that a speed change cannot silently give structure back."""
    import numpy as np
    import skimage.data
    from PIL import Image
    from skimage.metrics import structural_similarity

    samples = Path(__file__).resolve().parents[2] / "samples"
    content = Image.open(samples / "tubingen.jpg").convert("RGB") if photo == "tubingen" else \
        Image.fromarray(getattr(skimage.data, photo)())
    style = Image.open(samples / f"{painting}.jpg").convert("RGB")
    out = stylize(content, [style], params=Params(size=128)).outputs[0].stylized

    def luminance(img):
        return np.asarray(img.convert("YCbCr"), dtype=np.float64)[..., 0] / 255.0

    ssim = structural_similarity(luminance(out), luminance(content.resize(out.size)), data_range=1.0)
    assert ssim > floor, ssim


def test_strength_moves_the_picture_from_the_photograph_to_the_painting(content_image, style_image):
    """Higher strength: less of the photograph's structure, more of the painting's statistics.
    0.3 and 1.0, not 0.5: at this size the arithmetic alone (float32 with the direct convolution
    or Winograd's) moved the style figure at 1.0 by 0.01 (0.292-0.307), 0.5's 0.307-0.314 (2026-12-06,
    AVX2 class); 0.3's is 0.364-0.376."""
    from nst_engine.losses import gram
    from nst_engine.optimize import _network

    net = _network("caffe", "max", torch.device("cpu"), "relu5_1", False)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    with torch.no_grad():
        target = net(torch.from_numpy(np.asarray(style_image.resize((96, 72)), dtype=np.float32) / 255)
                     .permute(2, 0, 1)[None], set(layers))

    def figures(strength):
        out = stylize(content_image, [style_image], params=Params(**TINY, strength=strength)).outputs[0].stylized
        x = torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            f = net(x, set(layers))
        style = sum(float((gram(f[k]) - gram(target[k])).pow(2).sum() / gram(target[k]).pow(2).sum())
                    for k in layers)
        ssim = structural_similarity(luminance(out), luminance(content_image.resize(out.size)), data_range=255)
        return ssim, style

    light, middle, strong = figures(0.0), figures(0.3), figures(1.0)
    assert light[0] > middle[0] > strong[0], (light, middle, strong)
    assert light[1] > middle[1] > strong[1], (light, middle, strong)


def test_several_outputs_are_visibly_different_variants(content_image, style_image):
    """Each further output changes something a person sees, by more than a seed alone does:
    brush size shows in the texture statistics (Gram matrices), strength in how much of the
    photograph's structure remains (SSIM against it). Names in the outputs and the record.

    In float32: in bf16 on an AMD EPYC with AVX-512 BF16 (no AMX) a seed alone moved the SSIM by
    0.011-0.024 at this size (128 px, 30 iterations), as much as the strength step (0.011); in
    float32 the seed moved it by 0.005 and the step by 0.035 (2026-12-02). The variants' meaning
    is checked here, the precision's noise elsewhere (tests/gpu/precision.py). 25 iterations
    (2026-12-03): each measure passes its ratio 2 to the seed's effect 3.9-20.8 times with
    AVX-512 kernels, 3.9-12.4 with AVX2's; at 20 iterations strength fell to 2.2-2.7."""
    from nst_engine.losses import gram
    from nst_engine.optimize import _network

    net = _network("caffe", "max", torch.device("cpu"), "relu5_1", False)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    base = dict(size=128, iterations=25, scales=(1.0,), precision="fp32")
    result = stylize(content_image, [style_image], params=Params(**base, outputs=5))
    seed_only = stylize(content_image, [style_image], params=Params(**base, seed=1)).outputs[0].stylized
    names = [o.variant for o in result.outputs]
    assert names == ["as given", "larger brushwork", "stronger", "finer brushwork", "lighter"]
    assert [v["variant"] for v in result.record["variants"]] == names

    def grams(img):
        with torch.no_grad():
            f = net(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None], set(layers))
        return [gram(f[k]) for k in layers]

    def texture_distance(a, b):
        return float(np.mean([float((x - y).norm() / y.norm()) for x, y in zip(grams(a), grams(b))]))

    def structure(img):
        return structural_similarity(luminance(img), luminance(content_image.resize(img.size)), data_range=255)

    first = result.outputs[0].stylized
    seed_texture = texture_distance(seed_only, first)
    seed_structure = abs(structure(seed_only) - structure(first))
    larger, stronger, finer, lighter = (o.stylized for o in result.outputs[1:])
    assert texture_distance(larger, first) > 2 * seed_texture
    assert texture_distance(finer, first) > 2 * seed_texture
    assert structure(first) - structure(stronger) > 2 * seed_structure
    assert structure(lighter) - structure(first) > 2 * seed_structure


def test_a_wide_painting_at_a_small_size_keeps_the_networks_short_side_in_every_variant(content_image, style_image):
    """At 64 px a painting a little over twice as wide as high is looked at 30 px high, and the
    "finer brushwork" variant (0.6 x) at 18 px: too little for the network. Its short side is
    kept at the network's minimum instead of the job failing (it failed at the first output)."""
    wide = style_image.crop((0, 0, style_image.width, style_image.width // 2 - 4))
    result = stylize(content_image, [wide], params=Params(size=64, iterations=2, outputs=4))
    assert [o.variant for o in result.outputs][3] == "finer brushwork"
    assert all(o.stylized.size == result.outputs[0].stylized.size for o in result.outputs)


def test_a_default_run_never_loads_torch_dynamo():
    """L-BFGS is the engine's own: `torch.optim`'s first optimizer imports `torch._dynamo`, 1.5 s
    of every daemon's first job and every `nst stylize` (a fresh process: this one may have
    imported it for another test)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from PIL import Image\n"
        "from nst_engine import Params, stylize\n"
        "image = Image.new('RGB', (64, 48), (120, 80, 40))\n"
        "result = stylize(image, [image.rotate(90)], params=Params(size=64, iterations=3))\n"
        "assert result.record['memory']['scales'][0]['optimizer'] == 'lbfgs'\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout
