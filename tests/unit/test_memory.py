"""The memory planner's choices for a few sizes and budgets."""

import pytest
import torch

from nst_engine.memory import (FIXED_BYTES, HISTORY_MAX, HISTORY_MIN, HISTORY_PAIR_BYTES_PER_PIXEL,
                               STATE_BYTES_PER_PIXEL, BudgetError, plan_batch, plan_scale)
from nst_engine import winograd
from nst_engine.device import use_bf16
from nst_engine.params import Params
from nst_engine.planning import CPU_MAX_BATCH, MAX_BATCH, batch_room, most_pictures, plan_run, together_key
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


def test_a_batch_of_pictures_costs_each_its_own_state_history_and_pass():
    alone = plan_scale((512, 384), 8 * GIB, bf16=True, layers=LAYERS)
    assert plan_batch(alone, 1, 8 * GIB, bf16=True).peak_bytes == alone.peak_bytes
    four = plan_batch(alone, 4, 8 * GIB, bf16=True)
    assert (four.pictures, four.history, four.tile) == (4, alone.history, None)
    assert four.peak_bytes - FIXED_BYTES == 4 * (alone.peak_bytes - FIXED_BYTES)
    # Over the budget, tiled, or a history shortened: no batch (its pictures would not be the ones made alone).
    assert plan_batch(alone, 4, four.peak_bytes - 1, bf16=True) is None
    tiled = plan_scale((512, 384), 8 * GIB, bf16=True, layers=LAYERS, tile=128)
    assert plan_batch(tiled, 2, 8 * GIB, bf16=True) is None
    adam = plan_scale((512, 384), 8 * GIB, bf16=True, layers=LAYERS, optimizer="adam")
    assert plan_batch(adam, 2, 8 * GIB, bf16=True) is None


def test_a_run_batches_as_many_outputs_as_fit_where_batching_pays():
    params = Params(size=512, outputs=4)
    whole = plan_run(params, (512, 384), bf16=True, budget=8 * GIB)
    assert whole.batch == 4 and whole.groups() == [range(0, 4)]
    two = plan_batch(whole.memory[0], 2, 8 * GIB, bf16=True).peak_bytes
    fits_two = plan_run(params, (512, 384), bf16=True, budget=two)
    assert fits_two.batch == 2 and fits_two.groups() == [range(0, 2), range(2, 4)]
    assert fits_two.groups(3) == [range(3, 4)]
    # float32 on the CPU gains only on small pictures; a GPU and bf16 at every size.
    assert plan_run(params, (512, 384), bf16=False, budget=8 * GIB).batch == 1
    assert plan_run(params, (512, 384), bf16=False, budget=8 * GIB, device="cuda").batch == 4
    assert plan_run(Params(size=128, outputs=4), (128, 96), bf16=False, budget=8 * GIB).batch == 4
    assert plan_run(params, (512, 384), bf16=True, budget=8 * GIB, batch=1).batch == 1
    assert plan_run(Params(size=512, outputs=4, optimizer="adam"), (512, 384), bf16=True, budget=8 * GIB).batch == 1


def test_a_batchs_remaining_work_counts_every_picture_in_it():
    plan = plan_run(Params(size=512, outputs=3, iterations=10), (512, 384), bf16=True, budget=8 * GIB)
    assert plan.remaining_work(0, 0, 0, pictures=3) == plan.total_work
    assert plan.remaining_work(0, 0, 10, pictures=2) == plan.work()  # the third output left
    assert plan.remaining_work(0, 0, 4, pictures=3) == 3 * 6 * 512 * 384


def test_jobs_share_a_batch_only_with_the_same_network_layers_sizes_and_iterations():
    def key(size=(512, 384), budget=8 * GIB, device="cpu", bf16=True, **params):
        p = Params(size=512, **params)
        return together_key(p, plan_run(p, size, bf16=bf16, budget=budget, device=device), device=device, bf16=bf16)

    same = key()
    assert same is not None and key(style_weight=5e4, seed=3, style_scale=0.5) == same  # the loss's own
    assert key(size=(1024, 768)) == same  # fitted to the same size
    for other in (key(size=(512, 300)), key(iterations=40), key(pooling="avg"), key(style_layers=["relu1_1"]),
                  key(device="cuda:0"), key(precision="fp32")):
        assert other is not None and other != same
    assert key(optimizer="adam") is None  # Adam runs alone
    assert key(budget=int(1.1 * GIB)) is None  # tiled: each picture needs its own tiles
    assert key(bf16=False) is None  # float32 at 512 px on the CPU: a batch does not pay
    assert key(outputs=4, budget=3 * GIB) is None  # its own outputs do not fit one batch


def test_a_batch_of_jobs_holds_what_fits_up_to_the_cap_and_on_the_cpu_four():
    small = Params(size=128, iterations=10)
    assert batch_room(small, (128, 96), memory_budget=8 * GIB) == CPU_MAX_BATCH  # the CPU's most
    assert batch_room(small, (128, 96), memory_budget=8 * GIB, batch=3) == 3
    assert batch_room(Params(size=128, optimizer="adam"), (128, 96), memory_budget=8 * GIB) == 1
    # A budget between two and three pictures' batch (this CPU's precision and convolutions).
    device = torch.device("cpu")
    bf16 = use_bf16("auto", device)
    alone = plan_run(small, (128, 96), bf16=bf16, budget=8 * GIB, winograd=winograd.used(device, bf16)).memory[0]
    two, three = (plan_batch(alone, n, 8 * GIB, bf16=bf16, winograd=winograd.used(device, bf16)).peak_bytes
                  for n in (2, 3))
    assert batch_room(small, (128, 96), memory_budget=(two + three) // 2) == 2  # the memory decides first
    assert most_pictures("cuda", None) == MAX_BATCH and most_pictures("cpu", 2) == 2


@pytest.mark.parametrize("message, memory", [
    ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes", True),
    ("could not create a primitive", True),  # oneDNN making a convolution's JIT code under a limit
    ("could not create a primitive descriptor for a convolution forward propagation primitive", False),
    ("shape '[2, 3]' is invalid for input of size 5", False),
])
def test_memory_running_out_mid_run_is_told_from_other_errors(message, memory):
    """The CPU's out-of-memory has no type of its own: the allocator's and oneDNN's messages are
    the signs. One of them is a BudgetError with the plan and advice; anything else, a bug, is
    raised as it was."""
    from nst_engine.memory import BudgetError
    from nst_engine.optimize import _out_of_memory

    plan = plan_run(Params(size=256), (256, 192), bf16=False, budget=GIB)
    with pytest.raises(BudgetError if memory else RuntimeError) as raised:
        with _out_of_memory(plan, lambda: (256, 192)):
            raise RuntimeError(message)
    if memory:
        assert str(raised.value).startswith("ran out of memory at 256x192 (planned peak") and message[:40] in str(raised.value)
    else:
        assert type(raised.value) is RuntimeError and str(raised.value) == message
