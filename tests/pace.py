"""How fast this machine runs now, measured once a test session, so that the few ceilings the
tests need follow the machine instead of numbers tuned on one CPU.

The suite was timed on an AVX-512 BF16 CPU; on one with AVX2 only every stylization runs in
float32, two to three times slower, and other work beside the tests slows both again. A
ceiling written for the first machine is `ceiling(seconds)` here: scaled by how long a small
stylization takes now against how long it took there. Waits for the daemon do not rely on it
alone: they fail only when nothing moved for that long (see `servicekit.ServiceDir.wait_for`).
"""

from __future__ import annotations

import functools
import os
import time

# One calibration (a 64 px stylization, 4 iterations, after a warm-up run) on the AVX-512 BF16
# machine the suite was timed on, idle: 0.13-0.15 s (2026-12-02, bf16). The AVX2 class took
# about 2.5 times that (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2, float32).
REFERENCE_S = 0.15


@functools.cache
def factor() -> float:
    """How many times slower than the reference this machine runs now (at least 1).
    NST_TEST_PACE overrides it (e.g. to try a slow machine's ceilings on a fast one)."""
    if os.environ.get("NST_TEST_PACE"):
        return max(1.0, float(os.environ["NST_TEST_PACE"]))
    return max(1.0, measured() / REFERENCE_S)


@functools.cache
def measured(runs: int = 3) -> float:
    """Seconds for one small stylization with the engine's defaults (precision "auto")."""
    from nst_engine import Params, stylize
    from servicekit import small_pair

    content, style = small_pair(64)
    params = Params(size=64, iterations=4, init_noise=0.0)
    stylize(content, [style], params=params)  # weights, network, first-call costs
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stylize(content, [style], params=params)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def ceiling(seconds: float) -> float:
    """A ceiling written for the reference machine, on this one."""
    return seconds * factor()


def cpu_flags() -> str:
    """The CPU flags that decide the engine's speed, for the report header."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    found = " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA")  # another class emulated (README: Tests)
    return f"{found} (capped: ONEDNN_MAX_CPU_ISA={capped})" if capped else found
