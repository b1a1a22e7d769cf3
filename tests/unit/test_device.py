"""Which precision "auto" picks on the CPU."""

import torch

from nst_engine import device


def test_auto_picks_float32_when_onednn_is_capped_below_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes an AVX-512 BF16 machine behave like the AVX2 class: bf16
    is then emulated, so "auto" must pick float32 as it does on that class."""
    cpu = torch.device("cpu")
    try:
        for isa in ("AVX2", "avx512_core"):
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
            device._cpu_has_bf16_units.cache_clear()
            assert device.use_bf16("auto", cpu) is False, isa
            assert device.use_bf16("bf16", cpu) is True  # asked for, it is given
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
        device._cpu_has_bf16_units.cache_clear()
        flags = open("/proc/cpuinfo").read()
        assert device.use_bf16("auto", cpu) is ("avx512_bf16" in flags or "amx_bf16" in flags)
    finally:
        device._cpu_has_bf16_units.cache_clear()
