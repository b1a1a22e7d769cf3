"""Choosing the device and the precision a run computes in."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from .params import ParamError

# A device this machine lacks: the job may run elsewhere, or here on what there is.
_OTHER_DEVICE = "set device = \"auto\" (or \"cpu\"), or run the job where that device is"


def pick_device(spec: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then the CPU; otherwise the named device."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ParamError(f"device: unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"device: {spec} asked for, but this machine has no usable CUDA GPU", hint=_OTHER_DEVICE)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ParamError(f"device: {spec} asked for, but this process sees {torch.cuda.device_count()} GPU(s) "
                         "(a worker of [worker] devices sees only its own, as cuda)",
                         hint="set device = \"auto\" or \"cuda\"; the service chooses the GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ParamError("device: mps asked for, but Apple's Metal backend is not available here", hint=_OTHER_DEVICE)
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether the network runs in bfloat16."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return bf16_is_fast(device)


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_bf16_units()
    return False


# oneDNN instruction sets below AVX-512 and below AVX-512 BF16: with ONEDNN_MAX_CPU_ISA capped at
# one of these (to measure the AVX2 class on a larger CPU), the host behaves like that class.
# Below AVX-512 BF16, bf16 convolutions are emulated (a 64 px job took 4.3 s in bf16 against
# 0.4 s in float32).
_ISAS_WITHOUT_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI"}
_ISAS_WITHOUT_BF16 = _ISAS_WITHOUT_AVX512 | {"AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.cache
def _cpu_has_bf16_units() -> bool:
    # Without AVX-512 BF16 or AMX, bf16 convolutions are emulated and slower than fp32.
    if _isa_cap() in _ISAS_WITHOUT_BF16:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


@functools.cache
def cpu_has_avx512() -> bool:
    """Whether the CPU has AVX-512 (oneDNN's Winograd and its fastest float32 kernels), as
    capped by ONEDNN_MAX_CPU_ISA."""
    if _isa_cap() in _ISAS_WITHOUT_AVX512:
        return False
    return "avx512f" in _cpu_flags()


def _isa_cap() -> str:
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(next((line.split(":", 1)[1].split() for line in text.splitlines()
                           if line.startswith("flags")), []))


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
