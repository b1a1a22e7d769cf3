"""Worker processes, one per device (`[worker] devices`): the daemon starts them, wakes them
when a job is queued, restarts one that dies and stops them when it stops.

A process per device rather than a thread: at 512 px an iteration is bound by Python and
kernel launches, and two GPUs driven from one interpreter would wait on each other's GIL. Each
worker is a daemon of the cluster in its own right (its own run id, claim, heartbeat and
takeover, its own line in `nst workers`), so nothing about claiming changes; it only watches
no inbox and serves no page. It sees one GPU (CUDA_VISIBLE_DEVICES), or none when it is a CPU
worker, and CPU workers share the cores between them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from .config import Config

log = logging.getLogger("nst.daemon")

# A worker that dies sooner than this after its start is restarted after a growing pause
# (1, 2, 4 ... 60 s), so a worker that cannot start does not spin.
STEADY_S = 60.0
MAX_PAUSE_S = 60.0


def resolve(devices: tuple[str, ...]) -> list[str]:
    """The devices to start a worker process on; empty: one worker inside the daemon. "all" is
    every GPU when there are two or more (one GPU, or none, needs no separate process)."""
    if devices != ("all",):
        return list(devices)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{index}" for index in range(count)] if count >= 2 else []


def environment(device: str, devices: list[str]) -> dict[str, str]:
    """A worker's environment: its one GPU, its share of the cores, and no systemd socket (the
    daemon speaks to systemd for all of them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        cpu_workers = sum(1 for d in devices if not d.startswith("cuda"))
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // cpu_workers))
    return env


@dataclass
class _Slot:
    device: str
    process: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


class WorkerProcesses:
    """The daemon's worker processes, slot by slot."""

    def __init__(self, config: Config, devices: list[str]) -> None:
        self.config = config
        self.devices = devices
        self.slots = [_Slot(device) for device in devices]

    def start(self) -> None:
        for index in range(len(self.slots)):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        slot = self.slots[index]
        config = ["--config", str(self.config.path)] if self.config.path else []
        # The wake-up signal is blocked until the worker has its handler (the worker unblocks
        # it): SIGUSR1's default action would end a worker still importing torch.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            slot.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", *config, "serve", "--worker-slot", str(index),
                 "--worker-device", slot.device],
                env=environment(slot.device, self.devices),
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        slot.started = time.monotonic()
        log.info("worker %d on %s started (pid %d)", index, slot.device, slot.process.pid)

    def check(self) -> None:
        """Restart a worker that exited, after a pause that grows while it keeps dying young."""
        now = time.monotonic()
        for index, slot in enumerate(self.slots):
            if slot.process is None:
                if now >= slot.restart_at:
                    self._spawn(index)
                continue
            code = slot.process.poll()
            if code is None:
                continue
            lived = now - slot.started
            slot.failures = 0 if lived >= STEADY_S else slot.failures + 1
            pause = min(MAX_PAUSE_S, 2.0 ** slot.failures - 1)
            log.error("worker %d on %s exited (%s) after %.0f s; starting it again%s", index, slot.device,
                      f"signal {-code}" if code < 0 else f"code {code}", lived,
                      f" in {pause:.0f} s" if pause else "")
            slot.process, slot.restart_at = None, now + pause
            if not pause:
                self._spawn(index)

    def wake(self) -> None:
        """A job was queued: every idle worker looks now, not at its next poll."""
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                try:
                    slot.process.send_signal(signal.SIGUSR1)
                except OSError:
                    pass

    def stop(self) -> None:
        """SIGTERM to every worker (each checkpoints its job), then wait for them all."""
        running = [s.process for s in self.slots if s.process is not None and s.process.poll() is None]
        for process in running:
            try:
                process.send_signal(signal.SIGTERM)
            except OSError:
                pass
        for process in running:
            process.wait()
