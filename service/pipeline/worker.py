"""Running one claimed job: inputs from the archive, the engine, the outbox folder, the status."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from sqlalchemy.exc import SQLAlchemyError

from nst_engine import (ImageError, Params, Progress, Request, Result, RunState, WeightsError, load_image,
                        preload, stylize_many)
from nst_engine.device import describe, pick_device
from nst_engine.errors import advice
from nst_engine.heap import release as release_heap
from nst_engine.params import ParamError
from nst_engine.planning import batch_room
from nst_engine.progress import outputs_label

from .. import __version__
from ..config import Config
from ..display import colour_lines, face_guard_lines
from ..files import image_bytes, write_bytes_atomic
from ..models import Job
from ..status import JobProgress, JobStatus
from ..store import Store, StoreError
from .drawing import loss_plot, preview
from .ending import Ending, Endings
from .inbox import safe_component
from .outbox import JobFolder, Outbox
from .publisher import Publisher

log = logging.getLogger("nst.worker")

PROGRESS_EVERY_S = 1.0
LOG_EVERY_ITERATIONS = 10
PREVIEW_EVERY_S = 3.0  # the live image and loss curve
LIVE_EDGE = 512  # px, the live image's long edge
LIVE_POINTS = 500  # at most this many points of the live loss curve
ETA_OWN_RATE_AFTER = 0.25  # share of the work after which a job's own measured rate sets its ETA


class JobLog:
    """The job's own log file: timestamped lines, flushed as written (`nst logs --follow`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def write(self, message: str) -> None:
        if self._file.closed:  # a line after the ending's writer closed it (an error writing it)
            self._file = open(self.path, "a", encoding="utf-8")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        for line in message.splitlines() or [""]:
            self._file.write(f"{stamp} {line}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()  # again is a no-op: the writer of the job's ending closes it first


# What is left of a job once it is computed: its ending to write, given the job's log (None:
# nothing to write, the job went back to the queue or to another worker).
Write = Callable[[JobLog], None] | None


class Worker:
    """Runs jobs one at a time for one daemon start (`run_id`). `write_beside`: each finished
    job's folder is written by the publisher's thread while the next job computes (where the
    device is an accelerator; see publisher.py), else by the worker in turn."""

    def __init__(self, config: Config, store: Store, outbox: Outbox, run_id: str,
                 stopping: threading.Event, *, write_beside: bool = False) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.run_id = run_id
        self.stopping = stopping
        self.current_jobs: tuple[int, ...] = ()  # the jobs computing now (several: one batch)
        self.last_progress = time.monotonic()  # the liveness thread reads this
        self.lost_claims: set[int] = set()  # set by the liveness thread: jobs another worker took over
        self.endings = Endings(config, store, outbox)
        self.publisher = Publisher(on_failure=self.requeue, threaded=write_beside)
        self._resume_at = 0.0  # after a failed write, no claim before this (monotonic)

    def warm_up(self) -> None:
        """Before the first job: the network for the default parameters, the colour and drawing
        code. A first import inside a job would hold the interpreter for seconds, and the
        liveness thread with it: long enough, on a loaded machine, for another worker to
        think this one dead and take its job over."""
        started = time.perf_counter()
        try:
            preload(self.config.defaults)
        except (WeightsError, ValueError) as e:
            log.error("could not load the network for the default parameters (%s); jobs will say why", e)
        loss_plot([{"step": 1, "total": 1.0, "content": 1.0, "style": 1.0, "tv": 1.0}], title="warm-up")
        log.info("network and helpers loaded in %.1f s", time.perf_counter() - started)

    @property
    def current_job(self) -> int | None:
        """The job computing now (a batch's first), or None between jobs."""
        return self.current_jobs[0] if self.current_jobs else None

    def run(self, job: Job) -> JobStatus:
        """Run a job this daemon has claimed, to whatever end; never raises for a job's fault.
        Returns once the job is computed and its ending written, or handed to the publisher's
        thread: the status it ends in once written (`drain` waits for that)."""
        return self.run_together([job])[0]

    def companions(self, job: Job, **filters: Any) -> list[Job]:
        """Queued jobs to optimize in one batch with `job`, just claimed, claimed for this worker
        too: those of its estimate's `together` key (the engine's `planning.together_key`: the
        same network, layers, sizes and iterations), as many outputs as the batch has room for
        (`planning.batch_room`, within `[worker] batch`). None where `job` runs alone: `batch =
        1`, a job resuming a checkpoint, one that shares no batch.
        `filters`: `Store.claim_next`'s max_size, has_gpu and tags."""
        estimate = job.record.get("estimate") or {}
        key, cap = estimate.get("together"), self.config.worker.batch_cap()
        if key is None or cap == 1 or not estimate.get("scales") or self.config.checkpoint(job.id).is_file():
            return []
        try:
            params = Params.from_mapping(job.params, limits=self.config.limits)
            size = tuple(estimate["scales"][-1]["size"])
            room = batch_room(params, size, memory_budget=self.config.worker.memory_budget(), batch=cap)
        except (ParamError, ValueError, KeyError, TypeError):  # the job itself will say what is wrong
            return []
        if room <= params.outputs:
            return []
        return self.store.claim_together(run_id=self.run_id, key=key, pictures=room - params.outputs,
                                         priority=job.priority, **filters)

    def run_together(self, jobs: list[Job]) -> list[JobStatus]:
        """Run jobs this daemon has claimed (`companions`) as one batch where the engine can
        (`nst_engine.stylize_many`), each to its own end: its own log, progress, cancel,
        checkpoint and ending; one job's fault fails that job alone. Returns each job's status,
        as `run`'s."""
        self.current_jobs = tuple(job.id for job in jobs)
        self.lost_claims = set()
        self.last_progress = time.monotonic()
        logs = {job.id: JobLog(self.config.live_log(job.id)) for job in jobs}
        handed: set[int] = set()
        try:
            endings: dict[int, tuple[JobStatus, Write]] = {}
            runs: list[_JobRun] = []
            decoding = self._decoding(jobs)
            for job in jobs:
                early = self._before(job, logs[job.id], decoding.get(job.id))
                if isinstance(early, _JobRun):
                    runs.append(early)
                else:
                    endings[job.id] = early
            if runs:
                results = stylize_many([r.request for r in runs], memory_budget=self.config.worker.memory_budget(),
                                       batch=self.config.worker.batch_cap())
                for r, result in zip(runs, results):
                    endings[r.job.id] = self._after(r, result)
            for job in jobs:
                _, write = endings[job.id]
                if write is not None:
                    # Waits while the job before is still written; the claim is renewed meanwhile.
                    joblog = logs[job.id]
                    self.publisher.submit(job.id, lambda job=job, write=write, joblog=joblog:
                                          self._write(job, write, joblog))
                    handed.add(job.id)
            return [endings[job.id][0] for job in jobs]
        finally:
            for job_id, joblog in logs.items():
                if job_id not in handed:
                    joblog.close()
            self.current_jobs = ()
            release_heap()  # an idle service does not sit on the last job's pictures

    def held_jobs(self) -> tuple[int, ...]:
        """The jobs this worker holds a claim on: the one computing and those being written."""
        computing = self.current_jobs
        return computing + tuple(j for j in self.publisher.held() if j not in computing)

    def drain(self) -> None:
        """Wait until every ending handed over is written."""
        self.publisher.drain()

    def close(self) -> None:
        """Write what was handed over, then stop the publisher thread (the daemon's stop)."""
        self.publisher.close()

    def pause_left(self) -> float:
        """Seconds to wait before the next claim: a pause after a job's results could not be written."""
        return max(0.0, self._resume_at - time.monotonic())

    def requeue(self, job_id: int, error: Exception) -> None:
        """A job whose results could not be written (the outbox or the store failed under it:
        a full disk, permissions) goes back to the queue with its inputs and runs again after a
        pause, which this worker keeps before its next claim."""
        retry = self.config.worker.retry_seconds
        log.error("job %d could not be finished (%s); it waits %g s and runs again", job_id, error, retry)
        self._resume_at = time.monotonic() + retry
        try:
            self.store.transition(job_id, JobStatus.QUEUED, run_id=self.run_id,
                                  error=f"waiting to run again: could not write its results ({error})")
        except Exception:
            log.exception("could not re-queue job %d", job_id)

    def _decoding(self, jobs: list[Job]) -> dict[int, Future]:
        """A batch's images decoded side by side, each job's in a thread of its own (the decoders
        let go of the interpreter): the device waits for them. A job alone decodes in turn."""
        if len(jobs) < 2:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1), thread_name_prefix="decode")
        try:
            return {job.id: pool.submit(self._inputs, job) for job in jobs}
        finally:
            pool.shutdown(wait=False)  # each decoding runs on; its job waits for its own

    def _before(self, job: Job, joblog: JobLog,
                decoded: Future | None = None) -> "_JobRun | tuple[JobStatus, Write]":
        """A job's request to the engine, or its ending where it has one already: published by an
        earlier attempt, started too often, or inputs or parameters at fault. `decoded`: its
        inputs being read (`_decoding`), else they are read here."""
        published = self.endings.published(job, run_id=self.run_id)
        if published is not None:
            return published.status, None
        max_attempts = self.config.worker.max_attempts
        if job.attempts > max_attempts:
            return self._fail(job, joblog, f"the service stopped during this job {job.attempts - 1} times; "
                              f"giving up (max_attempts = {max_attempts} in config.toml)",
                              "the job may be too large for this machine: lower size, or raise max_attempts")
        started = time.perf_counter()
        joblog.write(f"job {job.id} {job.name!r} attempt {job.attempts} on {os.uname().nodename}, "
                     f"nst {__version__}, run {self.run_id}")
        try:
            params, content, styles, init = decoded.result() if decoded is not None else self._inputs(job)
        except (ImageError, ParamError, ValueError, OSError) as e:
            return self._fail(job, joblog, str(e), advice(e))
        joblog.write("parameters: " + json.dumps(params.to_dict(), sort_keys=True))
        for line in colour_lines(content, styles, init):
            joblog.write(line)
        resume = self._load_checkpoint(job.id, joblog, params.outputs)
        device = describe(pick_device(params.device))
        reporter = _Reporter(self, job, joblog, params, rate=self.store.device_rate(device))
        request = Request(content, styles, params, init, progress=reporter, should_stop=reporter.should_stop,
                          resume=resume)
        return _JobRun(job, joblog, params, request, reporter, started)

    def _after(self, r: "_JobRun", result: Result | Exception) -> tuple[JobStatus, Write]:
        """What a job's run from the engine comes to: its ending, a checkpoint and the queue
        again (a shutdown), or nothing (another worker took it over)."""
        job, joblog, params, reporter = r.job, r.joblog, r.params, r.reporter
        if isinstance(result, (ImageError, WeightsError, ValueError)):
            return self._fail(job, joblog, str(result), advice(result))
        if isinstance(result, StoreError):
            joblog.write(f"stopped: {result}")
            log.error("job %d: %s", job.id, result)
            return JobStatus.QUEUED, None
        if isinstance(result, Exception):  # an internal bug: the job fails loudly, the daemon lives on
            joblog.write("internal error:\n" + "".join(traceback.format_exception(result)))
            log.error("job %d: internal error", job.id, exc_info=result)
            return self._fail(job, joblog, f"internal error: {type(result).__name__}: {result}",
                              "this is a bug in nst; the traceback is in job.log; please report it")
        if job.id in self.lost_claims:
            joblog.write("another worker took this job over; leaving it to that worker")
            return JobStatus.RUNNING, None
        if result.stopped and not reporter.cancelled:
            # Shutting down: keep the place, give the job back to the queue.
            self._save_checkpoint(job.id, result.state)
            joblog.write(f"stopping for shutdown at step {result.state.iteration} of scale "
                         f"{result.state.scale + 1}; checkpoint saved, the job will resume")
            self.store.transition(job.id, JobStatus.QUEUED, run_id=self.run_id)
            return JobStatus.QUEUED, None
        status = JobStatus.CANCELLED if reporter.cancelled else JobStatus.DONE
        elapsed = time.perf_counter() - r.started
        if r.request.resume is not None and r.request.resume.complete(params.outputs):
            ending = "rebuilt the kept results"
        elif reporter.cancelled:
            ending = "cancelled; keeping the latest image as a partial result"
        else:
            ending = "finished"
        together = result.record["memory"].get("jobs", 1)
        shared = f" (in one batch with {together - 1} other job{'s' if together > 2 else ''})" if together > 1 else ""
        joblog.write(f"{ending} in {elapsed:.1f} s{shared}; final losses {json.dumps(result.record['final_losses'])}")
        for line in face_guard_lines(result.record):
            joblog.write(line)
        content, styles = r.request.content, r.request.styles
        return status, lambda log_: self._publish(job, log_, params, content, styles, result, status)

    def _inputs(self, job: Job):
        """The job's parameters and its pictures (`_images`)."""
        params = Params.from_mapping(job.params, limits=self.config.limits)
        return (params, *self._images(job, params))

    def _images(self, job: Job, params: Params):
        """The job's pictures, each decoded no larger than twice what the run will look at."""
        inputs_dir = self.config.inputs(job.id)
        limit = self.config.limits.max_image_pixels
        content_edge, style_edge = params.image_edges()
        by_role: dict[str, list[Path]] = {}
        for item in job.inputs:
            by_role.setdefault(item["role"], []).append(inputs_dir / item["name"])
        if not by_role.get("content") or not by_role.get("style"):
            raise ValueError("the job's archived inputs are incomplete (no content or style image)")
        content = load_image(by_role["content"][0], max_pixels=limit, max_edge=content_edge)
        styles = [load_image(p, max_pixels=limit, max_edge=style_edge) for p in by_role["style"]]
        init = load_image(by_role["init"][0], max_pixels=limit, max_edge=content_edge) if by_role.get("init") else None
        return content, styles, init

    # -- checkpoints ------------------------------------------------------------------

    def _save_checkpoint(self, job_id: int, state: RunState | None) -> None:
        if state is None:
            return
        import io

        path = self.config.checkpoint(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state.to_dict(), buf)
        write_bytes_atomic(path, buf.getvalue(), mode=0o600)

    def _load_checkpoint(self, job_id: int, joblog: JobLog, outputs: int) -> RunState | None:
        path = self.config.checkpoint(job_id)
        if not path.is_file():
            return None
        try:
            state = RunState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # a damaged checkpoint costs progress, never the job
            joblog.write(f"checkpoint unreadable ({e}); starting over")
            return None
        if state.complete(outputs):
            joblog.write("the results of an earlier attempt were kept: publishing them without recomputing")
        else:
            joblog.write(f"resuming from checkpoint: output {outputs_label(state.output, state.pictures, outputs)}, "
                         f"scale {state.scale + 1}, iteration {state.iteration}")
        return state

    # -- endings ----------------------------------------------------------------------

    def _write(self, job: Job, write: Callable[[JobLog], None], joblog: JobLog) -> None:
        """The job's ending, where its folder is written (publisher.py). Where the outbox or the
        store fails under it, the error goes on to the publisher, which puts the job back in the
        queue; a bug in the writing (the colour correction is made here) fails the job, as one in the engine
        does, instead of running it again and again."""
        try:
            write(joblog)
        except (OSError, StoreError, SQLAlchemyError):
            raise
        except Exception as e:
            log.exception("job %d: internal error writing its results", job.id)
            joblog.write("internal error writing the results:\n" + traceback.format_exc())
            joblog.close()
            self.endings.write(job, Ending(JobStatus.FAILED, error=f"internal error: {type(e).__name__}: {e}",
                                          hint="this is a bug in nst; the traceback is in job.log; please report it"),
                               run_id=self.run_id)
        finally:
            joblog.close()

    def _fail(self, job: Job, joblog: JobLog, message: str, hint: str) -> tuple[JobStatus, Write]:
        joblog.write(f"failed: {message}")
        log.warning("job %d %r failed: %s", job.id, job.name, message)

        def write(joblog: JobLog) -> None:
            joblog.close()
            self.endings.write(job, Ending(JobStatus.FAILED, error=message, hint=hint), run_id=self.run_id)
        return JobStatus.FAILED, write

    def _publish(self, job, joblog, params, content, styles, result, status) -> None:
        """Where the folder is written (publisher.py): the pictures encoded, the preview and
        loss plot drawn, the folder written and the status moved."""
        folder = JobFolder(job.id, job.name)
        outputs: list[str] = []
        variants: dict[str, str] = {}  # file -> what its output changes (several outputs only)
        tiles = [("content", content)] + [(f"style {i + 1}" if len(styles) > 1 else "style", s)
                                          for i, s in enumerate(styles)]
        several = len(result.outputs) > 1
        # A cancelled job's outputs past the finished ones were stopped part way (a batch: several).
        finished = len(result.state.finished) if result.stopped and result.state is not None else len(result.outputs)
        for index, out in enumerate(result.outputs, start=1):
            suffix = f"-{index}" if several else ""
            partial = "-partial" if status == JobStatus.CANCELLED and index > finished else ""
            name = f"{safe_component(job.name)}.stylized{suffix}{partial}.png"
            folder.add_image(name, out.stylized)
            outputs.append(name)
            variants[name] = out.variant
            tiles.append((f"result{suffix}: {out.variant}" if several else "result", out.stylized))
            if out.corrected is not None:
                cname = f"{safe_component(job.name)}.corrected{suffix}{partial}.png"
                folder.add_image(cname, out.corrected)
                outputs.append(cname)
                variants[cname] = f"{out.variant}, photograph's colours"
                tiles.append((f"corrected{suffix}", out.corrected))
        try:
            folder.add_image("preview.png", preview(tiles), fast=True)
            if result.history:
                folder.add_image("loss.png", loss_plot(result.history, title=f"{job.name} (job {job.id})",
                                                       scales=_scale_marks(result.record, params)), fast=True)
        except Exception as e:  # a bug in drawing the extras must not cost the finished pictures
            log.exception("job %d: could not draw its preview or loss plot", job.id)
            joblog.write(f"internal error drawing the preview or loss plot ({type(e).__name__}: {e}); "
                         "the pictures are written without them")
        record = {**result.record, "service": __version__, "host": os.uname().nodename,
                  **({"estimate": job.record["estimate"]} if "estimate" in job.record else {}),
                  **({"output_variants": variants} if several else {})}
        ending = Ending(status, outputs=outputs, record=record, params=params.to_dict(),
                        error="cancelled by request" if status == JobStatus.CANCELLED else None)
        joblog.write(f"writing outbox folder ({len(outputs)} images)")
        joblog.close()
        try:
            final = self.endings.write(job, ending, folder=folder, run_id=self.run_id)
        except OSError:
            if status == JobStatus.DONE:
                # Keep the finished images (small next to the job's time) so the next attempt
                # publishes them instead of computing them again; the daemon re-queues the job.
                try:
                    self._save_checkpoint(job.id, result.state)
                except OSError:
                    pass  # the state folder is full too: the next attempt recomputes
            raise
        log.info("job %d %r %s -> %s", job.id, job.name, status.value, final)


