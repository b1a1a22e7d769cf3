"""The job store against real databases: every test on a SQLite file and on a throwaway PostgreSQL."""

import datetime as dt
import sqlite3
import threading

import pytest

from service.status import JobStatus
from service.migrations import head
from service.store import JobFilter, Store, StoreError


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


def add(store, key="a", name="job", **kw):
    job, created = store.enqueue(key=key, name=name, params={"size": 64, "iterations": 5}, **kw)
    store.mark_staged(job.id, [{"role": "content", "name": "c.png"}])
    return job


def test_schema_is_versioned_and_migrate_is_idempotent(store):
    assert store.schema_version() == head() == 2
    assert store.migrate() == 2


def test_the_migrations_build_exactly_the_models_schema(store):
    """Alembic's revisions and the SQLAlchemy models describe the same tables and indexes."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from service.models import Base

    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def _release_1_database(url: str) -> None:
    """A database as release 1 left it: schema 1, its version in nst_meta, no Alembic table."""
    from sqlalchemy import create_engine, text

    from service.migrations import upgrade

    engine = create_engine(url)
    with engine.begin() as conn:
        upgrade(conn, to="0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("CREATE TABLE nst_meta (key VARCHAR(64) PRIMARY KEY, value TEXT)"))
        conn.execute(text("INSERT INTO nst_meta VALUES ('schema_version', '1')"))
        conn.execute(text(
            "INSERT INTO jobs (key, name, status, priority, staged, submitted_at, params_json, inputs_json, "
            "outputs_json, record_json, progress_json, attempts, cancel_requested) VALUES ('v1-job', 'kept', "
            "'queued', 0, TRUE, '2026-01-01 00:00:00', '{}', '[]', '[]', '{}', '{}', 0, FALSE)"))
    engine.dispose()


def test_a_release_1_database_is_upgraded_by_the_migrations(database_url):
    _release_1_database(database_url)
    upgraded = Store(database_url)
    assert upgraded.schema_version() == 1
    assert upgraded.migrate() == 2 and upgraded.schema_version() == 2
    job = upgraded.find("kept")
    assert job.requires_gpu is False and job.tags_json == "[]"
    assert upgraded.claim_next(run_id="r").name == "kept"
    assert upgraded.migrate() == 2  # again: nothing to do
    upgraded.dispose()


def test_a_database_newer_than_this_release_is_refused(store):
    from sqlalchemy import text

    with store._write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match="schema version 99, newer than this release's 2"):
        store.migrate()


def test_enqueue_is_idempotent_per_key(store):
    a, created_a = store.enqueue(key="k", name="x", params={})
    b, created_b = store.enqueue(key="k", name="x", params={})
    assert created_a and not created_b and a.id == b.id
    assert len(store.list_jobs()) == 1


def test_concurrent_enqueue_of_one_key_records_one_job(database_url):
    url = database_url
    Store(url).migrate()
    results = []

    def racer():
        s = Store(url)
        for i in range(20):
            results.append(s.enqueue(key=f"k{i}", name="x", params={})[1])
        s.dispose()

    threads = [threading.Thread(target=racer) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(results) == 20 and len(Store(url).list_jobs(JobFilter(limit=None))) == 20


def test_claim_takes_priority_then_age_and_only_staged(store):
    low = add(store, "1", "low")
    high = add(store, "2", "high", priority=5)
    store.enqueue(key="3", name="unstaged", params={}, priority=9)
    assert store.claim_next(run_id="r").id == high.id
    assert store.claim_next(run_id="r").id == low.id
    assert store.claim_next(run_id="r") is None


def test_a_worker_reaches_its_job_behind_25_it_may_not_run(store):
    """The claim once looked at the 20 best rows only and filtered tags after: a worker with
    no tags starved behind more than 20 tagged jobs (nor requires_gpu, nor size)."""
    for i in range(25):
        add(store, f"t{i}", "for the gpu host", priority=5, tags=["gpu-host"])
    mine = add(store, "mine", "for anyone")
    assert store.claim_next(run_id="plain").id == mine.id
    assert store.claim_next(run_id="plain") is None
    # The tagged host takes the tagged jobs, the best first.
    assert store.claim_next(run_id="tagged", tags=["gpu-host", "other"]).name == "for the gpu host"


def test_a_tagged_worker_pages_past_jobs_needing_a_tag_it_lacks(store):
    for i in range(25):
        add(store, f"t{i}", "needs a and b", priority=5, tags=["a", "b"])
    mine = add(store, "mine", "needs a", tags=["a"])
    assert store.claim_next(run_id="r", tags=["a"]).id == mine.id
    assert store.claim_next(run_id="r", tags=["a"]) is None


def test_transitions_are_checked(store):
    job = add(store)
    with pytest.raises(StoreError, match="cannot go from queued to done"):
        store.transition(job.id, JobStatus.DONE)
    store.claim_next(run_id="r1")
    with pytest.raises(StoreError, match="no longer ours"):
        store.transition(job.id, JobStatus.DONE, run_id="other")
    done = store.transition(job.id, JobStatus.DONE, run_id="r1", outputs=["a.png"])
    assert done.state == JobStatus.DONE and done.outputs == ["a.png"] and done.duration_s is not None
    with pytest.raises(StoreError):
        store.transition(job.id, JobStatus.QUEUED)


def test_orphans_of_this_daemons_earlier_start_are_requeued_others_are_not(store):
    mine, theirs = add(store, "1", "mine"), add(store, "2", "theirs")
    store.register_daemon("old-start", device="cpu", home="/srv/a")
    store.register_daemon("other-daemon", device="cpu", home="/srv/b")
    store.claim_next(run_id="old-start")
    store.claim_next(run_id="other-daemon")
    store.register_daemon("new-start", device="cpu", home="/srv/a")
    # Same host, same state folder (whose lock the new start holds): the old start is dead.
    import socket

    assert store.requeue_orphans(run_id="new-start", host=socket.gethostname(), home="/srv/a") == [mine.id]
    assert store.get(mine.id).status == "queued" and store.get(mine.id).attempts == 1
    assert store.get(theirs.id).status == "running"  # never adopted by host name alone


def test_a_silent_workers_job_is_taken_over_and_its_late_writes_refused(store):
    job = add(store)
    assert store.claim_next(run_id="a", takeover_s=30).id == job.id
    assert store.claim_next(run_id="b", takeover_s=30) is None  # a is alive
    assert store.heartbeat_job(job.id, "a")
    with store._write() as s:  # a stops heartbeating: its last beat is a minute old
        from sqlalchemy import update as sql_update

        from service.models import Job, utcnow
        s.execute(sql_update(Job).where(Job.id == job.id).values(
            heartbeat_at=utcnow() - dt.timedelta(seconds=60)))
    taken = store.claim_next(run_id="b", takeover_s=30)
    assert taken.id == job.id and taken.run_id == "b" and taken.attempts == 2
    assert not store.heartbeat_job(job.id, "a")  # a learns it lost the job
    assert store.update_progress(job.id, "a", {"step": 99}) is False
    with pytest.raises(StoreError, match="no longer ours"):
        store.transition(job.id, JobStatus.DONE, run_id="a")
    with pytest.raises(StoreError, match="no longer ours"):
        store.reserve_outbox_dir(job.id, "a", "x")
    assert store.get(job.id).progress.step == 0


def test_workers_claim_only_what_they_can_run(store):
    big, _ = store.enqueue(key="big", name="big", params={"size": 2048})
    gpu, _ = store.enqueue(key="gpu", name="gpu", params={"size": 256}, requires_gpu=True)
    tagged, _ = store.enqueue(key="tag", name="tagged", params={"size": 256}, tags=["a100"])
    for j in (big, gpu, tagged):
        store.mark_staged(j.id, [])
    assert store.claim_next(run_id="small-cpu", max_size=1024) is None
    assert store.claim_next(run_id="gpu", max_size=1024, has_gpu=True).name == "gpu"
    assert store.claim_next(run_id="gpu", max_size=1024, has_gpu=True, tags=["a100", "x"]).name == "tagged"
    assert store.claim_next(run_id="large", max_size=4096).name == "big"


def test_jobs_claimed_to_share_a_batch_are_queued_ones_of_the_key_up_to_the_pictures(store):
    def job(name, together="k1", outputs=1, staged=True, **kw):
        j, _ = store.enqueue(key=name, name=name, params={"size": 64, "outputs": outputs}, **kw)
        if staged:
            store.mark_staged(j.id, [])
        store.note_estimate(j.id, {"together": together, "batch": outputs})
        return j

    lead = job("lead")
    job("other-key", together="k2")
    job("two", outputs=2)
    job("gpu", requires_gpu=True)
    job("tagged", tags=["a100"])
    job("unstaged", staged=False)
    job("four", outputs=4)  # more pictures than the room left
    job("one")
    job("later", priority=-1)  # of a lower priority: never taken with a job of priority 0
    job("spare")
    assert store.claim_next(run_id="w").id == lead.id
    taken = store.claim_together(run_id="w", key="k1", pictures=4)
    assert [j.name for j in taken] == ["two", "one", "spare"]  # 2 + 1 + 1 pictures, in queue order
    assert all(store.get(j.id).state == JobStatus.RUNNING and store.get(j.id).run_id == "w" for j in taken)
    assert store.claim_together(run_id="w", key="k1", pictures=3) == []  # "four" does not fit in 3
    gpu = store.claim_together(run_id="g", key="k1", pictures=8, has_gpu=True, tags=["a100"])
    assert sorted(j.name for j in gpu) == ["four", "gpu", "tagged"]
    assert [j.name for j in store.claim_together(run_id="w", key="k1", pictures=8, priority=-1)] == ["later"]
    # A job started before (given back, it may resume its checkpoint alone) is not taken to share a batch.
    again = job("again", priority=10)
    assert store.claim_next(run_id="x").id == again.id
    store.transition(again.id, JobStatus.QUEUED, run_id="x")
    assert store.get(again.id).state == JobStatus.QUEUED and store.get(again.id).attempts == 0
    assert store.claim_together(run_id="w", key="k1", pictures=4, priority=10) == []


def test_jobs_claimed_to_share_a_batch_are_found_past_the_first_page(store):
    """More companions than one page of the claim's query (20 rows): every one is found, none
    skipped by the rows claimed before the next page is read."""
    for i in range(26):
        j, _ = store.enqueue(key=f"f{i}", name=f"f{i}", params={"size": 64})
        store.mark_staged(j.id, [])
        store.note_estimate(j.id, {"together": "k1"})
    assert store.claim_next(run_id="w").name == "f0"
    taken = store.claim_together(run_id="w", key="k1", pictures=25)
    assert [j.name for j in taken] == [f"f{i}" for i in range(1, 26)]


def test_concurrent_claims_never_share_a_job(database_url):
    setup = Store(database_url)
    setup.migrate()
    for i in range(30):
        add(setup, f"c{i}", f"c{i}")
    claimed = []

    def worker(n):
        s = Store(database_url)
        while (job := s.claim_next(run_id=f"w{n}")) is not None:
            claimed.append(job.id)
        s.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 30
    setup.dispose()


def test_graceful_requeue_does_not_count_as_an_attempt(store):
    job = add(store)
    store.claim_next(run_id="r")
    store.transition(job.id, JobStatus.QUEUED, run_id="r")
    assert store.get(job.id).attempts == 0


def test_cancel_queued_and_running(store):
    a, b = add(store, "1", "a"), add(store, "2", "b")
    assert store.request_cancel(a.id) == JobStatus.CANCELLED
    store.claim_next(run_id="r")
    assert store.request_cancel(b.id) == JobStatus.RUNNING
    assert store.update_progress(b.id, "r", {"step": 1}) is False
    assert store.cancel_requested(b.id)
    with pytest.raises(StoreError, match="only queued or running"):
        store.request_cancel(a.id)


def test_filters_and_find(store):
    for i, name in enumerate(["portrait-1", "portrait-2", "landscape"]):
        add(store, str(i), name)
    assert [j.name for j in store.list_jobs(JobFilter(name_glob="portrait*"))] == ["portrait-2", "portrait-1"]
    assert store.find("landscape").name == "landscape"
    assert store.find(str(store.find("landscape").id)).name == "landscape"
    future = dt.datetime.utcnow() + dt.timedelta(days=1)
    assert store.list_jobs(JobFilter(since=future)) == []
    assert len(store.list_jobs(JobFilter(until=future, status="queued"))) == 3
    assert store.list_jobs(JobFilter(name_glob="100%")) == []


def test_a_reader_holding_a_transaction_does_not_block_writes(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    store.migrate()
    add(store, "1")
    reader = sqlite3.connect(tmp_path / "jobs.sqlite3")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchall()
    try:
        add(store, "2")  # WAL: the writer goes on while the reader holds its snapshot
        assert store.claim_next(run_id="r") is not None
    finally:
        reader.rollback()
        reader.close()


def test_daemon_registry(store):
    store.register_daemon("run-a", device="cpu")
    store.heartbeat("run-a", current_job=None)
    assert [d.run_id for d in store.live_daemons(within_s=30.0)] == ["run-a"]
    store.unregister_daemon("run-a")
    assert store.live_daemons(within_s=30.0) == []


def test_daemons_starting_together_create_the_schema_once(database_url):
    errors = []

    def start():
        try:
            s = Store(database_url)
            s.migrate()
            s.dispose()
        except Exception as e:  # pragma: no cover - the failure this test is about
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert Store(database_url).schema_version() == head()


def test_the_device_rate_comes_from_recent_done_jobs_on_that_device(store):
    assert store.device_rate("cpu") is None
    for i, (device, seconds) in enumerate([("cpu", 10.0), ("cpu", 30.0), ("cpu", 20.0), ("cuda (H100)", 1.0)]):
        job = add(store, f"r{i}", f"r{i}")
        store.claim_next(run_id="w")
        store.transition(job.id, JobStatus.DONE, run_id="w", record={
            "device": device, "work_mpix_iterations": 10.0, "timings": {"optimize_s": seconds}})
    assert store.device_rate("cpu") == 2.0  # the median of 1, 3 and 2 seconds per megapixel-iteration
    assert store.device_rate("cuda (H100)") == 0.1
