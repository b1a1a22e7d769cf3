"""A run's plan before it starts: the sizes it goes through, the iterations at each, the memory
each needs, and the work (pixels times iterations) that a progress bar and an ETA measure.

`stylize` runs this plan and `estimate` reports it, from one computation: what a service
promises before a job waits in its queue is what the job then does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import torch

from . import winograd
from .device import describe, pick_device, use_bf16
from .images import fitted_size
from .memory import ScalePlan, default_budget, plan_batch, plan_scale
from .params import Params

# Coarse scales below this long edge teach the network little: skip them.
MIN_SCALE_EDGE = 128
# Above this long edge, `schedule = "auto"` goes coarse to fine from COARSE_EDGE (see `schedule`).
LARGE_EDGE = 1024
COARSE_EDGE = 512
MIN_FINE_ITERATIONS = 10
# The largest scale (pixels) at which a float32 network on the CPU gains from a batch. Measured
# capped to the AVX2 class (2026-12-07, bench/batch.py --force, four outputs, whole runs, side
# by side): 1.39x at 128x96, 1.08x at 256x192, 1.02x at 512x384 (the convolutions are bound by
# memory there; a wash, for four times the memory). bfloat16 on the CPU gained at every size
# (1.65x, 1.35x, 1.12x), and a GPU, whose small passes are bound by kernel launches, gains most.
CPU_FP32_BATCH_PIXELS = 256 * 256
# The most pictures in one batch of several jobs (a worker claims no more at once): on a GPU,
# and on the CPU, where the gain was measured for four (bench/batch.py: 1.12-1.65x) and a larger
# batch makes each job wait for all without a measured gain.
MAX_BATCH = 32
CPU_MAX_BATCH = 4


@dataclass(frozen=True)
class RunPlan:
    """The scales of one output (size and iterations each), repeated for every output."""

    sizes: tuple[tuple[int, int], ...]  # (width, height) per scale, coarse to fine
    iterations: tuple[int, ...]  # per scale
    outputs: int
    memory: tuple[ScalePlan, ...]  # per scale: whole or tiled, L-BFGS's history, the peak
    budget: int  # bytes
    # Outputs optimized at once, as one batch, each picture with its own L-BFGS state: outputs
    # 0..batch-1 together, then the next batch (the last may be smaller).
    batch: int = 1

    @property
    def total_steps(self) -> int:
        return self.outputs * sum(self.iterations)

    def work(self, first_scale: int = 0) -> float:
        """One output's pixel-iterations from `first_scale` on."""
        return float(sum(w * h * n for (w, h), n in zip(self.sizes[first_scale:], self.iterations[first_scale:])))

    @property
    def total_work(self) -> float:
        """The whole run's pixel-iterations (every scale and output)."""
        return self.work() * self.outputs

    def remaining_work(self, output: int, scale: int, iteration: int, pictures: int = 1) -> float:
        """Pixel-iterations left after `iteration` of `scale` of outputs `output` to
        `output + pictures - 1` (a batch; all 0-based but the 1-based iteration)."""
        w, h = self.sizes[scale]
        return (pictures * ((self.iterations[scale] - iteration) * w * h + self.work(scale + 1))
                + (self.outputs - output - pictures) * self.work())

    def groups(self, first: int = 0) -> list[range]:
        """The outputs from `first` on, as the batches they are optimized in."""
        return [range(start, min(start + self.batch, self.outputs)) for start in range(first, self.outputs, self.batch)]


def plan_run(params: Params, content_size: tuple[int, int], *, bf16: bool, budget: int,
             tile: int | None = None, winograd: bool = False, device: str = "cpu",
             batch: int | None = None) -> RunPlan:
    """The plan for a photograph of `content_size` (as given; fitted to `params.size` here);
    `winograd`: the network runs some convolutions as Winograd (`winograd.used`); `device`: its
    type, for whether a batch of outputs pays there (`batch_pays`); `batch`: at most this many
    outputs at once (default: as many as fit and pay)."""
    sizes, iterations = schedule(fitted_size(content_size, params.size, what="content image"), params)
    layers = list(params.content_layers) + list(params.style_layers)
    # Largest first: where nothing fits, the refusal names the picture's own size.
    memory = [plan_scale(size, budget, bf16=bf16, layers=layers, tile=tile, optimizer=params.optimizer,
                         winograd=winograd)
              for size in reversed(sizes)][::-1]
    most = min(params.outputs, params.outputs if batch is None else batch)
    if not batch_pays(device, bf16, max(w * h for w, h in sizes)):
        most = 1
    for pictures in range(most, 1, -1):  # the largest batch that fits every scale
        batched = [plan_batch(m, pictures, budget, bf16=bf16, winograd=winograd) for m in memory]
        if all(batched):
            return RunPlan(tuple(sizes), tuple(iterations), params.outputs, tuple(batched), budget, pictures)
    return RunPlan(tuple(sizes), tuple(iterations), params.outputs, tuple(memory), budget)


def batch_pays(device: str, bf16: bool, pixels: int) -> bool:
    """Whether optimizing several outputs as one batch is faster than one after another on this
    kind of device, for a run whose largest scale has `pixels` (CPU_FP32_BATCH_PIXELS)."""
    return device != "cpu" or bf16 or pixels <= CPU_FP32_BATCH_PIXELS


