"""The worker in this process: a real store, outbox and engine (tiny images), no daemon."""

from __future__ import annotations

import json
import threading

import pytest

from intakekit import IntakeDir
from service.status import JobStatus
from service.pipeline.worker import Worker


@pytest.fixture
def site(tmp_path):
    box = IntakeDir(tmp_path)
    yield box
    box.close()


def _queued(box, name: str, sidecar: str = "size = 64\niterations = 3\nscales = [1.0]\n"):
    box.pair(name)
    (box.inbox / f"{name}.toml").write_text(sidecar)
    box.scan()
    return box.jobs()[name]


def _worker(box, *, write_beside: bool = False) -> Worker:
    """`write_beside`: the folders written on the publisher's thread, as on a GPU."""
    return Worker(box.config, box.store, box.outbox, "run-test", threading.Event(), write_beside=write_beside)


def _claim(box):
    return box.store.claim_next(run_id="run-test")


def _run(box, job) -> JobStatus:
    """One job to its written ending (the worker hands the writing to its publisher thread)."""
    worker = _worker(box)
    status = worker.run(job)
    worker.close()
    return status


def test_a_failing_preview_does_not_cost_the_finished_pictures(site, monkeypatch):
    import service.pipeline.worker as worker_module

    def broken(*_a, **_k):
        raise RuntimeError("a bug in drawing")

    monkeypatch.setattr(worker_module, "preview", broken)
    _queued(site, "p")
    status = _run(site, _claim(site))
    job = site.jobs()["p"]
    assert status == JobStatus.DONE and job.status == "done"
    folder = site.outbox_dir / job.outbox_dir
    assert (folder / "p.stylized.png").is_file() and not (folder / "preview.png").exists()
    assert "internal error drawing the preview" in (folder / "job.log").read_text()


def test_a_job_error_fails_with_the_advice_it_was_raised_with(site):
    job = _queued(site, "narrow")
    # The archived content becomes a strip the network cannot see at this size.
    from PIL import Image

    archived = site.config.archive(job.id) / "inputs" / "narrow.content.jpg"
    Image.new("RGB", (600, 8), "red").save(archived)
    status = _run(site, _claim(site))
    job = site.jobs()["narrow"]
    assert status == JobStatus.FAILED and "too narrow" in job.error
    error = (site.outbox_dir / job.outbox_dir / "error.txt").read_text()
    assert "crop the picture to a less extreme aspect ratio" in error
    assert json.loads((site.outbox_dir / job.outbox_dir / "job.json").read_text())["status"] == "failed"


def test_a_cancel_cannot_hit_a_job_between_its_read_and_its_move(site, monkeypatch):
    """The old cancel read the row, let go of it, then moved it: a worker claiming in between
    ran a job the store called cancelled. Now the read and the move are one locked step."""
    job = _queued(site, "race")
    store = site.store
    real = store.transition

    def claim_first(job_id, to, **kw):  # a worker slips in before any later move
        store.claim_next(run_id="sneaky")
        return real(job_id, to, **kw)

    monkeypatch.setattr(store, "transition", claim_first)
    after = store.request_cancel(job.id)
    row = store.get(job.id)
    assert after == JobStatus.CANCELLED and row.status == "cancelled" and row.run_id is None
    assert store.claim_next(run_id="late") is None


def test_an_ending_published_before_a_crash_is_finished_not_written_twice(site):
    """A crash between the folder's rename and the status move: the next write for the job
    finds the folder (its `job.json` is the truth), moves the status, returns that folder."""
    from service.pipeline.ending import Ending, Endings
    from service.pipeline.outbox import JobFolder

    job = _queued(site, "twice")
    claimed = _claim(site)
    assert claimed.id == job.id
    endings = Endings(site.config, site.store, site.outbox)
    published = site.outbox.publish(JobFolder(job.id, job.name),
                                    lambda d: site.store.reserve_outbox_dir(job.id, "run-test", d))
    (published / "job.json").write_text(json.dumps({"id": job.id, "status": "failed", "error": "before the crash"}))
    assert site.store.get(job.id).state == JobStatus.RUNNING  # the crash: published, not moved
    again = endings.write(site.store.get(job.id), Ending(JobStatus.DONE), run_id="run-test")
    assert again == published
    assert [p.name for p in site.outbox_dir.iterdir()] == [published.name]
    ended = site.store.get(job.id)
    assert ended.state == JobStatus.FAILED and ended.error == "before the crash"


