"""A job's plan and peak memory are known at intake; one that cannot fit is refused at once."""

import pytest
from PIL import Image

from intakekit import IntakeDir

from service.display import estimate_text


def test_a_picture_too_large_even_in_tiles_is_refused_at_once_with_advice(tmp_path):
    box = IntakeDir(tmp_path, worker={"memory_budget_mib": 3072})
    try:
        box.pair("huge")
        (box.inbox / "huge.toml").write_text("size = 8192\n")
        box.scan()
        job = box.jobs()["huge"]
        assert job.status == "failed" and "even in tiles" in job.error and "8192x" in job.error
        assert "memory_budget_mib" in (box.outbox_dir / "huge" / "error.txt").read_text()
    finally:
        box.close()


def test_in_a_cluster_a_watcher_with_little_memory_leaves_a_print_to_a_larger_worker(tmp_path):
    """Only this host's budget is too small: another host's worker may fit the print, so the
    job waits, saying for what, rather than failing at the watcher (the worker that claims
    it decides, with the same advice)."""
    from service.config import config_from_dict
    from service.pipeline.intake import Intake

    with IntakeDir(tmp_path) as box:
        box.intake = Intake(config_from_dict({"watch": {"settle_seconds": 0}, "cluster": {"roles": ["watch"]},
                                              "worker": {"memory_budget_mib": 3072}}, root=tmp_path),
                            box.store, box.outbox)
        box.drop("huge", "size = 8192\n")
        box.scan()
        job = box.jobs()["huge"]
        assert job.status == "queued" and job.staged, job.error
        waits = job.record["estimate"]["waits_for"]
        assert waits.startswith("a worker with more memory") and "even in tiles" in waits


def test_a_queued_print_carries_its_plan_and_estimate(tmp_path):
    box = IntakeDir(tmp_path, worker={"memory_budget_mib": 6144})
    try:
        box.drop("print", "size = 4096\n")
        box.drop("small", "size = 256\n")
        box.scan()
        jobs = box.jobs()
        est = jobs["print"].record["estimate"]
        assert jobs["print"].status == "queued" and est["budget_mib"] == 6144
        assert [s["size"][0] for s in est["scales"]] == [512, 1024, 2048, 4096]
        assert est["scales"][-1]["tile"] and est["scales"][0]["tile"] is None
        assert est["peak_mib"] <= 6144
        text = estimate_text(est, 0.5)
        assert "in " in text and "tiles" in text and "of 6.0" in text and "about" in text
        small = jobs["small"].record["estimate"]
        assert len(small["scales"]) == 1 and small["scales"][0]["tile"] is None
    finally:
        box.close()


def test_the_estimate_counts_the_pictures_as_they_will_be_decoded(tmp_path):
    """A 1-bit style picture of 8900x8900 px: its decoding (one byte a pixel, 76 MiB) and what is
    kept of it (at most twice the 512 px job's edge, as RGB) are in the plan; the small content
    picture adds almost nothing."""
    with IntakeDir(tmp_path) as box:
        box.image("bits.content.jpg", size=(64, 48))
        Image.new("1", (8900, 8900)).save(box.inbox / "bits.style.png")
        (box.inbox / "bits.toml").write_text("size = 512\n")
        box.scan()
        est = box.jobs()["bits"].record["estimate"]
        decoding = 8900 * 8900 / 2**20
        kept = (2 * 512) ** 2 * 3 / 2**20
        assert decoding + kept - 1 <= est["images_mib"] <= decoding + kept + 1, est["images_mib"]


def test_a_picture_too_narrow_for_its_size_is_refused_at_once_with_the_engines_words(tmp_path):
    """The estimate plans the run as the engine will (`planning.plan_run`), minimum edge
    included: a 2000x40 photograph at 512 px would be 10 px high, which no worker can run."""
    with IntakeDir(tmp_path) as box:
        box.image("strip.content.jpg", size=(2000, 40))
        box.image("strip.style.png", (20, 20, 200))
        (box.inbox / "strip.toml").write_text("size = 512\n")
        box.scan()
        job = box.jobs()["strip"]
        assert job.status == "failed" and "too narrow" in job.error and "2000x40" in job.error, job.error
        assert "less extreme aspect ratio" in (box.outbox_dir / "strip" / "error.txt").read_text()


@pytest.mark.parametrize("batch", [0, 1])
def test_a_queued_jobs_estimate_plans_its_outputs_batch_as_the_worker_will(tmp_path, batch):
    with IntakeDir(tmp_path, worker={"batch": batch}) as box:
        box.drop("four", "size = 128\noutputs = 4\n")
        box.scan()
        est = box.jobs()["four"].record["estimate"]
    if batch == 0:
        assert est["batch"] == 4 and "outputs 4 at a time" in estimate_text(est, None)
        assert [s["pictures"] for s in est["scales"]] == [4]
    else:
        assert est["batch"] == 1 and "at a time" not in estimate_text(est, None)