@dataclass
class _JobRun:
    """A job handed to the engine: its request and what its ending needs."""

    job: Job
    joblog: JobLog
    params: Params
    request: Request
    reporter: "_Reporter"
    started: float  # perf_counter when the worker began it


class _Reporter:
    """The engine's progress callback and stop check for one job."""

    def __init__(self, worker: Worker, job: Job, joblog: JobLog, params: Params,
                 rate: float | None = None) -> None:
        self.worker, self.job, self.joblog, self.params = worker, job, joblog, params
        self.rate = rate  # seconds per megapixel-iteration on this device, from earlier jobs
        self.cancelled = False
        self._last_store = 0.0
        self._last_preview = float("-inf")
        self._last_checkpoint = time.monotonic()
        self._checkpoint_cost = 0.0
        self.losses: list[dict[str, float]] = []  # the curve so far, for the live plot

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        self.worker.last_progress = now
        if p.iteration % LOG_EVERY_ITERATIONS == 0 or p.iteration == p.iterations:
            losses = " ".join(f"{k} {v:.4g}" for k, v in p.losses.items())
            self.joblog.write(f"output {p.outputs_label} scale {p.scale + 1}/{p.scales} "
                              f"{p.size[0]}x{p.size[1]} iteration {p.iteration}/{p.iterations}: {losses}")
        self.losses.append({"step": p.step, **p.losses})
        if now - self._last_preview >= PREVIEW_EVERY_S and p.image is not None:
            self._last_preview = now
            self._write_live(p)
        if now - self._last_store >= PROGRESS_EVERY_S or p.step == p.total_steps:
            self._last_store = now
            progress = JobProgress(
                step=p.step, total=p.total_steps, scale=p.scale + 1, scales=p.scales, iteration=p.iteration,
                iterations=p.iterations, output=p.output + 1, outputs=p.outputs, pictures=p.pictures, losses=dict(p.losses),
                elapsed=round(p.elapsed, 2), eta=round(self._eta(p), 2), updated=time.time(),
                work=round(p.work, 4), work_total=round(p.work_total, 4),
            )
            try:
                if not self.worker.store.update_progress(self.job.id, self.worker.run_id, progress.to_dict()):
                    self.cancelled = self.worker.store.cancel_requested(self.job.id)
            except Exception as e:  # the database away for longer than the store waits: go on computing
                log.warning("job %d: progress not recorded (%s)", self.job.id, e)
        # Every checkpoint_seconds, but never more than 5% of the time: a print's checkpoint
        # (hundreds of megabytes) may take seconds to write.
        if now - self._last_checkpoint >= max(self.worker.config.worker.checkpoint_seconds,
                                               20 * self._checkpoint_cost):
            self.worker._save_checkpoint(self.job.id, p.snapshot())
            self._checkpoint_cost = time.monotonic() - now
            self._last_checkpoint = time.monotonic()

    def should_stop(self) -> bool:
        return self.cancelled or self.worker.stopping.is_set() or self.job.id in self.worker.lost_claims

    def _eta(self, p: Progress) -> float:
        """Remaining work times this device's rate from earlier jobs, until this job has measured
        its own over a fair share of the work: its first, coarse iterations are no guide."""
        remaining = max(0.0, p.work_total - p.work)
        if self.rate is not None and p.fraction < ETA_OWN_RATE_AFTER:
            return remaining * self.rate
        return p.eta

    def _write_live(self, p: Progress) -> None:
        """The image being made and the loss curve so far, beside the live log, each replaced
        atomically (the page and `nst show` read them while the job runs)."""
        try:
            image = p.image(LIVE_EDGE)
            config = self.worker.config
            write_bytes_atomic(config.live_image(self.job.id), image_bytes(image, ".jpg"))
            curve = self.losses[:: max(1, len(self.losses) // LIVE_POINTS)]
            write_bytes_atomic(config.live_losses(self.job.id), json.dumps(curve).encode())
        except OSError as e:  # a full disk costs the live view, never the job
            log.warning("job %d: live preview not written (%s)", self.job.id, e)


def _scale_marks(record: dict[str, Any], params: Params) -> list[tuple[int, str]]:
    """Where each scale after the first begins in the loss history, and its size."""
    sizes = record.get("scales") or []
    iterations = record.get("iterations_per_scale") or [params.iterations] * len(sizes)
    marks, step = [], 1
    for output in range(params.outputs):
        for index, (w, h) in enumerate(sizes):
            if output or index:
                marks.append((step, f"{w}x{h}" if index else f"output {output + 1}"))
            step += iterations[index]
    return marks
