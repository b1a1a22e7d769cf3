"""The heap setting a run computes under: large buffers come from the reusable heap."""

import ctypes

import pytest
import torch

from nst_engine import heap


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def _mmapped_bytes() -> int:
    libc = heap._libc()
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


pytestmark = pytest.mark.skipif(
    heap._libc() is None or not hasattr(heap._libc(), "mallinfo2"), reason="needs glibc 2.33 or later"
)

SIZE = 100 * 2**20


def test_large_buffers_come_from_the_heap_inside_and_from_mmap_outside():
    with heap.reuse_freed_memory():
        before = _mmapped_bytes()
        buffer = torch.empty(SIZE, dtype=torch.uint8)
        assert _mmapped_bytes() - before < SIZE // 2
        del buffer
    before = _mmapped_bytes()
    buffer = torch.empty(SIZE, dtype=torch.uint8)
    assert _mmapped_bytes() - before >= SIZE
    del buffer


def test_nested_blocks_keep_the_setting_until_the_outermost_ends():
    with heap.reuse_freed_memory():
        with heap.reuse_freed_memory():
            pass
        before = _mmapped_bytes()
        buffer = torch.empty(SIZE, dtype=torch.uint8)
        assert _mmapped_bytes() - before < SIZE // 2
        del buffer
    assert heap._depth == 0