def test_a_portraits_job_says_in_its_log_and_record_that_its_face_was_kept_out(site):
    import skimage.data
    from PIL import Image

    site.pair("portrait")
    painting = Image.fromarray(skimage.data.astronaut())
    painting.thumbnail((256, 256))
    painting.save(site.inbox / "portrait.style.png")
    (site.inbox / "portrait.toml").write_text("size = 128\niterations = 2\n")
    site.scan()
    assert _run(site, _claim(site)) == JobStatus.DONE
    folder = site.outbox_dir / site.jobs()["portrait"].outbox_dir
    record = json.loads((folder / "job.json").read_text())
    assert record["record"]["faces"]["masked"] == {"relu5_1": [1]}
    assert ("painting 1 has a face (4% of its canvas): its relu5_1 target comes from the rest of its canvas"
            in (folder / "job.log").read_text())


@pytest.mark.parametrize("batch", [0, 1])
def test_a_jobs_outputs_run_as_one_batch_unless_the_worker_says_one_by_one(tmp_path, batch):
    box = IntakeDir(tmp_path, worker={"batch": batch})
    try:
        _queued(box, "two", "size = 64\niterations = 3\nscales = [1.0]\noutputs = 2\n")
        assert _run(box, _claim(box)) == JobStatus.DONE
        folder = box.outbox_dir / box.jobs()["two"].outbox_dir
        record = json.loads((folder / "job.json").read_text())["record"]
        log = (folder / "job.log").read_text()
    finally:
        box.close()
    if batch == 0:  # the worker's default: both at once, where the memory and the device allow
        assert record["memory"]["batch"] == 2 and "output 1-2/2 scale 1/1 64x53 iteration 3/3" in log
    else:
        assert record["memory"]["batch"] == 1 and "output 2/2 scale 1/1 64x53 iteration 3/3" in log


def test_the_next_job_computes_while_the_last_ones_folder_is_written(site, monkeypatch):
    """The device's thread hands a finished job's folder to the publisher and goes on: job b
    is computed while job a's preview is still being drawn (inline, b could not start)."""
    import service.pipeline.worker as worker_module

    b_computing = threading.Event()
    seen: dict[str, object] = {}
    real_stylize, real_preview = worker_module.stylize_many, worker_module.preview

    def stylize_many(*args, **kwargs):
        if "a folder" in seen:
            b_computing.set()
        return real_stylize(*args, **kwargs)

    def preview(tiles):
        if "a drawn" not in seen:  # job a's preview: wait for job b to be computing
            seen["a drawn"] = b_computing.wait(timeout=60)
            seen["a status meanwhile"] = site.store.get(a.id).status
            seen["claims renewed"] = worker.held_jobs()  # the liveness thread renews these
        return real_preview(tiles)

    monkeypatch.setattr(worker_module, "stylize_many", stylize_many)
    monkeypatch.setattr(worker_module, "preview", preview)
    a, b = _queued(site, "a"), _queued(site, "b")
    worker = _worker(site, write_beside=True)
    assert worker.run(_claim(site)) == JobStatus.DONE
    seen["a folder"] = True  # handed over; the next stylize is job b's
    assert worker.run(_claim(site)) == JobStatus.DONE
    worker.close()
    assert seen["a drawn"] is True and seen["a status meanwhile"] == "running"
    assert sorted(seen["claims renewed"]) == sorted([a.id, b.id])
    jobs = site.jobs()
    assert jobs["a"].status == jobs["b"].status == "done"
    assert jobs["a"].finished_at <= jobs["b"].finished_at  # folders in the order the jobs finished
    for name in ("a", "b"):
        assert (site.outbox_dir / jobs[name].outbox_dir / "preview.png").is_file()


