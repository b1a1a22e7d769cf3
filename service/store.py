"""The job store: every job's history, through SQLAlchemy (the tables are in `models`).

SQLite is the embedded default (WAL, a busy timeout, so the CLI reads while
the daemon writes). Nothing here is SQLite-specific beyond the connection
pragmas: another dialect plugs in through the database URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import and_, create_engine, event, func, or_, select, update
from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import StoreError
from .models import MAX_ID, WAITING, Base, DaemonRecord, Job, move, utcnow
from .status import JobStatus

# Queued rows a claim reads at a time while looking for one whose tags the worker has.
_CLAIM_PAGE = 20


_retrying = threading.local()


def _survives_outages(method):
    """Retry a store call while the database is briefly unreachable or locked (a restarting
    PostgreSQL, a long SQLite writer): the daemon waits and goes on instead of failing a job.
    A store method called from inside another is not retried on its own: the outer call
    retries the whole, so waits never multiply."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if getattr(_retrying, "active", False):
            return method(self, *args, **kwargs)
        deadline = time.monotonic() + self.outage_s
        delay = 0.2
        _retrying.active = True
        try:
            while True:
                try:
                    return method(self, *args, **kwargs)
                except (OperationalError, DBAPIError) as e:
                    if isinstance(e, IntegrityError):
                        raise
                    if self._damaged(e):
                        raise StoreError(self._broken(e)) from None
                    if not self._passing(e):
                        raise  # a statement the database refuses: a bug, shown whole
                    if time.monotonic() + delay > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            _retrying.active = False

    return wrapper


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    name_glob: str | None = None
    limit: int | None = 50


