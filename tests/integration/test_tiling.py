"""Tiled evaluation gives the whole image's loss and gradient, and the same pictures."""

import numpy as np
import pytest
import torch
from PIL import Image

from nst_engine import Params, stylize
from nst_engine.images import to_tensor
from nst_engine.losses import StyleTransferLoss, gram
from nst_engine.optimize import _network
from nst_engine.tiling import GRID, TiledObjective, halo_for, plan_tiles, tiled_features, tiled_grams

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)
WIDTH, HEIGHT = 200, 152


@pytest.fixture(scope="module")
def net():
    return _network("caffe", "max", torch.device("cpu"), "relu5_1", False)


def features_of(net):
    return lambda image, layers, tap=None: net(image, layers, tap=tap)


def make_loss(net, content, styles, weights, blend=(0.5, 0.5), **loss_weights):
    layers = frozenset(STYLE_LAYERS)
    with torch.no_grad():
        targets = {k: 0.0 for k in STYLE_LAYERS}
        for style, w in zip(styles, blend):
            f = net(style, layers)
            for k in STYLE_LAYERS:
                targets[k] = targets[k] + w * gram(f[k])
        content_targets = {k: v for k, v in net(content, frozenset(CONTENT_LAYERS)).items()}
    return StyleTransferLoss(content_targets=content_targets, style_targets=targets,
                             style_layer_weights=weights, **loss_weights)


def whole(net, loss, image):
    x = image.detach().clone().requires_grad_(True)
    terms = loss(net(x, loss.layers), x)
    terms.total.backward()
    return terms, x.grad