def test_a_folder_that_cannot_be_written_requeues_its_job_and_not_the_next(site, monkeypatch):
    """A full outbox under job a's folder, written in the background: job a goes back to the
    queue with its finished pictures kept, the worker pauses its claims, job b is unharmed."""
    import errno

    a = _queued(site, "a")
    _queued(site, "b")
    real_publish = site.outbox.publish
    failures = []

    def publish(folder, reserve):
        if folder.job_id == a.id and not failures:
            failures.append(folder.job_id)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_publish(folder, reserve)

    monkeypatch.setattr(site.outbox, "publish", publish)
    worker = _worker(site, write_beside=True)
    worker.run(_claim(site))
    worker.run(_claim(site))
    worker.drain()
    jobs = site.jobs()
    assert jobs["b"].status == "done"
    assert jobs["a"].status == "queued" and "could not write its results" in jobs["a"].error
    assert "No space left" in jobs["a"].error and worker.pause_left() > 0
    assert site.config.checkpoint(a.id).is_file()  # the pictures were kept
    assert worker.run(_claim(site)) == JobStatus.DONE
    worker.close()
    log_text = (site.outbox_dir / site.jobs()["a"].outbox_dir / "job.log").read_text()
    assert "publishing them without recomputing" in log_text


@pytest.mark.parametrize("write_beside", [False, True], ids=["in-turn", "beside"])
def test_a_bug_while_writing_fails_that_job_once_and_not_the_next(site, monkeypatch, write_beside):
    """The colour-corrected copy is made where the folder is written: a bug there fails its job
    with the traceback in job.log, as a bug in the engine does, rather than re-queueing it
    forever; the next job is written as usual."""
    import nst_engine.optimize as engine

    real, calls = engine.match_colors, []

    def broken_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in colour correction")
        return real(*args)

    monkeypatch.setattr(engine, "match_colors", broken_once)
    _queued(site, "a")
    _queued(site, "b")
    worker = _worker(site, write_beside=write_beside)
    worker.run(_claim(site))
    worker.run(_claim(site))
    worker.close()
    jobs = site.jobs()
    assert jobs["a"].status == "failed" and "internal error: RuntimeError: a bug in colour correction" in jobs["a"].error
    folder = site.outbox_dir / jobs["a"].outbox_dir
    assert "Traceback" in (folder / "job.log").read_text() and "please report it" in (folder / "error.txt").read_text()
    assert jobs["a"].attempts == 1 and worker.pause_left() == 0
    assert jobs["b"].status == "done" and (site.outbox_dir / jobs["b"].outbox_dir / "b.corrected.png").is_file()


def test_queued_jobs_of_one_shape_run_as_one_batch_each_to_its_own_ending(site):
    """Jobs of one size and iterations (their own weights; one with two outputs) are claimed
    with the first and optimized as one batch; one cancelled part way ends cancelled with its
    pictures partial while the others finish; a job of another size waits its turn."""
    tiny = "size = 64\niterations = 3\nscales = [1.0]\n"
    _queued(site, "a")
    _queued(site, "b", tiny + "style_weight = 30000\n")
    _queued(site, "c", tiny + "outputs = 2\n")
    _queued(site, "other", "size = 80\niterations = 3\nscales = [1.0]\n")
    worker = _worker(site)
    first = _claim(site)
    companions = worker.companions(first)
    assert first.name == "a" and [j.name for j in companions] == ["b", "c"]
    site.store.request_cancel(companions[1].id)  # seen at c's first progress report
    statuses = worker.run_together([first] + companions)
    worker.close()
    assert statuses == [JobStatus.DONE, JobStatus.DONE, JobStatus.CANCELLED]
    jobs = site.jobs()
    assert jobs["other"].status == "queued"
    for name in ("a", "b"):
        folder = site.outbox_dir / jobs[name].outbox_dir
        record = json.loads((folder / "job.json").read_text())["record"]
        assert (record["memory"]["batch"], record["memory"]["jobs"]) == (4, 3)
        assert "finished in" in (folder / "job.log").read_text()
        assert "(in one batch with 2 other jobs)" in (folder / "job.log").read_text()
        assert (folder / f"{name}.stylized.png").is_file()
    cancelled = site.outbox_dir / jobs["c"].outbox_dir
    assert sorted(p.name for p in cancelled.glob("c.stylized*")) == ["c.stylized-1-partial.png",
                                                                      "c.stylized-2-partial.png"]


