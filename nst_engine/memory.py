"""How each scale of a run fits a memory budget: whole or tiled, and L-BFGS's history.

The costs are per input pixel, measured on this project's CPU machine (peak RSS of
runs at two sizes, the difference divided by the pixels between them; see
docs/benchmarks.md "print"): what one forward and backward pass keeps for its
gradient, and the image-sized float32 vectors a run holds (the image, its
gradient, the content target, L-BFGS's directions and history).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import UserError
from .tiling import GRID, halo_for, plan_tiles

# Bytes per input pixel of one forward and backward pass up to relu5_1 (activations kept
# for the gradient, the gradient buffers and the allocator's slack), by precision. Measured
# 2026-11-26: peak RSS of 3-iteration runs at 1024 and 2048 px, 2070 bytes a pixel more in
# bf16 (3410 in float32), of which the image-sized state below is about 120.
PASS_BYTES_PER_PIXEL = {True: 2000, False: 3300}  # bf16, float32
# Winograd's convolutions (`winograd.used`: float32 on CPUs without AVX-512) add their weight
# tiles (forward and gradient, conv3_1-conv5_1: 387 MiB) and per pixel the transforms'
# transients. Measured 2026-12-06 (capped to AVX2), peak RSS of 3-iteration runs with and
# without: 522 MiB more at 512 px, 1047 at 1024 px.
WINOGRAD_FIXED_BYTES = 370 * 2**20
WINOGRAD_BYTES_PER_PIXEL = 900
# A forward pass without gradient keeps only two layers alive at a time (measured: 490 bytes a
# pixel in bf16, the peak of a tiled 2048 px run, which is its style image's pass).
FORWARD_BYTES_PER_PIXEL = {True: 520, False: 1040}
# Winograd's transients in that pass: measured (capped to AVX2, float32, 1024 and 2048 px)
# 712 bytes a pixel without, 1265 with; kept with the direct figure's margin.
WINOGRAD_FORWARD_BYTES_PER_PIXEL = 600
# Image-sized vectors besides the history: the image, its gradient, and L-BFGS's direction,
# previous gradient and two working vectors (float32 RGB, 12 bytes a pixel each: torch's L-BFGS,
# which these figures were measured with; ours holds only the first four, so a plan with
# float32 pairs keeps 24 bytes a pixel to spare), and the
# content target (relu4_2: 512 channels per 64 pixels, in the network's precision). Adam's
# two moments and the two temporaries of its step take the place of L-BFGS's four vectors.
STATE_BYTES_PER_PIXEL = {True: 12 * 6 + 16, False: 12 * 6 + 32}
# Each history pair (s, y) of L-BFGS: two float32 RGB vectors.
HISTORY_PAIR_BYTES_PER_PIXEL = 24
# `lbfgs.LBFGS` with bfloat16 pairs, where float32 pairs do not fit with HISTORY_MIN pairs beside the
# smallest tile (8192 px in the 6.8 GiB a GPU with 8 GiB gives: its vectors alone are 7.2 GiB):
# four float32 vectors (image, gradient, previous gradient, direction) and bf16 pairs.
COMPACT_STATE_BYTES_PER_PIXEL = {True: 12 * 4 + 16, False: 12 * 4 + 32}
COMPACT_PAIR_BYTES_PER_PIXEL = 12
HISTORY_MAX = 50
HISTORY_MIN = 3
# Below this many history pairs a scale goes to tiles rather than shorten the history further.
WHOLE_MIN_HISTORY = 20
# The network's weights, the interpreter, torch and the service: a fixed part (measured 540 MiB
# for `nst stylize`; the daemon holds more).
FIXED_BYTES = 700 * 2**20
# oneDNN's primitive cache keeps each convolution's primitives for every tile shape a tiled run
# meets (up to nine: corners, edges, inside), beside the whole image's: measured 127 MiB resident
# at 2048 px in 224 px tiles (default cache against ONEDNN_PRIMITIVE_CACHE_CAPACITY=0, one
# iteration; docs/benchmarks.md). A part per tiled run, not per pixel.
TILED_CACHE_BYTES = 128 * 2**20
# The smallest tile worth its halo: below it the halo would be most of the work.
MIN_TILE = 128


class BudgetError(UserError):
    """A job that cannot fit the memory budget even in tiles."""

    default_hint = "choose a smaller size, or give the worker a larger memory budget ([worker] memory_budget_mib)"


@dataclass(frozen=True)
class ScalePlan:
    """How one scale runs: `tile` is the owned tile edge (None: the whole image at once);
    `optimizer` "lbfgs" (float32 pairs) or "lbfgs-compact" (bfloat16 pairs; `lbfgs.LBFGS`) with `history`
    pairs, or "adam" (history 0)."""

    size: tuple[int, int]
    tile: int | None
    tiles: int
    history: int
    peak_bytes: int
    optimizer: str = "lbfgs"
    pictures: int = 1  # optimized at once, as one batch (`plan_batch`), each with its own history

    def to_dict(self) -> dict:
        return {"size": list(self.size), "tile": self.tile, "tiles": self.tiles, "optimizer": self.optimizer,
                "history": self.history, "pictures": self.pictures,
                "estimated_peak_mib": round(self.peak_bytes / 2**20)}


def default_budget(device: torch.device) -> int:
    """Bytes a run may use: on a GPU 90% of what is free now; on the CPU half of the memory
    available now (the rest is the system's, the service's and the page cache's)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    return int(_available_bytes() * 0.5)


def _available_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def plan_scale(size: tuple[int, int], budget: int, *, bf16: bool, layers: list[str],
               tile: int | None = None, optimizer: str = "lbfgs", winograd: bool = False) -> ScalePlan:
    """The plan for one scale of `size` (width, height) within `budget` bytes.

    L-BFGS: whole when the pass fits beside the state and at least WHOLE_MIN_HISTORY history
    pairs; otherwise tiled: half of what a modest tile's pass leaves goes to the history (at
    least HISTORY_MIN pairs), and the tile edge is the largest on the grid whose pass fits in
    the rest; where not even that fits, the same with the compact L-BFGS. `optimizer="adam"`
    plans Adam, whole where it fits. `tile` forces a tile edge. `winograd`: the network runs
    some convolutions as Winograd.
    """
    pixels = size[0] * size[1]
    fixed = _fixed_bytes(winograd)
    state = fixed + STATE_BYTES_PER_PIXEL[bf16] * pixels
    per_pixel = _pass_bytes_per_pixel(bf16, winograd)
    halo = halo_for(layers)
    whole_pass = per_pixel * pixels
    if optimizer == "adam":
        if tile is None and state + whole_pass <= budget:
            return ScalePlan(size, None, 1, 0, state + whole_pass, "adam")
        return _tiled(size, budget, state, 0, per_pixel, halo, tile, "adam")
    # Whole, with the history that fits (a shorter one costs less than tiles' second pass).
    pair = HISTORY_PAIR_BYTES_PER_PIXEL * pixels
    whole_history = min(HISTORY_MAX, (budget - state - whole_pass) // pair)
    if tile is None and whole_history >= WHOLE_MIN_HISTORY:
        return ScalePlan(size, None, 1, whole_history, state + whole_history * pair + whole_pass)
    try:
        return _tiled(size, budget, state, pair, per_pixel, halo, tile, "lbfgs")
    except BudgetError:
        state = fixed + COMPACT_STATE_BYTES_PER_PIXEL[bf16] * pixels
        pair = COMPACT_PAIR_BYTES_PER_PIXEL * pixels
        return _tiled(size, budget, state, pair, per_pixel, halo, tile, "lbfgs-compact")


def plan_batch(alone: ScalePlan, pictures: int, budget: int, *, bf16: bool, winograd: bool = False
               ) -> ScalePlan | None:
    """`alone`'s scale with `pictures` pictures optimized as one batch, or None where that does not
    fit `budget`. Only a whole scale with float32 pairs batches, and each picture keeps the history
    it has alone: a batched picture is the one made alone (within round-off), so a batch that would
    shorten the history, or need tiles, is not made."""
    if alone.tile is not None or alone.optimizer != "lbfgs":
        return None
    # plan_scale's whole plan, its per-pixel part once for each picture.
    per_pixel = (STATE_BYTES_PER_PIXEL[bf16] + alone.history * HISTORY_PAIR_BYTES_PER_PIXEL
                 + _pass_bytes_per_pixel(bf16, winograd))
    peak = _fixed_bytes(winograd) + per_pixel * alone.size[0] * alone.size[1] * pictures
    if peak > budget:
        return None
    return ScalePlan(alone.size, None, 1, alone.history, peak, "lbfgs", pictures)


def _fixed_bytes(winograd: bool) -> int:
    return FIXED_BYTES + (WINOGRAD_FIXED_BYTES if winograd else 0)


def _pass_bytes_per_pixel(bf16: bool, winograd: bool) -> int:
    return PASS_BYTES_PER_PIXEL[bf16] + (WINOGRAD_BYTES_PER_PIXEL if winograd else 0)


def _tiled(size: tuple[int, int], budget: int, state: int, pair: int, per_pixel: int, halo: int,
           tile: int | None, optimizer: str) -> ScalePlan:
    """A tiled plan: half of what a modest tile's pass leaves goes to the history (none where
    `pair` is 0: Adam), and the tile is the largest on the grid that fits in the rest."""
    width, height = size
    state += TILED_CACHE_BYTES
    history = 0
    if pair:
        spare = budget - state - per_pixel * (2 * MIN_TILE + 2 * halo) ** 2
        history = max(HISTORY_MIN, min(HISTORY_MAX, int(0.5 * spare) // pair))
    if tile is None:
        tile = _largest_tile(budget - state - history * pair, per_pixel, halo, max(width, height))
        if tile is None:
            need = state + history * pair + per_pixel * (MIN_TILE + 2 * halo) ** 2
            raise BudgetError(
                f"a {width}x{height} picture needs about {need / 2**30:.1f} GiB even in tiles; "
                f"this worker's budget is {budget / 2**30:.1f} GiB")
    tiles = plan_tiles(height, width, tile, halo)
    largest = max(t.padded_pixels for t in tiles)
    return ScalePlan(size, tile, len(tiles), history, state + history * pair + per_pixel * largest, optimizer)


def forward_tile(size: tuple[int, int], budget: int, *, bf16: bool, layers: list[str],
                 winograd: bool = False) -> int | None:
    """The tile edge for a forward pass without gradient (a style image's Gram matrices),
    or None when the whole image's pass fits in half the budget."""
    width, height = size
    per_pixel = FORWARD_BYTES_PER_PIXEL[bf16] + (WINOGRAD_FORWARD_BYTES_PER_PIXEL if winograd else 0)
    if per_pixel * width * height <= budget // 2:
        return None
    return _largest_tile(budget // 2, per_pixel, halo_for(layers), max(width, height)) or MIN_TILE


def _largest_tile(left: int, per_pixel: int, halo: int, longest: int) -> int | None:
    edge = (min(longest, 8192) // GRID) * GRID
    while edge >= MIN_TILE:
        if per_pixel * (edge + 2 * halo) ** 2 <= left:
            return edge
        edge -= GRID
    return None