def together_key(params: Params, plan: RunPlan, *, device: str, bf16: bool) -> str | None:
    """What runs must share to be optimized together, as one batch of several jobs' pictures
    (`stylize_many`): the device and the network (weights, pooling, precision), the layers, the
    sizes and the iterations at each. None where the run joins no batch: Adam, a tiled or
    compact scale (a batch runs whole, each picture with the history it has alone), its own
    outputs in several batches, or a device where a batch does not pay (`batch_pays`).
    `device`: as torch names it ("cpu", "cuda:0")."""
    if params.optimizer != "lbfgs" or plan.batch < plan.outputs:
        return None
    if any(m.tile is not None or m.optimizer != "lbfgs" for m in plan.memory):
        return None
    if not batch_pays(device.split(":")[0], bf16, max(w * h for w, h in plan.sizes)):
        return None
    shared = [device, bf16, params.precision, params.weights, params.pooling, list(params.content_layers),
              list(params.style_layers), [list(size) for size in plan.sizes], list(plan.iterations)]
    return hashlib.sha1(json.dumps(shared).encode()).hexdigest()[:16]


def batch_room(params: Params, content_size: tuple[int, int], *, memory_budget: int | None = None,
               batch: int | None = None) -> int:
    """How many pictures of `params`' kind one batch holds on this device within the budget, at
    most `batch` (and MAX_BATCH, or CPU_MAX_BATCH on the CPU): the outputs of the jobs of its
    `together_key` that a worker takes at once. 1 where it shares no batch."""
    here = plan_here(params, content_size, memory_budget=memory_budget, batch=batch)
    if here.together is None:
        return 1
    room = here.plan.batch
    while room < most_pictures(here.device.type, batch) and all(
            plan_batch(m, room + 1, here.plan.budget, bf16=here.bf16, winograd=here.winograd)
            for m in here.plan.memory):
        room += 1
    return room


def most_pictures(device: str, batch: int | None) -> int:
    """The most pictures of several jobs in one batch on this kind of device (MAX_BATCH, or
    CPU_MAX_BATCH on the CPU), at most `batch`."""
    most = CPU_MAX_BATCH if device == "cpu" else MAX_BATCH
    return min(batch or most, most)


def estimate(params: Params, content_size: tuple[int, int], *, memory_budget: int | None = None,
             batch: int | None = None) -> dict:
    """What a run of `params` on a photograph of `content_size` will take, before it starts:
    each scale's plan (whole or tiled, L-BFGS's history), the estimated peak memory and the
    work in megapixel-iterations. Raises `BudgetError` (with advice) where the picture cannot
    fit the budget even in tiles, and `ImageError` where it is too narrow for the size, so
    that a service can refuse such a job at once. `batch`: as `stylize`'s. `together`: the key
    of the jobs whose runs it can share a batch with (`together_key`; None: it runs alone)."""
    here = plan_here(params, content_size, memory_budget=memory_budget, batch=batch)
    plan = here.plan
    return {"device": describe(here.device), "budget_mib": round(plan.budget / 2**20), "batch": plan.batch,
            "together": here.together,
            "peak_mib": round(max(m.peak_bytes for m in plan.memory) / 2**20),
            "scales": [m.to_dict() for m in plan.memory], "iterations_per_scale": list(plan.iterations),
            "work_mpix_iterations": round(plan.total_work / 1e6, 3)}


@dataclass(frozen=True)
class DevicePlan:
    """A run's plan on the device its parameters name: what `stylize`, `estimate` and
    `batch_room` each start from."""

    params: Params
    device: torch.device
    bf16: bool
    winograd: bool  # the network runs some convolutions as Winograd (`winograd.used`)
    plan: RunPlan

    @property
    def together(self) -> str | None:
        """The key of the runs this one can share a batch with (`together_key`)."""
        return together_key(self.params, self.plan, device=str(self.device), bf16=self.bf16)


def plan_here(params: Params, content_size: tuple[int, int], *, memory_budget: int | None = None,
              tile: int | None = None, batch: int | None = None) -> DevicePlan:
    """`plan_run` on the device `params` names, within `memory_budget` bytes (default: the
    device's, `memory.default_budget`); `tile`, `batch`: as `plan_run`'s."""
    device = pick_device(params.device)
    bf16 = use_bf16(params.precision, device)
    fast = winograd.used(device, bf16)
    budget = memory_budget if memory_budget is not None else default_budget(device)
    plan = plan_run(params, content_size, bf16=bf16, budget=budget, tile=tile, winograd=fast,
                    device=device.type, batch=batch)
    return DevicePlan(params, device, bf16, fast, plan)


def schedule(size: tuple[int, int], params: Params) -> tuple[list[tuple[int, int]], list[int]]:
    """The sizes a run goes through and the iterations at each.

    `schedule = "auto"` with one scale above LARGE_EDGE px (a print): coarse to fine from
    about 512 px, doubling, the iterations halving at each doubling (at least 10), so the
    structure is laid down where the network sees the whole composition (not below 512 px,
    where the quality grid showed the painting's objects get painted in) and the large
    scales only refine the brushwork. Otherwise `scales`, with `iterations` at each.
    """
    width, height = size
    longest = max(width, height)
    if params.schedule == "auto" and tuple(params.scales) == (1.0,) and longest > LARGE_EDGE:
        edges = [longest]
        while edges[-1] / 2 >= COARSE_EDGE:
            edges.append(round(edges[-1] / 2))
        edges.reverse()
        plan = [(max(1, round(width * e / longest)), max(1, round(height * e / longest))) for e in edges]
        iterations = [max(MIN_FINE_ITERATIONS, params.iterations >> k) for k in range(len(plan))]
        plan[-1] = (width, height)
        return plan, iterations
    plan = _scale_plan(size, params.scales)
    return plan, [params.iterations] * len(plan)


def _scale_plan(size: tuple[int, int], scales: Sequence[float]) -> list[tuple[int, int]]:
    width, height = size
    plan = []
    for s in scales:
        w, h = max(1, round(width * s)), max(1, round(height * s))
        if s == 1.0 or (max(w, h) >= MIN_SCALE_EDGE and min(w, h) >= 32):
            plan.append((w, h))
    return plan
