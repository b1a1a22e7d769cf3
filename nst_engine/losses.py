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

Features may arrive in bfloat16 (autocast); every reduction here runs in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch


class _GramProduct(torch.autograd.Function):
    """X^T X with a one-product backward: d(X^T X) = X (dG + dG^T).

    Autograd's own backward of bmm(X^T, X) computes two products and adds them;
    at relu1_1 of a 1024 px image X has 64 columns and 800,000 rows, so this
    halves the most expensive part of the style loss.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.bmm(x.transpose(1, 2), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.bmm(x, grad + grad.transpose(1, 2))


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalized by channels times positions: (B, C, H, W) -> (B, C, C), float32."""
    b, c, h, w = features.shape
    # As a (positions x channels) matrix: free for channels-last features, one copy otherwise.
    x = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    return _GramProduct.apply(x) / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 mean (F - P)^2: the paper's content loss divided by N*M."""
    return 0.5 * (features.float() - target.float()).pow(2).mean()


def style_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """1/4 sum (G - A)^2 of size-normalized Gram matrices: the paper's per-layer term."""
    return 0.25 * (gram_matrix - target_gram).pow(2).sum()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (image in 0..1)."""
    x = image.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    return dx + dy


@dataclass(frozen=True)
class LossTerms:
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        values = torch.stack([self.total, self.content, self.style, self.tv]).detach().cpu().tolist()
        return dict(zip(("total", "content", "style", "tv"), values))


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
        self.content_targets = {k: v.float() for k, v in content_targets.items()}
        self.style_targets = {k: v.float() for k, v in style_targets.items()}
        # Layer weights sum to 1 so the style weight means the same for any layer count;
        # each is divided by its target's energy (see the module's note on normalization).
        total = sum(style_layer_weights) or 1.0
        self.content_scale = {k: 1.0 / _energy(t.pow(2).mean()) for k, t in self.content_targets.items()}
        self.style_scale = {
            k: w / total / _energy(t.pow(2).sum()) for k, w, t in zip(
                self.style_targets, style_layer_weights, self.style_targets.values()
            )
        }
        self.alpha, self.beta, self.gamma = content_weight, style_weight, tv_weight

    @property
    def layers(self) -> frozenset[str]:
        return frozenset(self.content_targets) | frozenset(self.style_targets)

    def __call__(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        zero = image.new_zeros((), dtype=torch.float32)
        content = sum(
            (self.content_scale[k] * content_loss(features[k], t) for k, t in self.content_targets.items()), zero
        )
        style = sum(
            (self.style_scale[k] * style_loss(gram(features[k]), t) for k, t in self.style_targets.items()), zero
        )
        tv = tv_loss(image) if self.gamma else zero
        total = self.alpha * content + self.beta * style + self.gamma * tv
        return LossTerms(content, style, tv, total)


def _energy(value: torch.Tensor) -> float:
    # A black target has no energy; fall back to 1 rather than divide by zero.
    v = float(value)
    return v if v > 1e-12 else 1.0
