"""VGG-19's layers: names, blocks and channel counts, in one place (no torch here).

Layers are named as in the literature: ``conv4_2`` is the second convolution of
block 4 and ``relu4_2`` its rectified output. Each block after the first starts
behind a 2x2 pooling.
"""

from __future__ import annotations

BLOCKS: tuple[tuple[int, int], ...] = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))  # (block, convolutions)
CHANNELS: dict[int, int] = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}  # output channels of each block

CONV_NAMES: tuple[str, ...] = tuple(f"conv{block}_{index}" for block, count in BLOCKS
                                    for index in range(1, count + 1))
LAYER_NAMES: tuple[str, ...] = tuple(f"{kind}{name[4:]}" for name in CONV_NAMES for kind in ("conv", "relu"))


def block_of(layer: str) -> int:
    return int(layer[4]) if layer.startswith(("conv", "relu")) else int(layer[-3])


def conv_channels(name: str) -> tuple[int, int]:
    """(input, output) channels of the convolution `convB_I`."""
    block = block_of(name)
    first = name.endswith("_1")
    return (3 if name == "conv1_1" else CHANNELS[block - 1 if first else block]), CHANNELS[block]
