"""The writer of finished jobs: on a thread of its own where the device is an accelerator.

Around each job's optimization the worker used to colour-correct, draw its preview and loss
plot, encode its PNGs, write its folder and move its status on the thread that drives the
device, which then waited. Where the device is a GPU, whose computing leaves the CPU free,
those steps run on the publisher's thread while the next job computes: one job at a time,
in the order the jobs finished, so a folder never appears before that of a job that finished
earlier. At most one finished job waits: handing over the next waits until the one before is
written, so a queue of prints never holds more than two jobs' pictures.

Where the device is the CPU, the writing would take the cores the next job computes on: on
this project's 2-core machine, a writer beside the engine made 512 px jobs 5% slower (its
threads wait for each other when one is preempted), one at the lowest priority was no faster
than writing in turn and starves behind any other load. There the worker writes each job
itself, in turn (`threaded=False`), through the same code.

A failed write (a full or unwritable outbox) goes to `on_failure`, which puts the job back in
the queue; it never touches the job computing beside it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("nst.publisher")


class Publisher:
    def __init__(self, on_failure: Callable[[int, Exception], None], *, threaded: bool) -> None:
        self.on_failure = on_failure
        self.threaded = threaded
        self._lock = threading.Condition()
        self._task: tuple[int, Callable[[], None]] | None = None  # handed over, not yet taken
        self._writing: int | None = None  # the job whose folder is being written
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, job_id: int, write: Callable[[], None]) -> None:
        """Write job `job_id`'s ending with `write()`, after every job handed over before it:
        on the writer thread (returns once it has taken it), or here and now."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            self._lock.wait_for(self._idle)
            if not self.threaded:
                self._writing = job_id
            else:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
                    self._thread.start()
                self._task = (job_id, write)
                self._lock.notify_all()
                return
        self._write(job_id, write)

    def held(self) -> tuple[int, ...]:
        """The jobs handed over and not yet written: their claims must still be renewed."""
        with self._lock:
            return tuple(j for j in (self._writing, self._task and self._task[0]) if j is not None)

    def drain(self) -> None:
        """Wait until every job handed over is written."""
        with self._lock:
            self._lock.wait_for(self._idle)

    def close(self) -> None:
        """Write what was handed over, then end the thread."""
        with self._lock:
            self._lock.wait_for(self._idle)
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _idle(self) -> bool:
        return self._task is None and self._writing is None

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._task is not None or self._closed)
                if self._task is None:
                    return
                (job_id, write), self._task = self._task, None
                self._writing = job_id
            self._write(job_id, write)

    def _write(self, job_id: int, write: Callable[[], None]) -> None:
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
