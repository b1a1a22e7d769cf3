"""The job store against a real SQLite file."""

import datetime as dt
import sqlite3
import threading

import pytest

from service.store import JobFilter, JobStatus, Store, StoreError


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    s.migrate()
    yield s
    s.dispose()


def add(store, key="a", name="job", **kw):
    job, created = store.enqueue(key=key, name=name, params={"size": 64, "iterations": 5}, **kw)
    store.mark_staged(job.id, [{"role": "content", "name": "c.png"}])
    return job


def test_schema_is_versioned_and_migrate_is_idempotent(store):
    assert store.schema_version() == 1
    assert store.migrate() == 1


def test_enqueue_is_idempotent_per_key(store):
    a, created_a = store.enqueue(key="k", name="x", params={})
    b, created_b = store.enqueue(key="k", name="x", params={})
    assert created_a and not created_b and a.id == b.id
    assert len(store.list_jobs()) == 1


def test_concurrent_enqueue_of_one_key_records_one_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    Store(url).migrate()
    results = []

    def racer():
        s = Store(url)
        for i in range(20):
            results.append(s.enqueue(key=f"k{i}", name="x", params={})[1])

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


def test_orphans_of_an_earlier_run_are_requeued_then_failed(store):
    job = add(store)
    for attempt in range(1, 4):
        store.claim_next(run_id=f"run{attempt}")
        moved = store.requeue_orphans(run_id=f"run{attempt + 1}", max_attempts=3)
        expected = JobStatus.QUEUED if attempt < 3 else JobStatus.FAILED
        assert moved == [(job.id, expected)]
    assert "3 times" in store.get(job.id).error


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


def test_a_reader_holding_a_transaction_does_not_block_writes(store, tmp_path):
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
    assert [d.run_id for d in store.live_daemons()] == ["run-a"]
    store.unregister_daemon("run-a")
    assert store.live_daemons() == []