def test_a_worker_told_one_at_a_time_claims_no_companions(tmp_path):
    box = IntakeDir(tmp_path, worker={"batch": 1})
    try:
        _queued(box, "a")
        _queued(box, "b")
        first = _claim(box)
        assert first.record["estimate"]["together"] is not None  # it could share a batch
        assert _worker(box).companions(first) == []
        assert box.store.get(box.jobs()["b"].id).status == "queued"
    finally:
        box.close()


def _three_of_one_shape(site):
    """Jobs a, b, c of one shape, claimed by one worker as one batch: (worker, jobs)."""
    for name in ("a", "b", "c"):
        _queued(site, name, "size = 64\niterations = 6\nscales = [1.0]\n")
    worker = _worker(site)
    first = _claim(site)
    jobs = [first] + worker.companions(first)
    assert [j.name for j in jobs] == ["a", "b", "c"]
    return worker, jobs


def test_a_job_of_a_batch_that_fails_or_is_taken_over_leaves_the_others_to_finish(site, monkeypatch):
    """b's archived photograph became bytes no decoder reads (it fails with its advice, from the
    thread that decoded it); another worker takes c over part way (the liveness thread's word: c
    stops and is left to it); a finishes as one would alone."""
    worker, (a, b, c) = _three_of_one_shape(site)
    (site.config.archive(b.id) / "inputs" / "b.content.jpg").write_bytes(b"not a picture" * 20)
    real = site.store.update_progress

    def taken_over(job_id, run_id, progress):
        if job_id == c.id and progress["step"] >= 2:
            worker.lost_claims.add(c.id)
        return real(job_id, run_id, progress)

    monkeypatch.setattr(site.store, "update_progress", taken_over)
    monkeypatch.setattr("service.pipeline.worker.PROGRESS_EVERY_S", 0.0)  # a report every iteration
    statuses = worker.run_together([a, b, c])
    worker.close()
    assert statuses == [JobStatus.DONE, JobStatus.FAILED, JobStatus.RUNNING]
    jobs = site.jobs()
    assert jobs["a"].status == "done" and jobs["b"].status == "failed" and "not an image" in jobs["b"].error
    assert "replace the file with a JPEG" in (site.outbox_dir / jobs["b"].outbox_dir / "error.txt").read_text()
    assert jobs["c"].status == "running" and jobs["c"].outbox_dir is None  # left to the other worker
    record = json.loads((site.outbox_dir / jobs["a"].outbox_dir / "job.json").read_text())["record"]
    assert record["memory"]["jobs"] == 2 and record["iterations_run"] == 6  # b never joined the batch
    assert "leaving it to that worker" in site.config.live_log(c.id).read_text()


def test_a_shutdown_mid_batch_checkpoints_every_job_of_it_and_each_resumes(site, monkeypatch):
    worker, jobs = _three_of_one_shape(site)
    real = site.store.update_progress

    def stop_at_step_3(job_id, run_id, progress):
        if progress["step"] >= 3:
            worker.stopping.set()
        return real(job_id, run_id, progress)

    monkeypatch.setattr(site.store, "update_progress", stop_at_step_3)
    monkeypatch.setattr("service.pipeline.worker.PROGRESS_EVERY_S", 0.0)
    assert worker.run_together(jobs) == [JobStatus.QUEUED] * 3
    for job in jobs:
        assert site.store.get(job.id).status == "queued"
        assert site.config.checkpoint(job.id).is_file()
    monkeypatch.setattr(site.store, "update_progress", real)
    worker.stopping.clear()
    first = _claim(site)
    assert worker.companions(first) == []  # a job with a checkpoint resumes alone
    assert worker.run(first) == JobStatus.DONE
    worker.close()
    log = (site.outbox_dir / site.store.get(first.id).outbox_dir / "job.log").read_text()
    assert "resuming from checkpoint: output 1/1, scale 1, iteration 3" in log
