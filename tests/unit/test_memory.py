"""The memory planner's choices for a few sizes and budgets."""

import pytest

from nst_engine.memory import (FIXED_BYTES, HISTORY_MAX, HISTORY_MIN, HISTORY_PAIR_BYTES_PER_PIXEL,
                               STATE_BYTES_PER_PIXEL, BudgetError, plan_scale)
from nst_engine.tiling import GRID

LAYERS = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
GIB = 2**30


def test_a_small_picture_runs_whole_with_the_full_history():
    plan = plan_scale((512, 384), 8 * GIB, bf16=True, layers=LAYERS)
    assert plan.tile is None and plan.tiles == 1 and plan.history == HISTORY_MAX
    assert plan.peak_bytes < 2 * GIB


@pytest.mark.parametrize("size, budget_gib", [((4096, 3072), 6), ((8192, 6144), 12), ((3000, 2000), 3)])
def test_print_sizes_tile_and_shorten_the_history_to_fit_the_budget(size, budget_gib):
    plan = plan_scale(size, budget_gib * GIB, bf16=True, layers=LAYERS)
    assert plan.tile is not None and plan.tile % GRID == 0 and plan.tiles > 1
    assert HISTORY_MIN <= plan.history < HISTORY_MAX
    assert plan.peak_bytes <= budget_gib * GIB


def test_a_larger_budget_gives_larger_tiles():
    small = plan_scale((4096, 3072), 4 * GIB, bf16=True, layers=LAYERS)
    large = plan_scale((4096, 3072), 12 * GIB, bf16=True, layers=LAYERS)
    assert large.tile > small.tile and large.tiles < small.tiles


def test_float32_needs_smaller_tiles_than_bf16():
    bf16 = plan_scale((4096, 3072), 6 * GIB, bf16=True, layers=LAYERS)
    fp32 = plan_scale((4096, 3072), 6 * GIB, bf16=False, layers=LAYERS)
    assert fp32.tile < bf16.tile


def test_where_float32_pairs_do_not_fit_the_bfloat16_ones_run():
    # 8192 px in the 6.8 GiB a GPU with 8 GiB gives: the float32 plan's vectors alone are 7.2 GiB.
    budget, pixels = int(6.8 * GIB), 8192 * 6144
    torch_lbfgs = FIXED_BYTES + (STATE_BYTES_PER_PIXEL[True] + HISTORY_MIN * HISTORY_PAIR_BYTES_PER_PIXEL) * pixels
    assert torch_lbfgs > budget  # before any tile's pass
    plan = plan_scale((8192, 6144), budget, bf16=True, layers=LAYERS)
    assert plan.optimizer == "lbfgs-compact" and plan.history >= HISTORY_MIN and plan.tiles > 1
    assert plan.peak_bytes <= budget
    # Where float32 pairs fit with the shortest history, they stay.
    assert plan_scale((8192, 6144), 12 * GIB, bf16=True, layers=LAYERS).optimizer == "lbfgs"


def test_an_adam_job_plans_no_history_and_fits_larger_pictures_whole():
    adam = plan_scale((2048, 1536), 8 * GIB, bf16=True, layers=LAYERS, optimizer="adam")
    lbfgs = plan_scale((2048, 1536), 8 * GIB, bf16=True, layers=LAYERS)
    assert adam.optimizer == "adam" and adam.history == 0 and adam.tile is None
    assert adam.peak_bytes < lbfgs.peak_bytes


def test_a_picture_that_cannot_fit_even_tiled_is_refused_with_advice():
    with pytest.raises(BudgetError, match="even in tiles") as e:
        plan_scale((8192, 6144), 1 * GIB, bf16=True, layers=LAYERS)
    assert "memory_budget_mib" in e.value.hint


def test_a_forced_tile_is_kept():
    plan = plan_scale((512, 384), 8 * GIB, bf16=True, layers=LAYERS, tile=128)
    assert plan.tile == 128 and plan.tiles == 12