class Store:
    """All database access of the service goes through this class."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, outage_s: float = 60.0) -> None:
        self.url = url
        self.outage_s = outage_s
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                if Path(path).is_dir():
                    raise StoreError(f"the database {path} is a folder, not a file: move it away (a new "
                                     "database is made on start) or point [paths] database elsewhere")
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"timeout": busy_timeout_s, "check_same_thread": False}
        elif url.startswith("postgresql"):
            # An unreachable server answers in seconds, not after the TCP stack gives up (minutes).
            connect_args = {"connect_timeout": 10}
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self._write_engine = self.engine
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_s))
            # Writes take SQLite's write lock at BEGIN (IMMEDIATE), so a read-then-write
            # transaction waits its turn instead of failing on upgrade; reads stay deferred
            # and never block the daemon.
            self._write_engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
            event.listen(self._write_engine, "connect", _sqlite_pragmas(busy_timeout_s, autocommit_driver=True))
            event.listen(self._write_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._write_session = sessionmaker(self._write_engine, expire_on_commit=False)

    # -- failures ---------------------------------------------------------------

    def _passing(self, error: DBAPIError) -> bool:
        """Whether `error` may pass if we wait: PostgreSQL restarting or out of reach (its
        connection lost on the way), SQLite busy."""
        if self.engine.dialect.name != "sqlite":
            return isinstance(error, (OperationalError, InterfaceError))
        text = str(error.orig).lower()
        return isinstance(error, OperationalError) and ("locked" in text or "busy" in text)

    def _damaged(self, error: DBAPIError) -> bool:
        """A SQLite file that is not a database, is damaged, or cannot be opened: it will not
        mend itself while we wait (SQLite's errors other than a busy lock, and not a statement
        it refused, such as a constraint or a bug's SQL)."""
        if self.engine.dialect.name != "sqlite" or self._passing(error):
            return False
        return type(error) in (OperationalError, DatabaseError)

    def _broken(self, error: DBAPIError) -> str:
        from .config import redact_url

        return (f"the database {redact_url(self.url)} cannot be used: {str(error.orig).strip()}; "
                "restore it from a backup, or move it away and start again (a new one is made)")

    # -- schema -----------------------------------------------------------------

    @_survives_outages
    def migrate(self) -> int:
        """Create the schema on first start or upgrade an older one: Alembic's revisions in
        `service/migrations`, the same on every dialect. A database newer than this release is
        refused. One transaction under a lock (PostgreSQL: an advisory lock; SQLite: BEGIN
        IMMEDIATE), so daemons starting together on a new database do not race to create it."""
        from sqlalchemy import text

        from .migrations import head, upgrade

        with self._write_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7310001)"))
            current = _revision(conn)
            if current is not None and current > head():
                raise StoreError(
                    f"the database has schema version {current}, newer than this release's {head()}: "
                    "run the nst release that wrote it, or point [paths] database elsewhere")
            upgrade(conn, legacy=_legacy_version(conn) if current is None else None)
        return head()

    def create_empty(self) -> None:
        """The tables of an empty, throwaway store (a read before any history exists), without
        loading Alembic: the models' schema is the migrations' (test_store checks they agree)."""
        Base.metadata.create_all(self._write_engine)

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return _revision(conn) or _legacy_version(conn) or 0

    # -- intake -----------------------------------------------------------------

    @_survives_outages
    def enqueue(
        self, *, key: str, name: str, params: dict[str, Any], priority: int = 0,
        inputs: Sequence[dict[str, Any]] = (), error: str | None = None, requires_gpu: bool = False,
        tags: Sequence[str] = (),
    ) -> tuple[Job, bool]:
        """Record a job once per key; a second call returns the first job and False."""
        existing = self.find_by_key(key)
        if existing is not None:
            return existing, False
        job = Job(
            key=key, name=name, params_json=json.dumps(params), priority=priority,
            inputs_json=json.dumps(list(inputs)), size=params.get("size"), iterations=params.get("iterations"),
            error=error, requires_gpu=requires_gpu, tags_json=json.dumps(sorted(tags)),
        )
        try:
            with self._write() as s:
                s.add(job)
        except IntegrityError:
            # Another process (or a duplicate event) recorded it first.
            found = self.find_by_key(key)
            if found is None:
                raise
            return found, False
        return job, True

    @_survives_outages
    def find_by_key(self, key: str) -> Job | None:
        with self._session() as s:
            return s.scalars(select(Job).where(Job.key == key)).first()

    @_survives_outages
    def list_jobs_unstaged(self) -> list[Job]:
        with self._session() as s:
            return list(s.scalars(select(Job).where(Job.status == JobStatus.QUEUED.value, Job.staged.is_(False))))

    @_survives_outages
    def mark_staged(self, job_id: int, inputs: Sequence[dict[str, Any]]) -> None:
        with self._write() as s:  # the first watcher to finish staging wins; later calls change nothing
            s.execute(update(Job).where(Job.id == job_id, Job.staged.is_(False))
                      .values(staged=True, inputs_json=json.dumps(list(inputs))))

    @_survives_outages
    def note_waiting(self, job_id: int, why: str) -> None:
        """A recorded job whose sidecar waits for its images: say for what (`nst jobs`, the page)."""
        with self._write() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED.value,
                                        Job.staged.is_(False), or_(Job.error.is_(None), Job.error.like(WAITING + "%")))
                      .values(error=f"{WAITING}{why}"[:2000]))

    @_survives_outages
    def note_estimate(self, job_id: int, estimate: dict[str, Any]) -> None:
        """What a queued job will take (its plan, peak memory and work), known before it runs."""
        with self._write() as s:
            job = s.get(Job, job_id)
            if job is not None and job.state == JobStatus.QUEUED:
                job.record_json = json.dumps({**json.loads(job.record_json or "{}"), "estimate": estimate})

    @_survives_outages
    def end_waiting(self, job_id: int, why: str) -> bool:
        """Cancel a job recorded while its sidecar waited for images, if it still waits (not
        taken by a watcher's staging meanwhile, which clears the note): True if it was."""
        with self._write() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.state != JobStatus.QUEUED or job.staged or not (job.error or "").startswith(WAITING):
                return False
            move(job, JobStatus.CANCELLED, expect=JobStatus.QUEUED, error=why)
            return True

    @_survives_outages
    def begin_staging(self, job_id: int, *, grace_s: float) -> bool:
        """Take the staging of a recorded job: True for one watcher at a time. A job waiting for
        its images, or one whose stager went silent for `grace_s`, may be taken."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=grace_s)
        with self._write() as s:
            return bool(s.execute(update(Job).where(
                Job.id == job_id, Job.status == JobStatus.QUEUED.value, Job.staged.is_(False),
                or_(Job.error.like(WAITING + "%"),
                    and_(Job.error.is_(None), or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))),
            ).values(heartbeat_at=now, error=None)).rowcount)

    @_survives_outages
    def reserve_outbox_dir(self, job_id: int, run_id: str | None, dirname: str) -> None:
        """Remember the outbox folder before it is renamed into place, so a crash between
        the rename and `done` is recognized on restart instead of writing a second folder."""
        with self._write() as s:
            owner = Job.run_id == run_id if run_id is not None else Job.run_id.is_(None)
            changed = s.execute(update(Job).where(Job.id == job_id, owner).values(outbox_dir=dirname)).rowcount
        if not changed:
            raise StoreError(f"job {job_id} is no longer ours")

    # -- the one place that moves a job's status ---------------------------------

    @_survives_outages
    def transition(
        self, job_id: int, to: JobStatus, *, run_id: str | None = None, expect: JobStatus | None = None,
        error: str | None = None, outputs: list[str] | None = None, record: dict[str, Any] | None = None,
        outbox_dir: str | None = None, progress: dict[str, Any] | None = None,
    ) -> Job:
        """Move a job to `to`, checking the move is allowed (and, with `run_id`, that we own it)."""
        with self._write() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise StoreError(f"no job {job_id}")
            return move(job, to, run_id=run_id, expect=expect, error=error, outputs=outputs, record=record,
                         outbox_dir=outbox_dir, progress=progress)

    @_survives_outages
    def claim_next(
        self, *, run_id: str, host: str | None = None, pid: int | None = None, max_size: int | None = None,
        has_gpu: bool = False, tags: Sequence[str] = (), takeover_s: float | None = None,
    ) -> Job | None:
        """Take the best job this worker can run, in one transaction: a queued one (priority,
        then age) or one whose worker stopped renewing its claim for `takeover_s`.

        On PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED, so concurrent
        workers never wait on each other nor take the same job; SQLite serializes writers.
        """
        host = host or socket.gethostname()
        pid = pid or os.getpid()
        now = utcnow()
        with self._write() as s:
            takeable = and_(Job.status == JobStatus.QUEUED.value, Job.staged.is_(True))
            if takeover_s is not None:
                stale = now - dt.timedelta(seconds=takeover_s)
                takeable = or_(takeable, and_(Job.status == JobStatus.RUNNING.value,
                                              func.coalesce(Job.heartbeat_at, Job.started_at) < stale))
            for job in _claimable(s, select(Job).where(takeable), max_size=max_size, has_gpu=has_gpu, tags=tags):
                return self._claim(s, job, run_id=run_id, host=host, pid=pid, now=now)
        return None

    @_survives_outages
    def claim_together(
        self, *, run_id: str, key: str, pictures: int, priority: int = 0, host: str | None = None,
        pid: int | None = None, max_size: int | None = None, has_gpu: bool = False, tags: Sequence[str] = (),
    ) -> list[Job]:
        """Take queued jobs to optimize in one batch with a job this worker has claimed: those whose
        estimate has its `together` key (`nst_engine.planning.together_key`), of its `priority` (a
        batch made longer by a lower one's pictures would hold back the queue's other jobs of
        that priority), never started before (a job given back with a checkpoint resumes alone),
        with at most `pictures` outputs in all; in queue order, with `claim_next`'s filters, in
        one transaction."""
        host = host or socket.gethostname()
        pid = pid or os.getpid()
        now = utcnow()
        with self._write() as s:
            # The key in SQL narrows the rows (it is hex: no LIKE wildcard); the estimate decides.
            q = select(Job).where(Job.status == JobStatus.QUEUED.value, Job.staged.is_(True), Job.started_at.is_(None),
                                  Job.priority == priority, Job.record_json.contains(key))
            chosen: list[Job] = []
            for job in _claimable(s, q, max_size=max_size, has_gpu=has_gpu, tags=tags):
                outputs = int(job.params.get("outputs", 1))
                if job.record.get("estimate", {}).get("together") != key or outputs > pictures:
                    continue
                chosen.append(job)
                pictures -= outputs
                if not pictures:
                    break
            # Claimed once chosen (each row locked as read): a row claimed while the pages were
            # read would leave the query and shift the next page past a row not yet seen.
            return [self._claim(s, job, run_id=run_id, host=host, pid=pid, now=now) for job in chosen]

    @staticmethod
    def _claim(s: Session, job: Job, *, run_id: str, host: str, pid: int, now: dt.datetime) -> Job:
        move(job, JobStatus.RUNNING)  # from queued, or a takeover of a silent worker's job
        job.run_id, job.host, job.pid = run_id, host, pid
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.cancel_requested = job.cancel_requested and job.attempts > 1
        s.flush()
        return job

    @_survives_outages
    def heartbeat_job(self, job_id: int, run_id: str) -> bool:
        """Renew our claim; False means the job is no longer ours (taken over): stop it."""
        with self._write() as s:
            return bool(s.execute(
                update(Job).where(Job.id == job_id, Job.run_id == run_id, Job.status == JobStatus.RUNNING.value)
                .values(heartbeat_at=utcnow())
            ).rowcount)

    @_survives_outages
    def update_progress(self, job_id: int, run_id: str, progress: dict[str, Any]) -> bool:
        """Record progress; False if the job is no longer ours or a cancel was asked."""
        with self._write() as s:
            s.execute(
                update(Job).where(Job.id == job_id, Job.run_id == run_id).values(progress_json=json.dumps(progress))
            )
            row = s.execute(select(Job.cancel_requested, Job.run_id).where(Job.id == job_id)).first()
        return row is not None and row.run_id == run_id and not row.cancel_requested

    @_survives_outages
    def cancel_requested(self, job_id: int) -> bool:
        with self._session() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    @_survives_outages
    def request_cancel(self, job_id: int) -> JobStatus:
        """Cancel a queued job now; ask a running one to stop. Returns the status after."""
        with self._write() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise StoreError(f"no job {job_id}")
            if job.state == JobStatus.RUNNING:
                job.cancel_requested = True
                return JobStatus.RUNNING
            if job.state == JobStatus.QUEUED:
                # Under the same row lock as the read: a worker cannot claim it in between.
                move(job, JobStatus.CANCELLED, expect=JobStatus.QUEUED, error="cancelled before it started")
                return JobStatus.CANCELLED
        raise StoreError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")

    @_survives_outages
    def earlier_runs(self, *, run_id: str, host: str, home: str) -> list[str]:
        """The run ids of earlier starts of this daemon (same host and state folder): all dead,
        since we hold that folder's lock."""
        with self._session() as s:
            return list(s.scalars(select(DaemonRecord.run_id).where(DaemonRecord.host == host, DaemonRecord.home == home,
                                                             DaemonRecord.run_id != run_id)))

    @_survives_outages
    def requeue_orphans(self, *, run_id: str, host: str, home: str) -> list[int]:
        """Jobs left running by an earlier start of *this* daemon (same host and the same
        state folder, whose lock we now hold, so that start is dead): queue them again at once.
        Jobs of other daemons are left to the heartbeat takeover."""
        with self._write() as s:
            dead = select(DaemonRecord.run_id).where(DaemonRecord.host == host, DaemonRecord.home == home, DaemonRecord.run_id != run_id)
            orphans = list(s.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value,
                                                       Job.run_id.in_(dead)).with_for_update()))
            s.execute(update(DaemonRecord).where(DaemonRecord.run_id.in_(dead)).values(stopped=True, current_job=None))
            for job in orphans:
                move(job, JobStatus.QUEUED, expect=JobStatus.RUNNING)
            return [job.id for job in orphans]

    # -- queries ------------------------------------------------------------------

    @_survives_outages
    def get(self, job_id: int) -> Job | None:
        if not 0 < job_id <= MAX_ID:
            return None  # no such row, and a number too large for the database's integers
        with self._session() as s:
            return s.get(Job, job_id)

    @_survives_outages
    def find(self, ref: str) -> Job | None:
        """A job by id, or by name (the newest of that name)."""
        if ref.isdigit():
            job = self.get(int(ref))
            if job is not None:
                return job
        with self._session() as s:
            return s.scalars(select(Job).where(Job.name == ref).order_by(Job.id.desc())).first()

    @_survives_outages
    def count_named(self, name: str) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.name == name)) or 0

    @_survives_outages
    def list_jobs(self, f: JobFilter = JobFilter()) -> list[Job]:
        q = select(Job).order_by(Job.submitted_at.desc(), Job.id.desc())
        if f.status:
            q = q.where(Job.status == f.status)
        if f.since:
            q = q.where(Job.submitted_at >= f.since)
        if f.until:
            q = q.where(Job.submitted_at <= f.until)
        if f.name_glob:
            q = q.where(Job.name.like(_glob_to_like(f.name_glob), escape="\\"))
        if f.limit:
            q = q.limit(min(f.limit, MAX_ID))
        with self._session() as s:
            return list(s.scalars(q))

    @_survives_outages
    def list_unpublished(self, *, within_days: float = 7.0) -> list[Job]:
        """Jobs that ended without an outbox folder (cancelled while queued, refused while the
        outbox could not be written): the intake publishes their inputs."""
        since = utcnow() - dt.timedelta(days=within_days)
        with self._session() as s:
            return list(s.scalars(select(Job).where(
                Job.status.in_([JobStatus.CANCELLED.value, JobStatus.FAILED.value]), Job.outbox_dir.is_(None),
                Job.finished_at >= since)))

    @_survives_outages
    def done_durations(self) -> tuple[int, float, Job | None]:
        """Count and sum of done jobs' durations, and the latest done job (metrics)."""
        with self._session() as s:
            done = Job.status == JobStatus.DONE.value
            count, total = s.execute(select(func.count(Job.duration_s), func.coalesce(func.sum(Job.duration_s), 0.0))
                                     .where(done)).one()
            latest = s.scalars(select(Job).where(done).order_by(Job.finished_at.desc()).limit(1)).first()
        return int(count), float(total), latest

    @_survives_outages
    def device_rate(self, device: str, *, recent: int = 50) -> float | None:
        """Seconds per megapixel-iteration of this device's recent finished jobs (their median),
        or None before the first: the cost model behind a new job's ETA."""
        with self._session() as s:
            records = s.scalars(select(Job.record_json).where(Job.status == JobStatus.DONE.value)
                                .order_by(Job.finished_at.desc()).limit(recent))
            rates = []
            for text in records:
                record = json.loads(text or "{}")
                work = record.get("work_mpix_iterations")
                seconds = (record.get("timings") or {}).get("optimize_s")
                if record.get("device") == device and work and seconds:
                    rates.append(seconds / work)
        return sorted(rates)[len(rates) // 2] if rates else None

    @_survives_outages
    def queue(self) -> list[Job]:
        with self._session() as s:
            return list(s.scalars(
                select(Job).where(Job.status == JobStatus.QUEUED.value)
                .order_by(Job.priority.desc(), Job.submitted_at, Job.id)
            ))

    @_survives_outages
    def running(self) -> list[Job]:
        with self._session() as s:
            return list(s.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value)))

    @_survives_outages
    def counts(self) -> dict[str, int]:
        with self._session() as s:
            return {status: n for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status))}

    # -- daemons --------------------------------------------------------------------

    @_survives_outages
    def register_daemon(self, run_id: str, *, device: str, roles: Sequence[str] = ("watch", "work"),
                        home: str = "") -> None:
        with self._write() as s:
            s.add(DaemonRecord(run_id=run_id, host=socket.gethostname(), pid=os.getpid(), device=device,
                         roles=",".join(roles), home=home))

    @_survives_outages
    def heartbeat(self, run_id: str, *, current_job: int | None) -> None:
        with self._write() as s:
            s.execute(update(DaemonRecord).where(DaemonRecord.run_id == run_id).values(heartbeat_at=utcnow(), current_job=current_job))

    @_survives_outages
    def unregister_daemon(self, run_id: str) -> None:
        with self._write() as s:
            s.execute(update(DaemonRecord).where(DaemonRecord.run_id == run_id).values(stopped=True, current_job=None))

    @_survives_outages
    def live_daemons(self, *, within_s: float) -> list[DaemonRecord]:
        cutoff = utcnow() - dt.timedelta(seconds=within_s)
        with self._session() as s:
            return list(s.scalars(
                select(DaemonRecord).where(DaemonRecord.stopped.is_(False), DaemonRecord.heartbeat_at >= cutoff)
                .order_by(DaemonRecord.started_at)
            ))

    def copy_from(self, other: "Store") -> int:
        """Copy every job of `other` (e.g. an old SQLite history) into this store, keeping ids.
        Jobs whose key is already here are skipped; returns how many were copied."""
        from sqlalchemy import text

        columns = [c.key for c in Job.__table__.columns]
        copied = 0
        with other._session() as src, self._write() as dst:
            present = set(dst.scalars(select(Job.key)))
            for job in src.scalars(select(Job).order_by(Job.id)):
                if job.key in present:
                    continue
                dst.add(Job(**{c: getattr(job, c) for c in columns}))
                copied += 1
        if self.engine.dialect.name == "postgresql":
            with self._write() as dst:  # the id sequence continues after the copied ids
                dst.execute(text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), "
                                 "COALESCE((SELECT MAX(id) FROM jobs), 1))"))
        return copied

    @_survives_outages
    def all_daemons(self) -> list[DaemonRecord]:
        with self._session() as s:
            return list(s.scalars(select(DaemonRecord).where(DaemonRecord.stopped.is_(False)).order_by(DaemonRecord.started_at)))

    # -- plumbing -------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on error. Waiting for a
        lock is SQLite's busy timeout; waiting out an outage is `_survives_outages`."""
        with self._write_session() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self._write_engine.dispose()