@pytest.fixture(scope="module")
def pair(content_image, style_image):
    # 200 x 152: not a multiple of the grid, so the last tiles' remainders are exercised; 64 px
    # tiles make 3 x 3 of them (the remainders joined to the last), the middle one with
    # neighbours on every side.
    content = to_tensor(content_image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS))
    styles = [to_tensor(style_image.resize((240, 180))), to_tensor(style_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((200, 150)))]
    start = (content + 0.1 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return content, styles, start


@pytest.mark.parametrize("weights", [
    dict(content_weight=1.0, style_weight=0.0, tv_weight=0.0),
    dict(content_weight=0.0, style_weight=50.0, tv_weight=0.0),
    dict(content_weight=0.0, style_weight=0.0, tv_weight=30.0),
    dict(content_weight=1.0, style_weight=50.0, tv_weight=30.0),
], ids=["content", "style", "tv", "all"])
def test_tiled_and_whole_gradients_agree(net, pair, weights):
    content, styles, start = pair
    loss = make_loss(net, content, styles, [1.0] * 5, **weights)
    expected_terms, expected = whole(net, loss, start)
    tiles = plan_tiles(HEIGHT, WIDTH, 64, halo_for(STYLE_LAYERS + CONTENT_LAYERS))
    assert len(tiles) >= 9
    terms, grad = TiledObjective(features_of(net), loss, tiles)(start)
    assert float(terms.total) == pytest.approx(float(expected_terms.total.detach()), rel=1e-5)
    error = float((grad - expected).norm() / expected.norm())
    assert error < 1e-4, error


def test_a_too_small_halo_is_caught_by_the_comparison(net, pair):
    """The test above can fail: with half the halo the owned features are wrong."""
    content, styles, start = pair
    loss = make_loss(net, content, styles, [1.0] * 5, content_weight=1.0, style_weight=50.0, tv_weight=0.0)
    _, expected = whole(net, loss, start)
    _, grad = TiledObjective(features_of(net), loss, plan_tiles(HEIGHT, WIDTH, 64, 32))(start)
    assert float((grad - expected).norm() / expected.norm()) > 1e-3


def test_stitched_features_and_summed_grams_equal_the_whole_images(net, pair):
    content, _, _ = pair
    tiles = plan_tiles(HEIGHT, WIDTH, 48, 96)
    layers = frozenset(STYLE_LAYERS + CONTENT_LAYERS)
    with torch.no_grad():
        f = net(content, layers)
    stitched = tiled_features(features_of(net), content, layers, tiles)
    grams, deep = tiled_grams(features_of(net), content, frozenset(STYLE_LAYERS), tiles, stitch=frozenset({"relu5_1"}))
    assert list(deep) == ["relu5_1"] and torch.equal(deep["relu5_1"], stitched["relu5_1"])
    for k in layers:
        assert stitched[k].shape == f[k].shape
        # Against the largest value: Winograd's round-off (the AVX2 class, float32) is about
        # 3e-6 of it whole or tiled (the tiles align its 4x4 blocks differently); a missing
        # halo is off by a tenth.
        error = float((stitched[k] - f[k]).abs().max() / f[k].abs().max())
        assert error < 1e-5, (k, error)
    for k in STYLE_LAYERS:
        assert float((grams[k] - gram(f[k])).norm() / gram(f[k]).norm()) < 1e-5


def test_tiles_cover_the_image_once_on_the_grid():
    tiles = plan_tiles(1000, 1530, 256, 96)
    owned = np.zeros((1000, 1530), int)
    for t in tiles:
        owned[t.own_y[0]:t.own_y[1], t.own_x[0]:t.own_x[1]] += 1
        assert t.own_y[0] % GRID == 0 and t.own_x[0] % GRID == 0 and t.pad_y[0] % GRID == 0
    assert (owned == 1).all()
    with pytest.raises(ValueError):
        plan_tiles(100, 100, 50, 96)


def test_a_tile_edge_of_zero_is_refused_rather_than_planned_forever():
    # 0 is a multiple of the grid; planning it never advanced and filled the memory (found by
    # `stylize(tile=0)` in a benchmark script).
    with pytest.raises(ValueError, match="positive"):
        plan_tiles(100, 100, 0, 96)


def test_a_forced_tiled_run_gives_the_same_picture(content_image, style_image):
    """10 float32 iterations: measured 0.08/255 apart. Not 20: there L-BFGS has amplified
    float32 round-off past 1/255 whatever computes the gradient. Measured at 200 px over
    seeds 0, 1, 2 (2026-11-27): tiled against whole 1.65, 1.75, 1.29/255, and the whole image
    on one thread against itself on two 0.84, 1.77, 2.05/255; the tiles' gradient agrees to
    7e-7. Now 160 px (six tiles instead of nine, the 16-px remainders still met) and 4
    iterations, a quarter of the time: 0.006/255 apart with AVX-512 kernels and 0.005 with
    AVX2's, moved 15.1/255 from the photograph. Round-off grows fast at this size: after 5
    iterations 0.03 (AVX-512) but 1.32/255 (AVX2), after 6-10 1.7-1.8 (2026-12-03), so the
    count is kept well short of that; the gradient itself agrees (0.0 after one iteration)."""
    params = Params(size=160, iterations=4, precision="fp32", color_correction=False)
    whole_run = stylize(content_image, [style_image], params=params)
    tiled_run = stylize(content_image, [style_image], params=params, tile=64)
    assert whole_run.record["memory"]["scales"][0]["tile"] is None
    assert tiled_run.record["memory"]["scales"][0]["tile"] == 64
    assert tiled_run.record["memory"]["scales"][0]["tiles"] >= 6
    a = np.asarray(whole_run.outputs[0].stylized, dtype=np.float64)
    b = np.asarray(tiled_run.outputs[0].stylized, dtype=np.float64)
    assert np.abs(a - b).mean() < 1.0, np.abs(a - b).mean()
    # ... and the run moved far from its start: the agreement is not that of two idle runs.
    start = np.asarray(content_image.resize(whole_run.outputs[0].stylized.size), dtype=np.float64)
    assert np.abs(a - start).mean() > 10


def test_where_float32_pairs_do_not_fit_the_bfloat16_ones_paint_as_well(content_image, style_image):
    from nst_engine import estimate, memory, winograd

    # Layers up to relu4_1 keep the halo narrow, and 384 px makes the whole pass cost more than the
    # smallest tile's with the tile shapes' caches, so that the planner tiles.
    params = Params(size=384, iterations=4, precision="fp32", color_correction=False,
                    content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    width, height = estimate(params, content_image.size, memory_budget=2**34)["scales"][0]["size"]
    pixels, halo = width * height, halo_for(params.content_layers + params.style_layers)
    # The compact state, three bf16 pairs, the tile shapes' caches and the smallest tile's pass (as the planner counts it,
    # a whole halo around it), with a megabyte to spare: torch's state and pairs need 3 MB more.
    wino = winograd.used(torch.device("cpu"), False)  # the AVX2 class: its weight tiles and transients
    budget = (memory.FIXED_BYTES + memory.TILED_CACHE_BYTES + (memory.WINOGRAD_FIXED_BYTES if wino else 0)
              + (memory.PASS_BYTES_PER_PIXEL[False] + (memory.WINOGRAD_BYTES_PER_PIXEL if wino else 0))
              * (memory.MIN_TILE + 2 * halo) ** 2
              + (memory.COMPACT_STATE_BYTES_PER_PIXEL[False] + 3 * memory.COMPACT_PAIR_BYTES_PER_PIXEL) * pixels
              + 2**20)
    compact = stylize(content_image, [style_image], params=params, memory_budget=budget)
    plan = compact.record["memory"]["scales"][0]
    assert plan["optimizer"] == "lbfgs-compact" and plan["history"] == 3 and plan["tile"] == memory.MIN_TILE
    # The reference is the whole image with float32 pairs: tiles agree with it to round-off (the
    # tests above), and it costs a quarter of the tiled run's time.
    reference = stylize(content_image, [style_image], params=params)
    assert reference.record["memory"]["scales"][0]["optimizer"] == "lbfgs"
    assert reference.record["memory"]["scales"][0]["tile"] is None
    assert compact.history[-1]["total"] < 0.75 * compact.history[0]["total"]  # it optimizes: 0.60 at 4 iterations
    assert compact.history[-1]["total"] == pytest.approx(reference.history[-1]["total"], rel=0.01)


def test_a_portraits_deepest_target_from_outside_its_face_is_the_same_tiled(content_image, monkeypatch):
    """A large painting's Gram matrices are taken tile by tile; a portrait's relu5_1 target
    (the positions outside its face) is taken from relu5_1's features stitched in the same
    pass: the same picture as from the whole painting's pass."""
    import skimage.data

    import nst_engine.optimize as optimize

    portrait = Image.fromarray(skimage.data.astronaut())
    portrait.thumbnail((256, 256))
    params = Params(size=160, iterations=2, precision="fp32", color_correction=False)
    whole = stylize(content_image, [portrait], params=params)
    stitched = []

    def spy(*args, **kwargs):
        stitched.append(sorted(kwargs.get("stitch", ())))
        return tiled_grams(*args, **kwargs)

    monkeypatch.setattr(optimize, "forward_tile", lambda *args, **kwargs: 64)
    monkeypatch.setattr(optimize, "tiled_grams", spy)
    optimize.clear_caches()
    tiled = stylize(content_image, [portrait], params=params)
    assert ["relu5_1"] in stitched  # the style pass was tiled, and stitched relu5_1 in the same pass
    assert whole.record["faces"]["masked"] == tiled.record["faces"]["masked"] == {"relu5_1": [1]}
    a, b = (np.asarray(r.outputs[0].stylized, dtype=np.float64) for r in (whole, tiled))
    assert np.abs(a - b).mean() < 1.0, np.abs(a - b).mean()
    optimize.clear_caches()
