"""`nst serve`: the watch-folder daemon.

Threads, each with one job:
- main: the worker, one stylization at a time (the network stays warm);
- watchdog's observer: turns file events into hints;
- intake: settles files and queues jobs, on hints and on a periodic rescan;
- liveness: heartbeats to the store and to systemd, only while the worker progresses.

With `[worker] devices`, the main thread instead keeps one worker process per device
(`processes.py`); each of those is this daemon with only the worker's part (`slot`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from sqlalchemy.exc import DBAPIError, OperationalError

from .config import Config, redact_url
from .display import printable
from .pipeline.intake import SWEEP_S, Intake
from .pipeline.outbox import Outbox
from .store import Store

log = logging.getLogger("nst.daemon")

INTAKE_TICK_S = 0.5
POLL_S = 1.0  # [watch] polling: how often the inbox root is scanned


def observe(folder: Path, hint: Callable[[list[Path]], None], *, recursive: bool):
    """A started watchdog observer on `folder` that calls `hint(paths)` for every change: files
    made, written, moved, deleted, and the folder's own. Opening and reading a file are not
    changes: they are left out (in the kernel's watch mask too), for they re-armed the settle
    clock of a painting every job shares each time one was staged, and woke the intake with its
    own reads (30 jobs sharing one painting were taken one a second)."""
    from watchdog import events
    from watchdog.observers import Observer

    class Hints(events.FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            hint([Path(os.fsdecode(p)) for p in (event.src_path, getattr(event, "dest_path", "")) if p])

    changes = [events.FileCreatedEvent, events.FileModifiedEvent, events.FileMovedEvent,
               events.FileDeletedEvent, events.FileClosedEvent, events.DirCreatedEvent,
               events.DirModifiedEvent, events.DirMovedEvent, events.DirDeletedEvent]
    observer = Observer()
    observer.schedule(Hints(), str(folder), recursive=recursive, event_filter=changes)
    observer.daemon = True
    observer.start()
    return observer


class AlreadyRunning(RuntimeError):
    pass


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) how we are; a no-op outside systemd. Never waits: a datagram
    socket's queue holds few messages (net.unix.max_dgram_qlen, 10 by default), and a
    blocking send to a manager that is not reading kept the daemon from stopping; as
    systemd's own client does, a message that does not fit is dropped."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.send(message.encode(), socket.MSG_DONTWAIT)
        return True
    except OSError:
        return False


class OneLineFormatter(logging.Formatter):
    """Control characters in a message (a newline in a dropped file's name) are escaped, so
    nobody who can name a file can forge a line of the service's log; tracebacks stay whole."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def setup_logging(level: int = logging.INFO, *, tag: str = "") -> None:
    """`tag`: what begins each line of a worker process, which shares its daemon's log."""
    # journald adds its own timestamps; under systemd a bare "<level> message" reads best.
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = f"%(levelname)s {tag}%(name)s: %(message)s" if under_journal else \
        f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Alembic's INFO lines (its plugins on import, each migration step) would fill the service log.
    logging.getLogger("alembic").setLevel(logging.WARNING)


class Daemon:
    def __init__(self, config: Config, *, slot: int | None = None, device: str | None = None) -> None:
        """`slot`, `device`: this process is worker `slot` of a daemon's worker processes, on
        `device` (it works only: no inbox, no page; it stops when that daemon goes)."""
        self.config = config
        self.slot, self.slot_device = slot, device
        self.parent_pid = os.getppid()
        self.roles = ("work",) if slot is not None else config.cluster.roles
        self.processes = None  # the worker processes, when this daemon keeps them
        self.run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.stopping = threading.Event()
        self.wake = threading.Event()  # the worker: a job may be waiting
        self.wake_intake = threading.Event()  # the intake: a file changed
        self.store = Store(config.database)
        self.outbox = Outbox(config.outbox, file_mode=config.worker.file_mode, owner=self.run_id)
        self.intake = Intake(config, self.store, self.outbox)
        self._lock_file = None
        self._observer = None
        self._parent_observer = None
        self._watched_inode: int | None = None
        self.worker = None

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self._acquire_lock()
        for folder in (self.config.inbox, self.config.outbox, self.config.state, self.config.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        if self.slot is None:
            self.store.migrate()  # a worker process starts after its daemon has migrated
        self._install_signals()

        from nst_engine.device import describe, pick_device

        from .pipeline.worker import Worker
        from .processes import WorkerProcesses, resolve

        roles = self.roles
        devices = resolve(self.config.worker.devices) if self.slot is None and "work" in roles else []
        if devices:
            self.processes = WorkerProcesses(self.config, devices)
            device, self.has_gpu = f"{len(devices)} worker processes: {', '.join(devices)}", False
        else:
            device_obj = pick_device(self.config.defaults.device if self.slot is None else "auto")
            device = describe(device_obj)
            if self.slot is not None:
                device = f"{self.slot_device} {device.partition(' ')[2]}".strip()
            self.has_gpu = device_obj.type in ("cuda", "mps")
        # On a GPU the next job computes while the last one's folder is written; on the CPU
        # the writing would take the cores the next job computes on (publisher.py).
        self.worker = Worker(self.config, self.store, self.outbox, self.run_id, self.stopping,
                             write_beside=self.has_gpu)
        if "work" in roles and not devices:
            self.worker.warm_up()
        home = str(self.config.state.resolve()) + (f"#worker-{self.slot}" if self.slot is not None else "")
        # A daemon that keeps worker processes works through them: they register as workers.
        registered = tuple(r for r in roles if r != "work") + ("workers",) if devices else roles
        self.store.register_daemon(self.run_id, device=device, roles=registered, home=home)
        earlier = self.store.earlier_runs(run_id=self.run_id, host=socket.gethostname(), home=home)
        for job_id in self.store.requeue_orphans(run_id=self.run_id, host=socket.gethostname(), home=home):
            log.warning("job %d was running when this service stopped: queued again, it resumes", job_id)
        for partial in self.outbox.remove_partials(dead_owners=earlier):
            log.info("removed partial outbox folder %s", partial.name)
        if "watch" in roles:
            self.intake.recover()
            self._start_observer()
        web_server = self._start_web() if self.slot is None else None
        if self.processes is not None:
            self.processes.start()
        threads = [threading.Thread(target=self._liveness_loop, name="liveness", daemon=True)]
        if "watch" in roles:
            threads.append(threading.Thread(target=self._intake_loop, name="intake", daemon=True))
        for t in threads:
            t.start()
        log.info("serving: inbox %s, outbox %s, database %s, device %s, %s observer, roles %s (%.1f s to start)",
                 self.config.inbox, self.config.outbox, redact_url(self.config.database), device,
                 f"polling every {POLL_S:g} s" if self.config.watch.polling else "native", "+".join(roles),
                 time.monotonic() - started)
        sd_notify(f"READY=1\nSTATUS=idle, watching {self.config.inbox}")
        try:
            if self.processes is not None:
                self._supervise_loop()
            elif "work" in roles:
                self._work_loop()
            else:
                self.stopping.wait()
        finally:
            sd_notify("STOPPING=1")
            self._wake_for_stop()
            if self.worker is not None:
                self.worker.close()  # the folders of jobs already computed are written
            if self.processes is not None:
                self.processes.stop()
            self._stop_observer()
            if self._parent_observer is not None:
                self._parent_observer.stop()
            if web_server is not None:
                web_server.shutdown()
            for t in threads:
                t.join(timeout=5)
            try:
                self.store.unregister_daemon(self.run_id)
            except Exception:  # the database may be gone; exiting matters more
                log.warning("could not mark this daemon stopped in the store")
            self.store.dispose()
            log.info("stopped")
        return 0

    def _work_loop(self) -> None:
        blocked_reported = None
        while not self.stopping.is_set():
            blocked = self.outbox.writable()
            if blocked:
                if blocked != blocked_reported:
                    log.error("the outbox cannot be written (%s); jobs wait until it can", blocked)
                    sd_notify(f"STATUS=waiting: outbox not writable ({blocked})")
                    blocked_reported = blocked
                self.stopping.wait(min(5.0, self.config.worker.retry_seconds))
                continue
            if blocked_reported:
                log.warning("the outbox is writable again; going on")
                blocked_reported = None
            pause = self.worker.pause_left()
            if pause > 0:  # a job's results could not be written a moment ago
                self.stopping.wait(pause)
                continue
            try:
                job = self.store.claim_next(run_id=self.run_id, takeover_s=self.config.cluster.takeover_seconds,
                                            **self._claim_filters())
            except (OperationalError, DBAPIError) as e:
                log.error("cannot reach the job store (%s); retrying", e)
                self.stopping.wait(2.0)
                continue
            except Exception:
                log.exception("internal error while claiming a job (a bug in nst; please report it); "
                              "trying again in 10 s")
                self.stopping.wait(10.0)
                continue
            if job is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            jobs = [job] + self._companions(job)
            sd_notify(f"STATUS=running job {job.id} {job.name}" + (f" and {len(jobs) - 1} more" if len(jobs) > 1 else ""))
            for j in jobs:
                log.info("starting job %d %r (attempt %d)%s", j.id, j.name, j.attempts,
                         f" in one batch with job {job.id}" if j is not job else "")
            try:
                self.worker.run_together(jobs)
            except Exception as e:  # the outbox or store failed under the jobs before they ran
                for j in jobs:
                    self.worker.requeue(j.id, e)
            sd_notify("STATUS=idle")

    def _claim_filters(self) -> dict:
        """The jobs this worker may take: their size, whether they need a GPU, their tags."""
        cluster = self.config.cluster
        return {"max_size": cluster.max_size or self.config.limits.max_size, "has_gpu": self.has_gpu,
                "tags": cluster.tags}

    def _companions(self, job) -> list:
        """Jobs to run in one batch with `job` (Worker.companions), claimed now; none where the
        store fails (the job runs alone)."""
        try:
            return self.worker.companions(job, **self._claim_filters())
        except (OperationalError, DBAPIError) as e:
            log.warning("could not look for jobs to batch with job %d (%s); it runs alone", job.id, e)
            return []

    def _supervise_loop(self) -> None:
        """The worker processes' keeper: wakes them when the intake queues a job, restarts one
        that died."""
        while not self.stopping.is_set():
            if self.wake.wait(1.0) and not self.stopping.is_set():
                self.wake.clear()
                self.processes.wake()
            self.processes.check()

    def _start_web(self):
        if not self.config.web.enabled:
            return None
        from .web import serve

        try:
            server = serve(self.config)
        except OSError as e:
            log.error("web page not served: cannot listen on %s:%s (%s)", self.config.web.host,
                      self.config.web.port, e)
            return None
        threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
        log.info("web page at http://%s:%d/", server.host, server.port)
        return server

    def stop(self, *_args) -> None:
        if not self.stopping.is_set():
            log.info("stop requested; finishing the current iteration")
        self._wake_for_stop()

    def _wake_for_stop(self) -> None:
        """Every loop sees the stop now: the worker's and the intake's waits end at once, not
        at their next tick."""
        self.stopping.set()
        self.wake.set()
        self.wake_intake.set()

    def _install_signals(self) -> None:
        """SIGTERM and SIGINT stop this daemon; SIGUSR1 wakes a worker process (its daemon queued
        a job). A thread of their own acts on them, never the handler: Python runs a handler in
        the main thread between any two of its steps, also while that thread holds an Event's
        lock (in `wait` just after its timeout, in `clear`), and a handler setting that Event
        would wait for its own thread forever (an idle worker hung so at its daemon's kill, CI
        of 2026-12-07). The handlers do nothing; the interpreter writes each signal's number to
        a pipe (`set_wakeup_fd`), which the thread reads."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT) + ((signal.SIGUSR1,) if self.slot is not None else ()):
            signal.signal(sig, _noted)  # a handler of ours: the default would end the process
        threading.Thread(target=self._signal_loop, args=(read,), name="signals", daemon=True).start()
        if self.slot is not None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})  # blocked from its start
            _stop_with_parent()

    def _signal_loop(self, read: int) -> None:
        while True:
            for number in os.read(read, 64):
                if number == signal.SIGUSR1:
                    self.wake.set()
                else:
                    self.stop()

    def _acquire_lock(self) -> None:
        # One daemon per state folder on a host; several hosts share a store through the database.
        self.config.state.mkdir(parents=True, exist_ok=True)
        path = self.config.state / ("daemon.lock" if self.slot is None else f"worker-{self.slot}.lock")
        self._lock_file = open(path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.seek(0)
            other = self._lock_file.read().strip() or "?"
            raise AlreadyRunning(f"another nst serve (pid {other}) is using {self.config.state}") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    # -- watching --------------------------------------------------------------------

    def _start_observer(self) -> None:
        if self.config.watch.polling:
            # Polling is the intake's own scan of the inbox root every POLL_S: cheaper than a
            # recursive snapshot of the whole share each second, and with no first snapshot
            # to race a drop against.
            return
        def hint(paths: list[Path]) -> None:
            for path in paths:
                self.intake.hint(path)
            self.wake_intake.set()

        inbox = self.config.inbox
        if self._parent_observer is None and inbox.parent.is_dir():
            self._parent_observer = self._watch_parent()
        if not inbox.is_dir():
            return
        try:
            observer = observe(inbox, hint, recursive=True)
        except OSError as e:
            log.error("cannot watch %s (%s); relying on rescans", inbox, e)
            return
        self._observer = observer
        self._watched_inode = inbox.stat().st_ino

    def _watch_parent(self):
        """The inbox's parent, without recursion: an inbox deleted and made again is watched
        again at once, not at the next rescan."""
        inbox = self.config.inbox

        def hint(paths: list[Path]) -> None:
            if inbox in paths:
                self.wake_intake.set()

        try:
            return observe(inbox.parent, hint, recursive=False)
        except OSError as e:
            log.warning("cannot watch %s for the inbox coming back (%s); rescans will notice",
                        self.config.inbox.parent, e)
            return None

    def _stop_observer(self) -> None:
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout=3)
            except Exception:
                pass
            self._observer = None

    def _check_observer(self) -> None:
        """The inbox deleted and recreated, or remounted: watch the new one."""
        if self.stopping.is_set() or self.config.watch.polling:
            return
        inbox = self.config.inbox
        try:
            inode = inbox.stat().st_ino if inbox.is_dir() else None
        except OSError:
            inode = None
        alive = self._observer is not None and self._observer.is_alive()
        if inode is None:
            if self._observer is not None:
                self._stop_observer()
            return
        if not alive or inode != self._watched_inode:
            self._stop_observer()
            self._start_observer()
            log.info("watching %s again", inbox)

    def _intake_loop(self) -> None:
        last_scan = float("-inf")  # the start-up scan: whatever was dropped while we were down
        last_sweep = time.monotonic()
        rescan = POLL_S if self.config.watch.polling else self.config.watch.rescan_seconds
        while not self.stopping.is_set():
            hinted = self.wake_intake.wait(INTAKE_TICK_S)
            self.wake_intake.clear()
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if now - last_sweep >= SWEEP_S:
                last_sweep = now
                try:
                    self.intake.sweep()
                except Exception:
                    log.exception("publishing ended jobs' folders failed; trying again shortly")
            # Settling files need looking at again until taken, hinted or not.
            if not (hinted or now - last_scan >= rescan or len(self.intake.settle)):
                continue
            last_scan = now
            try:
                self._check_observer()
                if self.intake.scan():
                    self.wake.set()
            except Exception:
                log.exception("inbox scan failed; trying again shortly")
                self.stopping.wait(2.0)

    # -- liveness --------------------------------------------------------------------

    def _liveness_loop(self) -> None:
        """Runs beside the computation, which cannot block it: renews the claim on the running
        job, the daemon's heartbeat, and the systemd watchdog while the worker progresses."""
        beat = self.config.cluster.heartbeat_seconds
        interval = min(_watchdog_interval() or beat, beat)
        stall = self.config.worker.stall_seconds
        last_beat = 0.0
        while not self.stopping.wait(interval):
            if self.slot is not None and os.getppid() != self.parent_pid:
                log.error("the daemon that started this worker is gone; stopping")
                self.stop()
                break
            worker = self.worker
            for job_id in worker.held_jobs():
                try:
                    if not self.store.heartbeat_job(job_id, self.run_id) and job_id in worker.current_jobs:
                        log.error("job %d was taken over by another worker; abandoning it", job_id)
                        worker.lost_claims.add(job_id)
                except Exception as e:
                    log.warning("could not renew the claim on job %d: %s", job_id, e)
            busy = worker.current_job is not None
            progressing = not busy or time.monotonic() - worker.last_progress < stall
            if progressing:
                sd_notify("WATCHDOG=1")
            elif self.slot is not None:
                # systemd watches the daemon, not its workers: a stuck worker ends itself, and
                # the daemon starts it again (its job resumes from the checkpoint).
                log.error("job %s made no progress for %.0f s; this worker exits to be started again",
                          worker.current_job, stall)
                logging.shutdown()
                os._exit(70)
            else:
                log.error("job %s made no progress for %.0f s; withholding the watchdog ping",
                          worker.current_job, stall)
            if time.monotonic() - last_beat >= beat:
                last_beat = time.monotonic()
                try:
                    self.store.heartbeat(self.run_id, current_job=worker.current_job)
                except Exception as e:
                    log.warning("heartbeat failed: %s", e)


def _noted(signum: int, frame) -> None:
    """The Python handler of the daemon's signals: the wake-up pipe carries them (see
    `Daemon._install_signals`)."""


def _stop_with_parent() -> None:
    """Linux: SIGTERM this worker process when its daemon dies, even by SIGKILL (the liveness
    loop's look at the parent covers the moment before this is set, and other systems)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return max(0.5, int(usec) / 1e6 / 2)