def _sqlite_pragmas(busy_timeout_s: float, *, autocommit_driver: bool = False):
    def on_connect(dbapi_connection, _record) -> None:
        if autocommit_driver:
            # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE itself.
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _claimable(s: Session, q, *, max_size: int | None, has_gpu: bool, tags: Sequence[str]) -> Iterator[Job]:
    """The rows of `q` a worker with these limits may run, best first (priority, then age),
    each locked (FOR UPDATE SKIP LOCKED on PostgreSQL: concurrent workers never take one twice)."""
    if max_size:
        q = q.where(or_(Job.size.is_(None), Job.size <= max_size))
    if not has_gpu:
        q = q.where(Job.requires_gpu.is_(False))
    if not tags:  # the common case, wholly in SQL: only jobs that need no tag
        q = q.where(or_(Job.tags_json.is_(None), Job.tags_json == "[]"))
    q = q.order_by(Job.priority.desc(), Job.submitted_at, Job.id)
    # A job's tags (a JSON list) must all be the worker's: checked here, page by page, so that
    # jobs this worker may not run never hide one it may behind them.
    mine = set(tags)
    for offset in itertools.count(0, _CLAIM_PAGE):
        page = list(s.scalars(q.offset(offset).limit(_CLAIM_PAGE).with_for_update(skip_locked=True)))
        for job in page:
            if set(json.loads(job.tags_json or "[]")) <= mine:
                yield job
        if len(page) < _CLAIM_PAGE:
            return


def _glob_to_like(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _revision(conn) -> int | None:
    """The Alembic revision the database is at, as a number, or None before Alembic."""
    from alembic.runtime.migration import MigrationContext

    rev = MigrationContext.configure(conn).get_current_revision()
    return int(rev) if rev else None


def _legacy_version(conn) -> int | None:
    """Releases before Alembic kept their schema version in `nst_meta`."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("nst_meta"):
        return None
    value = conn.execute(text("SELECT value FROM nst_meta WHERE key = 'schema_version'")).scalar()
    return int(value) if value else 1
