"""VGG-19 with named layers, frozen, cut after the deepest layer a run needs."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from . import winograd
from .topology import CONV_NAMES, LAYER_NAMES, conv_channels
from .weights import Weights


class VGG19(nn.Module):
    """The 16 convolutions of VGG-19 (no classifier), evaluated up to `last_layer`.

    The convolutions run in `dtype`; features come out in it.
    Layers are named as in the literature: ``conv4_2`` is the second convolution
    of block 4 and ``relu4_2`` its rectified output. Pooling between blocks is
    max (the original) or average (Gatys et al. found it gives smoother images).
    The convolutions named in `winograd_layers` run as Winograd F(4x4, 3x3) (float32 on
    CPUs without AVX-512, where it is faster: `winograd.worth_it`), on inputs large enough
    for it (`winograd.pays`).
    """

    def __init__(
        self,
        weights: Weights,
        *,
        last_layer: str = "relu5_4",
        pooling: str = "max",
        dtype: torch.dtype = torch.float32,
        winograd_layers: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.preprocess_spec = weights.preprocess
        self.last_layer = last_layer
        self.pooling = pooling
        self.convs = nn.ModuleDict()
        last_conv = last_layer.replace("relu", "conv")
        for name in CONV_NAMES:
            in_channels, out_channels = conv_channels(name)
            # Stored in the compute precision (bf16 or float32), so no pass re-casts them.
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, dtype=dtype)
            conv.weight.data.copy_(weights.tensors[f"{name}.weight"])
            conv.bias.data.copy_(weights.tensors[f"{name}.bias"])
            self.convs[name] = conv
            if name in winograd_layers:
                tiles, grad_tiles = winograd.transform_weight(conv.weight.data.float())
                self.register_buffer(f"wino_{name}", tiles, persistent=False)
                self.register_buffer(f"wino_grad_{name}", grad_tiles, persistent=False)
            if name == last_conv:
                break
        self.winograd_layers = frozenset(winograd_layers) & set(self.convs)
        self.requires_grad_(False)
        self.eval()
        p = weights.preprocess
        self.register_buffer("mean", torch.tensor(p.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(p.std).view(1, 3, 1, 1), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.convs["conv1_1"].weight.dtype

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 to the network's input (for Caffe: BGR, 0..255, mean removed)."""
        x = rgb.flip(1) if self.preprocess_spec.bgr else rgb
        return (x * self.preprocess_spec.scale - self.mean) / self.std

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        """The exact inverse of `preprocess`."""
        x = (x * self.std + self.mean) / self.preprocess_spec.scale
        return x.flip(1) if self.preprocess_spec.bgr else x

    def forward(
        self,
        rgb: torch.Tensor,
        layers: set[str] | frozenset[str],
        *,
        tap: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
        exact: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Features of `rgb` (RGB 0..1) at the named layers; stops at the deepest one asked.

        `tap(name, features)`, if given, sees each named layer's output and returns
        the tensor the network goes on with (the same values): a loss can hook its
        own backward into the network's there. `exact` runs every convolution directly, the
        `winograd_layers` too (their round-off is about 1e-5 of the largest value, the direct
        one's 1e-7).
        """
        def capture(name: str, x: torch.Tensor) -> torch.Tensor:
            if tap is not None:
                x = tap(name, x)
            out[name] = x
            return x

        deepest = max(layers, key=LAYER_NAMES.index)
        out: dict[str, torch.Tensor] = {}
        # Preprocessing stays float32: the mean subtraction is exact there.
        x = self.preprocess(rgb).to(self.dtype)
        names = list(self.convs)
        pool_next = False
        for i, (name, conv) in enumerate(self.convs.items()):
            if pool_next:
                x = F.max_pool2d(x, 2) if self.pooling == "max" else F.avg_pool2d(x, 2)
            if name in self.winograd_layers and not exact and winograd.pays(x):
                x = winograd.conv3x3(x, getattr(self, f"wino_{name}"), getattr(self, f"wino_grad_{name}"), conv.bias)
            else:
                x = conv(x)
            if name in layers:
                x = capture(name, x)
            relu_name = "relu" + name[4:]
            last = deepest in (name, relu_name) or i + 1 == len(names)
            pool_next = not last and names[i + 1][4] != name[4]  # the next layer opens a block
            if pool_next and self.pooling == "max" and relu_name not in layers:
                # ReLU and max pooling commute: rectifying the pooled quarter is the same
                # and four times cheaper, forward and backward.
                x = F.relu(F.max_pool2d(x, 2), inplace=True)
                pool_next = False
            else:
                # In place unless the caller wants the convolution's own output: saves a
                # full-size buffer per layer, and autograd needs only the rectified result.
                x = F.relu(x, inplace=name not in layers)
                if relu_name in layers:
                    x = capture(relu_name, x)
            if last:
                break
        missing = set(layers) - set(out)
        if missing:
            raise ValueError(f"layers {sorted(missing)} are beyond this network's last layer {self.last_layer}")
        return out
