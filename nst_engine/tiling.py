"""The whole-image loss and its exact gradient, computed tile by tile in bounded memory.

A Gram matrix is a sum over positions, so the whole image's Gram matrix is the sum
of the Gram matrices of the positions each tile owns; the content and
total-variation terms are sums over positions too. One iteration is then two
passes over the tiles:

1. forward only: each style layer's Gram matrix (and the content term) summed
   over the tiles' owned positions: the whole loss, and dL/dG for each layer;
2. forward and backward, tile by tile: the gradient of <dL/dG, G_tile> plus the
   tile's content term, added into the whole image's gradient.

A tile is the region it owns plus a halo at least as wide as the network's
receptive field up to the deepest layer used, cut from the real image (zero
padding happens only at the image's true borders) and aligned to the pooling
grid, so every owned feature equals the whole image's exactly: the optimizer
sees the same function and the same gradient as without tiles, hence the same
picture, with no seams by construction. Total variation is computed on the
whole image (it is cheap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch

from .losses import LossTerms, StyleTransferLoss, content_loss, gram, gram_product, tv_loss_and_grad_
from .topology import BLOCKS, LAYER_NAMES, block_of

# Four 2x2 poolings lie between the input and block 5: tiles start on this grid so that
# every pooling window of a tile is one of the whole image's.
GRID = 16

Features = Callable[..., Mapping[str, torch.Tensor]]  # (image, layers, tap=None) -> features


def receptive_radius(layer: str) -> int:
    """How far, in input pixels, a feature of `layer` sees from its own position (an upper bound)."""
    radius, stride = 0, 1
    target = LAYER_NAMES.index(layer)
    for block, count in BLOCKS:
        if block > 1:
            radius += stride  # the 2x2 pooling in front of this block
            stride *= 2
        for index in range(1, count + 1):
            radius += stride  # a 3x3 convolution
            if LAYER_NAMES.index(f"relu{block}_{index}") >= target:
                return radius
    return radius


def halo_for(layers: Iterable[str]) -> int:
    """The halo a tile needs for `layers`: the deepest one's receptive radius, on the grid."""
    radius = max(receptive_radius(layer) for layer in layers)
    return -(-radius // GRID) * GRID


def downsample(layer: str) -> int:
    """Input pixels per feature position at `layer`."""
    return 2 ** (block_of(layer) - 1)


@dataclass(frozen=True)
class Tile:
    """Rows and columns (start, end) in input pixels: the ones this tile owns, and the
    ones it computes (owned plus halo, clipped to the image)."""

    own_y: tuple[int, int]
    own_x: tuple[int, int]
    pad_y: tuple[int, int]
    pad_x: tuple[int, int]

    def owned(self, layer: str) -> tuple[slice, slice, slice, slice]:
        """(rows, columns) of the owned features inside this tile's feature map, then in the
        whole image's. The whole image's layer has floor(H / d) rows, and so does the
        last tile's share of it: both start on the grid."""
        d = downsample(layer)
        rows = _owned_span(self.own_y, self.pad_y, d)
        cols = _owned_span(self.own_x, self.pad_x, d)
        return rows[0], cols[0], rows[1], cols[1]

    @property
    def padded_pixels(self) -> int:
        return (self.pad_y[1] - self.pad_y[0]) * (self.pad_x[1] - self.pad_x[0])


def _owned_span(own: tuple[int, int], pad: tuple[int, int], d: int) -> tuple[slice, slice]:
    start, end = own[0] // d, own[1] // d
    local = (own[0] - pad[0]) // d
    return slice(local, local + end - start), slice(start, end)


def plan_tiles(height: int, width: int, edge: int, halo: int) -> list[Tile]:
    """Tiles owning `edge` x `edge` pixels (the last row and column take the remainder)."""
    if edge <= 0 or edge % GRID or halo % GRID:  # an edge of 0 would never advance
        raise ValueError(f"tile edge {edge} and halo {halo} must be multiples of {GRID}, the edge positive")

    def spans(length: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        out, start = [], 0
        while start < length:
            end = length if length - start < edge + GRID else start + edge  # no sliver at the end
            out.append(((start, end), (max(0, start - halo), min(length, end + halo))))
            start = end
        return out

    return [Tile(oy, ox, py, px) for oy, py in spans(height) for ox, px in spans(width)]


def tiled_features(features: Features, image: torch.Tensor, layers: frozenset, tiles: list[Tile]
                   ) -> dict[str, torch.Tensor]:
    """The whole image's features at `layers`, stitched from the tiles' owned parts (no gradient)."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for tile in tiles:
            _stitch(out, features(_cut(image, tile), layers), tile, image, layers)
    return out


def tiled_grams(features: Features, image: torch.Tensor, layers: frozenset, tiles: list[Tile],
                stitch: frozenset = frozenset()) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The whole image's (normalized, float32) Gram matrices at `layers`, summed over tiles, and
    in the same pass its features at the layers in `stitch` (a portrait's deepest layer, whose
    target is taken from part of its positions: optimize.py)."""
    sums: dict[str, torch.Tensor] = {}
    stitched: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for tile in tiles:
            f = features(_cut(image, tile), layers)
            _add_grams(sums, f, tile, image, layers)
            _stitch(stitched, f, tile, image, stitch)
    return sums, stitched


def _stitch(out: dict[str, torch.Tensor], f: Mapping[str, torch.Tensor], tile: Tile, image: torch.Tensor,
            layers: Iterable[str]) -> None:
    """Copy the tile's owned part of each layer's features into the whole image's, in `out`."""
    for layer in layers:
        rows, cols, grows, gcols = tile.owned(layer)
        part = f[layer][:, :, rows, cols]
        if layer not in out:
            d = downsample(layer)
            out[layer] = part.new_empty((*part.shape[:2], image.shape[2] // d, image.shape[3] // d))
        out[layer][:, :, grows, gcols] = part


class TiledObjective:
    """`loss`'s value and exact gradient for an image, tile by tile (see the module's note)."""

    def __init__(self, features: Features, loss: StyleTransferLoss, tiles: list[Tile]) -> None:
        self.features, self.loss, self.tiles = features, loss, tiles

    def __call__(self, image: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        # Pass 1: the whole image's Gram matrices and content term, no gradient.
        grams, content = self._grams_and_content(image)
        style, upstream = self._style(grams, image)
        # Pass 2: each tile's share of the gradient, with dL/dG fixed from pass 1.
        grad = self._gradient(image, upstream)
        return self._terms(image, content, style, grad)

    def _grams_and_content(self, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        grams: dict[str, torch.Tensor] = {}
        content = image.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            for tile in self.tiles:
                f = self.features(_cut(image, tile), self.loss.layers)
                _add_grams(grams, f, tile, image, frozenset(self.loss.style_targets))
                content = content + self._content(f, tile, image)
        return grams, content

    def _style(self, grams: Mapping[str, torch.Tensor], image: torch.Tensor):
        """The style term of these Gram matrices, and its dL/dG (of beta * scale * 1/4 sum (G - A)^2)."""
        loss = self.loss
        with torch.no_grad():
            style = sum((loss.style_scale[k] * 0.25 * (grams[k] - t).pow(2).sum()
                         for k, t in loss.style_targets.items()), image.new_zeros((), dtype=torch.float32))
            upstream = {k: loss.beta * loss.style_scale[k] * 0.5 * (grams[k] - t)
                        for k, t in loss.style_targets.items()}
        return style, upstream

    def _gradient(self, image: torch.Tensor, upstream: Mapping[str, torch.Tensor],
                  seen: Callable[[Tile, Mapping[str, torch.Tensor]], None] | None = None) -> torch.Tensor:
        """Each tile's share of the image gradient. The owned positions' terms join the
        network's backward where their layer is (a tap, as the whole image's Gram matrices
        do): cropping in autograd instead made full-size zero gradients in another memory
        layout at every layer, which cost more than the halos. `seen` gets each tile's
        features (detached) before its backward."""
        layers = self.loss.layers
        grad = torch.zeros_like(image)
        deepest = max(layers, key=LAYER_NAMES.index)
        for tile in self.tiles:
            piece = _cut(image, tile).detach().requires_grad_(True)
            f = self.features(piece, layers, tap=self._tap(tile, image, upstream))
            if seen is not None:
                seen(tile, {k: v.detach() for k, v in f.items()})
            f[deepest].backward(torch.zeros_like(f[deepest]))
            grad[:, :, tile.pad_y[0]:tile.pad_y[1], tile.pad_x[0]:tile.pad_x[1]] += piece.grad
        return grad

    def _terms(self, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
               grad: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        """The loss terms, with total variation computed on the whole image and its gradient
        added into `grad` in bands of rows."""
        loss = self.loss
        tv = (tv_loss_and_grad_(image.detach(), grad, loss.gamma) if loss.gamma
              else image.new_zeros((), dtype=torch.float32))
        total = loss.alpha * content + loss.beta * style + loss.gamma * tv.detach()
        return LossTerms(content.detach(), style.detach(), tv.detach(), total.detach()), grad

    def _tap(self, tile: Tile, image: torch.Tensor, upstream: Mapping[str, torch.Tensor]):
        loss = self.loss

        def tap(name: str, features: torch.Tensor) -> torch.Tensor:
            if name not in loss.style_targets and name not in loss.content_targets:
                return features
            rows, cols, grows, gcols = tile.owned(name)
            whole_positions = _positions(image, name)
            channels = features.shape[1]
            weight = target = None
            content_scale = 0.0
            if name in loss.style_targets:
                # d/dX of <U, X^T X / (C N)> over the owned positions X: X (U + U^T) / (C N).
                u = upstream[name]
                weight = (u + u.transpose(1, 2)) / (channels * whole_positions)
            if name in loss.content_targets:
                # alpha * scale * 1/2 sum (F - P)^2 / (C N) over the owned positions.
                target = loss.content_targets[name][:, :, grows, gcols]
                content_scale = loss.alpha * loss.content_scale[name] / (channels * whole_positions)
            return _OwnedTerms.apply(features, (rows, cols), weight, target, content_scale)

        return tap

    def _content(self, f: Mapping[str, torch.Tensor], tile: Tile, image: torch.Tensor) -> torch.Tensor:
        """The tile's owned share of the content term (a mean over the whole layer)."""
        total = image.new_zeros((), dtype=torch.float32)
        for layer, target in self.loss.content_targets.items():
            rows, cols, grows, gcols = tile.owned(layer)
            part = f[layer][:, :, rows, cols]
            share = part[0, 0].numel() / (target.shape[2] * target.shape[3])
            total = total + self.loss.content_scale[layer] * share * content_loss(part, target[:, :, grows, gcols])
        return total


class _OwnedTerms(torch.autograd.Function):
    """A tile's features, passed through; the backward adds the gradient of the owned
    positions' terms (the style term's <dL/dG, G_owned> as `weight` = (U + U^T) / (C N), and
    the content term) into the gradient from the layers above, in place, in its layout."""

    @staticmethod
    def forward(ctx, features, owned, weight, target, content_scale):
        ctx.save_for_backward(features, weight, target)
        ctx.owned, ctx.content_scale = owned, content_scale
        ctx.set_materialize_grads(False)
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad):
        features, weight, target = ctx.saved_tensors
        rows, cols = ctx.owned
        out = torch.zeros_like(features) if grad is None else grad.clone()
        part = features[:, :, rows, cols]
        if weight is not None:
            b, c, h, w = part.shape
            x = part.permute(0, 2, 3, 1).reshape(b, h * w, c)
            out[:, :, rows, cols] += gram_product(x, weight).view(b, h, w, c).permute(0, 3, 1, 2)
        if target is not None:
            out[:, :, rows, cols] += (ctx.content_scale * (part.float() - target.float())).to(out.dtype)
        return out, None, None, None, None


def _add_grams(sums: dict[str, torch.Tensor], f: Mapping[str, torch.Tensor], tile: Tile, image: torch.Tensor,
               layers: Iterable[str]) -> None:
    """Add the tile's owned share of each layer's Gram matrix into `sums`."""
    for layer in layers:
        part = _owned(f[layer], tile, layer)
        g = gram(part) * _share(part, image, layer)
        sums[layer] = g if layer not in sums else sums[layer] + g


def _cut(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    return image[:, :, tile.pad_y[0]:tile.pad_y[1], tile.pad_x[0]:tile.pad_x[1]]


def _owned(f: torch.Tensor, tile: Tile, layer: str) -> torch.Tensor:
    rows, cols, _, _ = tile.owned(layer)
    return f[:, :, rows, cols]


def _share(part: torch.Tensor, image: torch.Tensor, layer: str) -> float:
    """The owned positions' share of the whole layer's (Gram matrices are means over positions)."""
    return part.shape[2] * part.shape[3] / _positions(image, layer)


def _positions(image: torch.Tensor, layer: str) -> int:
    """How many positions the whole image has at `layer`."""
    d = downsample(layer)
    return (image.shape[2] // d) * (image.shape[3] // d)
