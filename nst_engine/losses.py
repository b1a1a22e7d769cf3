"""Content, style (Gram) and total-variation losses, normalized for image size.

Gatys et al. write, for a layer with N channels and M = H*W positions,

    content  L_c = 1/2 * sum (F - P)^2
    style    L_s = sum_l w_l / (4 N_l^2 M_l^2) * sum (G_l - A_l)^2,  G = F F^T

Two normalizations make weights mean the same thing everywhere:

1. Size. The style term is already independent of image size once the Gram
   matrix is divided by N*M (it becomes an average over positions): we compute
   exactly that. The content term grows with N*M, so we divide it by N*M (a
   mean instead of a sum); the total-variation term is a mean too. With every
   term an average, the same weights give comparable pictures at 256 px and at
   2048 px.
2. Layer. Gatys et al. used a VGG-19 whose weights were rescaled so that every
   filter's mean activation is one; the released Caffe weights are not, and
   their layers' Gram matrices differ by six orders of magnitude (relu4_1
   would drown relu1_1). So each layer's term is divided by the energy of its
   target (mean P^2 for content, sum A^2 for style): every layer starts at a
   relative error of order one, and `style_layer_weights` are then honest.

Features may arrive in bfloat16; every loss and Gram matrix here is float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch.nn import functional as F


class _Gram(torch.autograd.Function):
    """The normalized Gram matrix of features, passing the features through.

    Features are used as a (positions x channels) matrix X, free to get from
    channels-last tensors, and G = X^T X / (C * positions) is float32.

    - bf16 matrix products accumulate in float32 but round their result, whose
      relative error (2^-9) would blur the small differences late in a run. A
      second product, started from minus the rounded result, accumulates
      exactly that rounding error: the sum is good to about 1e-5 relative, like
      a float32 product of upcast features (1e-6), in a quarter of its time on
      CPUs with bf16 units. (On CUDA only where bf16 reductions stay float32.)
    - The backward is one product, X (dG + dG^T), instead of autograd's two.
    - Used as a tap inside the network (`gram_tap`), the features' gradient
      from the layers above is the product's starting value, so autograd does
      not add two full-size gradients afterwards.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
        ctx.save_for_backward(x)
        ctx.shape = (b, c, h, w)
        # The deepest tapped layer's features go nowhere: no zero gradient for them.
        ctx.set_materialize_grads(False)
        if _split_products(x):
            xt = x.transpose(1, 2)
            high = torch.bmm(xt, x)
            low = torch.baddbmm(high.neg(), xt, x)
            g = high.float() + low.float()
        else:
            xf = x.to(_reduction_dtype(x))
            g = torch.bmm(xf.transpose(1, 2), xf)
        return features.view_as(features), g / (c * h * w)

    @staticmethod
    def backward(ctx, grad_features: torch.Tensor | None, grad_gram: torch.Tensor | None) -> torch.Tensor | None:
        (x,) = ctx.saved_tensors
        b, c, h, w = ctx.shape
        if grad_gram is None:
            return grad_features
        s = (grad_gram + grad_gram.transpose(1, 2)) / (c * h * w)
        return gram_product(x, s, grad_features).view(b, h, w, c).permute(0, 3, 1, 2)


def gram_product(x: torch.Tensor, s: torch.Tensor, downstream: torch.Tensor | None = None) -> torch.Tensor:
    """X S (+ the downstream gradient) for features X as (batch, positions, channels) and S
    (batch, channels, channels) float32: a Gram matrix's gradient, in the features' dtype."""
    if _split_products(x):
        return _gram_gradient(x, s.to(x.dtype), downstream)
    return _gram_gradient(x.to(s.dtype), s, downstream).to(x.dtype)


def _split_products(x: torch.Tensor) -> bool:
    # On CUDA, cuBLAS may reduce bf16 products in bf16 (split-K), which would spoil the
    # second product, unless torch is told not to (`stylize` does); otherwise the features
    # are upcast, which on an H200 cost a third of a 1024 px iteration's GPU time in copies.
    if x.dtype != torch.bfloat16:
        return False
    return x.device.type == "cpu" or not torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction


def _reduction_dtype(x: torch.Tensor) -> torch.dtype:
    # float32 at least; float64 stays float64 (gradient checks).
    return torch.promote_types(x.dtype, torch.float32)


def _gram_gradient(x: torch.Tensor, s: torch.Tensor, downstream: torch.Tensor | None) -> torch.Tensor:
    if downstream is None:
        return torch.bmm(x, s)
    b, c, h, w = downstream.shape
    start = downstream.permute(0, 2, 3, 1).reshape(b, h * w, c).to(x.dtype)
    return torch.baddbmm(start, x, s)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalized by channels times positions: (B, C, H, W) -> (B, C, C), float32."""
    return _Gram.apply(features)[1]


def gram_tap(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features to continue the network with, their Gram matrix): see `_Gram`."""
    return _Gram.apply(features)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 mean (F - P)^2: the paper's content loss divided by N*M."""
    return 0.5 * F.mse_loss(features.float(), target.float())


