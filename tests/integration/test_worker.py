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


def _worker(box) -> Worker:
    return Worker(box.config, box.store, box.outbox, "run-test", threading.Event())


def _claim(box):
    return box.store.claim_next(run_id="run-test")


def test_a_failing_preview_does_not_cost_the_finished_pictures(site, monkeypatch):
    import service.pipeline.worker as worker_module

    def broken(*_a, **_k):
        raise RuntimeError("a bug in drawing")

    monkeypatch.setattr(worker_module, "preview", broken)
    _queued(site, "p")
    status = _worker(site).run(_claim(site))
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
    status = _worker(site).run(_claim(site))
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
    assert _worker(site).run(_claim(site)) == JobStatus.DONE
    folder = site.outbox_dir / site.jobs()["portrait"].outbox_dir
    record = json.loads((folder / "job.json").read_text())
    assert record["record"]["faces"]["left_out"] == {"relu5_1": [1]}
    assert "painting 1 has a face (4% of its canvas): its relu5_1 target was left out" in (folder / "job.log").read_text()
