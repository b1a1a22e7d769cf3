"""3x3 convolutions as Winograd F(4x4, 3x3), for float32 on CPUs without AVX-512.

oneDNN offers Winograd convolutions only with AVX-512; on the AVX2 class its direct float32
convolution is the iteration's floor (docs/benchmarks.md). F(4x4, 3x3) computes each 4x4
output tile from a 6x6 input tile with 36 products per channel pair instead of 144: from
256 channels on it is 1.6-3.4x faster there, forward and input gradient; at 64-128 channels
its transforms are memory-bound and it loses, so the network uses it per layer
(`worth_it`). Its error, about 1e-5 of the largest value, is far below bfloat16's.

The weights are frozen (style transfer optimizes the image), so only the input gradient is
computed: itself a Winograd convolution with the kernel flipped and transposed.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import device as _device

_M, _A = 4, 6  # output tile edge, input tile edge (m + 3 - 1)
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
# The input and output transforms as float32 tensors, made once (`worth_it`: float32 only).
_BT_F32 = torch.tensor(_BT, dtype=torch.float32)
_AT_F32 = torch.tensor(_AT, dtype=torch.float32)

# Measured on an AMD EPYC with AVX2 (bench/winograd.py): 1.6-3.4x from block 3 on; at conv2_2
# (128 channels, half size) 1.09x, within noise, for transients 4x those of block 3.
MIN_IN_CHANNELS = 128
MIN_OUT_CHANNELS = 256
# Below about a dozen output tiles a pass (an image's deepest layers at a coarse scale, a small
# job) the 36 weight tiles, four times the kernel's bytes, are read for too little work and the
# direct convolution is faster: forward and input gradient on an AMD EPYC with AVX2, ms, direct
# / Winograd, conv4_2 (512 channels) at 4, 9, 12, 30 tiles 4.9/7.0, 6.8/9.0, 11.6/9.1,
# 26.5/14.3; conv5_1 at 1, 2, 4, 9, 12 tiles 2.0/3.8, 2.5/5.5, 4.4/6.1, 6.9/8.7, 12.6/9.6.
MIN_TILES = 12


def worth_it(device: torch.device, dtype: torch.dtype, in_channels: int, out_channels: int) -> bool:
    """Whether a 3x3 convolution with these channels runs as Winograd here (a fixed rule, so
    the same job gives the same picture on the same class of machine)."""
    return (device.type == "cpu" and dtype == torch.float32 and not _device.cpu_has_avx512()
            and in_channels >= MIN_IN_CHANNELS and out_channels >= MIN_OUT_CHANNELS)


def pays(x: torch.Tensor) -> bool:
    """Whether a Winograd layer's input `x` (N, C, H, W) is large enough for it (`MIN_TILES`):
    a fixed rule of the shape, so the same job gives the same picture."""
    n, _, h, w = x.shape
    return n * -(-h // _M) * -(-w // _M) >= MIN_TILES


def used(device: torch.device, bf16: bool) -> bool:
    """Whether a network on `device` in this precision runs any convolution as Winograd (the
    memory plan counts its weight tiles and transients)."""
    return worth_it(device, torch.bfloat16 if bf16 else torch.float32, MIN_IN_CHANNELS, MIN_OUT_CHANNELS)


def transform_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel (out, in, 3, 3) as the forward's and the input gradient's tile weights,
    each (36, in, out) and (36, out, in), made once per network: G w G' for every channel
    pair as one product with G (x) G (float32: within 3e-8 of float64, far below the
    method's own 1e-5, and a quarter of the time: each daemon builds its network)."""
    g = torch.tensor(_G, dtype=torch.float32)
    g2 = torch.kron(g, g)  # (36, 9): row 6i + j holds g[i, k] g[j, l] at 3k + l

    def tiles(w: torch.Tensor) -> torch.Tensor:
        out_channels, in_channels = w.shape[:2]
        # The kernels laid out (9, in, out) first, so the product comes out in the tiles' layout
        # (36, in, out), contiguous as the products need it: transposing the kernels is a
        # quarter of the copy that transposing the tiles was (twelve layers 0.56-0.84 ->
        # 0.30-0.38 s on an AMD EPYC with AVX2, at every daemon start; bit for bit).
        kernels = w.float().permute(2, 3, 1, 0).reshape(9, in_channels * out_channels)
        return (g2 @ kernels).reshape(_A * _A, in_channels, out_channels)

    return tiles(weight), tiles(weight.flip(2, 3).transpose(0, 1))


def conv3x3(x: torch.Tensor, tiles: torch.Tensor, grad_tiles: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution with padding 1 of `x` (N, C, H, W), differentiable in `x`."""
    y = _Conv.apply(x.permute(0, 2, 3, 1), tiles, grad_tiles, bias)
    return y.permute(0, 3, 1, 2)  # channels-last, as the network keeps its activations


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tiles, grad_tiles, bias):  # type: ignore[override]
        ctx.grad_tiles = grad_tiles
        return (_winograd(x.contiguous(), tiles) + bias).contiguous()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return _winograd(grad.contiguous(), ctx.grad_tiles), None, None, None


def _winograd(x: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
    """x (N, H, W, C) contiguous, tiles (36, C, K) -> (N, H, W, K) without bias."""
    bt, at = _BT_F32.to(x.dtype), _AT_F32.to(x.dtype)
    m, a = _M, _A
    n, h, w, c = x.shape
    th, tw = -(-h // m), -(-w // m)
    xp = F.pad(x, (0, 0, 1, tw * m + 1 - w, 1, th * m + 1 - h))
    # Input transform B^T d B, one axis at a time, the tile's index in front.
    d = torch.stack([xp[:, k:k + m * th:m] for k in range(a)])          # (a, N, th, W', C)
    d = (bt @ d.view(a, -1)).view(d.shape)
    e = torch.stack([d[:, :, :, k:k + m * tw:m] for k in range(a)], 1)  # (a, a, N, th, tw, C)
    v = (bt @ e.view(a, a, -1)).view(a * a, n * th * tw, c)
    product = torch.bmm(v, tiles)                                        # (36, tiles, K)
    k = tiles.shape[2]
    # Output transform A^T M A.
    y = (at @ product.view(a, -1)).view(m, a, -1)
    y = (at @ y).view(m, m, n, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, k)
    return y[:, :h, :w]