def style_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """1/4 sum (G - A)^2 of size-normalized Gram matrices: the paper's per-layer term."""
    return 0.25 * (gram_matrix - target_gram).pow(2).sum()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (image in 0..1)."""
    x = image.float()
    return F.mse_loss(x[..., :, 1:], x[..., :, :-1]) + F.mse_loss(x[..., 1:, :], x[..., :-1, :])


def tv_loss_and_grad_(image: torch.Tensor, grad: torch.Tensor, weight: float,
                      band_pixels: int = 1 << 20) -> torch.Tensor:
    """`tv_loss(image)`, with `weight` times its gradient added into `grad` in place, in
    bands of rows: autograd's version keeps several image-sized float32 temporaries (the
    differences, their squares and their gradients), about 60 bytes a pixel, which at print
    sizes was more than the memory plan left (a 4096 px job 680 MiB over its plan)."""
    _, _, height, width = image.shape
    n_x, n_y = image[..., :, 1:].numel(), image[..., 1:, :].numel()
    band = max(1, band_pixels // max(1, width))
    total = image.new_zeros((), dtype=torch.float32)
    for top in range(0, height, band):
        bottom = min(height, top + band)
        # Rows top..bottom, and one more below for the vertical differences that start here.
        x = image[..., top:min(height, bottom + 1), :].float()
        own = bottom - top
        dx = x[..., :own, 1:] - x[..., :own, :-1]
        total += dx.pow(2).sum() / max(1, n_x)
        dx = (dx * (2.0 * weight / max(1, n_x))).to(grad.dtype)
        grad[..., top:bottom, 1:] += dx
        grad[..., top:bottom, :-1] -= dx
        del dx
        rows = min(own, x.shape[-2] - 1)  # differences between row r and r + 1, r in this band
        if rows > 0:
            dy = x[..., 1:rows + 1, :] - x[..., :rows, :]
            total += dy.pow(2).sum() / max(1, n_y)
            dy = (dy * (2.0 * weight / max(1, n_y))).to(grad.dtype)
            grad[..., top + 1:top + rows + 1, :] += dy
            grad[..., top:top + rows, :] -= dy
    return total


@dataclass(frozen=True)
class LossTerms:
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    @staticmethod
    def floats_of(terms: Sequence["LossTerms"]) -> list[dict[str, float]]:
        """Each picture's terms as numbers, in one transfer from the device (one wait a batch)."""
        values = torch.stack([torch.stack([t.total, t.content, t.style, t.tv]) for t in terms]).detach().cpu().tolist()
        return [dict(zip(("total", "content", "style", "tv"), row)) for row in values]


class StyleTransferLoss:
    """alpha * L_c + beta * L_s + gamma * L_tv against fixed targets, layer-normalized."""

    def __init__(
        self,
        *,
        content_targets: Mapping[str, torch.Tensor],
        style_targets: Mapping[str, torch.Tensor],
        style_layer_weights: Sequence[float],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ) -> None:
        # Content targets stay in the precision they come in (bf16 halves a print's largest
        # array); `content_loss` computes in float32.
        self.content_targets = dict(content_targets)
        self.style_targets = {k: v.float() for k, v in style_targets.items()}
        # Layer weights sum to 1 so the style weight means the same for any layer count;
        # each is divided by its target's energy (see the module's note on normalization).
        total = sum(style_layer_weights) or 1.0
        self.content_scale = {k: 1.0 / _energy(t.float().pow(2).mean()) for k, t in self.content_targets.items()}
        self.style_scale = {
            k: w / total / _energy(t.pow(2).sum()) for k, w, t in zip(
                self.style_targets, style_layer_weights, self.style_targets.values()
            )
        }
        self.alpha, self.beta, self.gamma = content_weight, style_weight, tv_weight

    @property
    def layers(self) -> frozenset[str]:
        return frozenset(self.content_targets) | frozenset(self.style_targets)

    def __call__(
        self,
        features: Mapping[str, torch.Tensor],
        image: torch.Tensor,
        grams: Mapping[str, torch.Tensor] | None = None,
    ) -> LossTerms:
        """The terms for `features` of `image`; `grams` holds Gram matrices already taken."""
        grams = grams or {}
        zero = image.new_zeros((), dtype=torch.float32)
        content = sum(
            (self.content_scale[k] * content_loss(features[k], t) for k, t in self.content_targets.items()), zero
        )
        style = sum(
            (
                self.style_scale[k] * style_loss(grams[k] if k in grams else gram(features[k]), t)
                for k, t in self.style_targets.items()
            ),
            zero,
        )
        tv = tv_loss(image) if self.gamma else zero
        total = self.alpha * content + self.beta * style + self.gamma * tv
        return LossTerms(content, style, tv, total)


def _energy(value: torch.Tensor) -> float:
    # A black target has no energy; fall back to 1 rather than divide by zero.
    v = float(value)
    return v if v > 1e-12 else 1.0
