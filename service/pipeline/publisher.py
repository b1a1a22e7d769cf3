"""The writer thread: a finished job's outbox folder is written while the next job computes.

Around each job's optimization the worker used to draw its preview and loss plot, encode its
PNGs, write its folder and move its status on the thread that drives the device, which then
waited. Those steps now run here, one job at a time and in the order the jobs finished, so a
folder never appears before that of a job that finished earlier. At most one finished job
waits: handing over the next waits until the one before is written, so a queue of prints
never holds more than two jobs' pictures in memory.

A failed write (a full or unwritable outbox) goes to `on_failure`, which puts the job back in
the queue; it never touches the job computing beside it.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

log = logging.getLogger("nst.publisher")


class Publisher:
    def __init__(self, on_failure: Callable[[int, Exception], None]) -> None:
        self.on_failure = on_failure
        self._lock = threading.Condition()
        self._task: tuple[int, Callable[[], None]] | None = None  # handed over, not yet taken
        self._writing: int | None = None  # the job whose folder is being written
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, job_id: int, write: Callable[[], None]) -> None:
        """Write job `job_id`'s ending with `write()` on the writer thread, after every job
        handed over before it. Returns once the writer has taken it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
                self._thread.start()
            self._lock.wait_for(lambda: self._task is None and self._writing is None)
            self._task = (job_id, write)
            self._lock.notify_all()

    def held(self) -> tuple[int, ...]:
        """The jobs handed over and not yet written: their claims must still be renewed."""
        with self._lock:
            return tuple(j for j in (self._writing, self._task and self._task[0]) if j is not None)

    def drain(self) -> None:
        """Wait until every job handed over is written."""
        with self._lock:
            self._lock.wait_for(lambda: self._task is None and self._writing is None)

    def close(self) -> None:
        """Write what was handed over, then end the thread."""
        with self._lock:
            self._lock.wait_for(lambda: self._task is None and self._writing is None)
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        _yield_to_the_device_thread()
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._task is not None or self._closed)
                if self._task is None:
                    return
                (job_id, write), self._task = self._task, None
                self._writing = job_id
            try:
                write()
            except Exception as e:  # the outbox or the store failed under the write
                try:
                    self.on_failure(job_id, e)
                except Exception:
                    log.exception("job %d: could not handle its failed write", job_id)
            finally:
                with self._lock:
                    self._writing = None
                    self._lock.notify_all()


# The writer's nice value above the process's: where the CPU has no core to spare (this
# project's 2-core machine, where the engine's threads use both), the thread that drives the
# device goes first and the writing fills the gaps.
WRITER_NICENESS = 10


def _yield_to_the_device_thread() -> None:
    """Lower this thread's scheduling priority (Linux: a thread is a task with its own nice
    value; raising it needs no privilege). Elsewhere it runs at the process's."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WRITER_NICENESS))
    except (AttributeError, OSError):
        pass
