"""The second round of hostile drops (issue 25): names that are not UTF-8, sparse and huge
files, hard links, another job's images, and paths that can never arrive. The intake in this
process, a real SQLite store and outbox.
"""

from __future__ import annotations

import logging
import os

import pytest

from intakekit import IntakeDir
from service.safefiles import copy_regular, shown
from service.status import JobStatus

MARKER = b"TOPSECRET-25c3"


@pytest.fixture
def box(tmp_path):
    with IntakeDir(tmp_path) as d:
        yield d


def _raw(name: bytes) -> str:
    """A file name made of these bytes, as Python hands it over (stray bytes as surrogates)."""
    return os.fsdecode(name)


def test_a_name_that_is_not_utf8_is_queued_under_a_name_that_can_be_stored(box, caplog):
    box.image(_raw(b"caf\xe9.content.jpg"))
    box.image(_raw(b"caf\xe9.style.png"), (20, 20, 200))
    (box.inbox / _raw(b"caf\xe9.toml")).write_text("size = 64\n")
    with caplog.at_level(logging.WARNING):
        assert box.scan() == 1
    assert "a bug in nst" not in caplog.text
    job = box.jobs()["café"]
    assert job.status == "queued" and job.staged
    names = sorted(i["name"] for i in job.inputs)
    assert names == ["café.content.jpg", "café.style.png", "café.toml"]
    assert sorted(os.listdir(box.config.archive(job.id) / "inputs")) == names
    assert os.listdir(box.inbox) == []


def test_a_failing_job_with_an_unprintable_byte_in_its_name_gets_its_answer(tmp_path, caplog):
    with IntakeDir(tmp_path, missing_timeout=0) as box:
        (box.inbox / _raw(b"bad\x81\xff.toml")).write_text("size = 64\n")
        (box.inbox / _raw(b"bad\x81\xff.notes.txt")).write_text("mine")
        with caplog.at_level(logging.WARNING):
            box.scan()
        assert "a bug in nst" not in caplog.text
        job = box.jobs()["bad\\x81ÿ"]
        assert job.status == "failed" and "still missing: bad\\x81ÿ.content.jpg" in job.error
        folder = box.outbox_dir / job.outbox_dir
        assert "bad\\x81ÿ" in (folder / "error.txt").read_text()
        assert sorted(os.listdir(folder / "inputs")) == ["bad\\x81ÿ.notes.txt", "bad\\x81ÿ.toml"]
        assert shown(_raw(b"plain.jpg")) == "plain.jpg"


def test_a_sparse_file_beside_a_job_is_left_in_the_inbox_unread(tmp_path):
    with IntakeDir(tmp_path, max_file_mb=1) as box:
        box.pair("sp")
        with open(box.inbox / "sp.blob", "wb") as f:
            f.truncate(10 * 2**40)  # 10 TiB of holes: reading or copying it would take hours
        (box.inbox / "sp.toml").write_text("size = 64\n")
        assert box.scan() == 1
        job = box.jobs()["sp"]
        refused = [i for i in job.inputs if i.get("refused")]
        assert len(refused) == 1 and "sp.blob: 10 TiB, more than the 1.0 MiB" in refused[0]["refused"]
        assert "left in the inbox" in refused[0]["refused"]
        assert os.listdir(box.inbox) == ["sp.blob"]
        assert sorted(os.listdir(box.config.archive(job.id) / "inputs")) == ["sp.content.jpg", "sp.style.png",
                                                                             "sp.toml"]


def test_an_image_over_the_size_ceiling_fails_its_job_at_once(tmp_path):
    with IntakeDir(tmp_path, max_file_mb=1, missing_timeout=300) as box:
        box.image("big.content.jpg")
        with open(box.inbox / "big.content.jpg", "ab") as f:
            f.truncate(2 * 2**20)  # a JPEG with 2 MiB of trailing holes
        box.image("big.style.png")
        (box.inbox / "big.toml").write_text("")
        box.scan()
        job = box.jobs()["big"]
        assert job.status == "failed" and "big.content.jpg: 2.0 MiB, more than the 1.0 MiB" in job.error


def test_a_copy_keeps_a_sparse_files_holes(tmp_path):
    src = tmp_path / "in" / "sparse.bin"
    src.parent.mkdir()
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(64 * 2**20)
        f.write(b"tail")
        f.truncate(128 * 2**20)
    dest = tmp_path / "copy.bin"
    digest = copy_regular(src, src.parent, dest)
    assert dest.stat().st_size == src.stat().st_size
    assert dest.stat().st_blocks * 512 <= 2 * 2**20, "the holes were written as blocks"  # two 1 MiB chunks hold data
    with open(dest, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(64 * 2**20)
        assert f.read(4) == b"tail"
    import hashlib
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()


def test_a_hard_link_to_a_file_outside_the_inbox_is_never_copied(box):
    secret = box.config.state / "secret.key"
    secret.write_bytes(MARKER)
    box.pair("h")
    os.link(secret, box.inbox / "h.key")
    (box.inbox / "h.toml").write_text("size = 64\n")
    box.scan()
    job = box.jobs()["h"]
    assert [i["name"] for i in job.inputs if i.get("refused")] == ["h.key"]
    assert "hard links" in next(i["refused"] for i in job.inputs if i.get("refused"))
    assert not (box.inbox / "h.key").exists() and secret.read_bytes() == MARKER  # only the link removed
    written = box.everything_written().replace(secret.read_bytes(), b"")
    assert MARKER not in written


def test_a_hard_linked_content_image_fails_the_job(box, tmp_path):
    outside = tmp_path / "private.jpg"
    box.image("x.jpg")
    os.replace(box.inbox / "x.jpg", outside)
    os.link(outside, box.inbox / "hl.content.jpg")
    box.image("hl.style.png")
    (box.inbox / "hl.toml").write_text("")
    box.scan()
    job = box.jobs()["hl"]
    assert job.status == "failed" and "hl.content.jpg: has 2 hard links" in job.error
    assert outside.is_file()
    assert not (box.outbox_dir / job.outbox_dir / "inputs" / "hl.content.jpg").exists()


def test_a_sidecar_leaves_a_longer_jobs_images_for_it(box):
    box.pair("trip.2024")  # images first, as the contract says; its sidecar comes later
    box.pair("trip")
    (box.inbox / "trip.toml").write_text("size = 64\n")
    box.scan()
    assert {i["name"] for i in box.jobs()["trip"].inputs} == {"trip.content.jpg", "trip.style.png", "trip.toml"}
    assert sorted(os.listdir(box.inbox)) == ["trip.2024.content.jpg", "trip.2024.style.png"]
    (box.inbox / "trip.2024.toml").write_text("size = 64\n")
    box.scan()
    assert box.jobs()["trip.2024"].status == "queued"


def test_two_sidecars_of_one_job_fail_it_at_once_with_both(tmp_path):
    with IntakeDir(tmp_path, missing_timeout=300) as box:  # nothing may wait five minutes
        box.pair("both")
        (box.inbox / "both.json").write_text('{"size": 48}')
        (box.inbox / "both.TOML").write_text("size = 56\n")
        box.scan()
        jobs = box.store.list_jobs()
        assert [j.status for j in jobs] == [JobStatus.FAILED.value]
        assert "two sidecars for one job: both.TOML, both.json" in jobs[0].error
        assert os.listdir(box.inbox) == []
        assert {i["name"] for i in jobs[0].inputs} == {"both.content.jpg", "both.style.png", "both.json", "both.TOML"}
        (box.inbox / "both.toml").write_text("size = 56\n")  # one sidecar, later: a job of its own
        box.scan()
        assert [j.status for j in box.store.list_jobs()] == [JobStatus.QUEUED.value, JobStatus.FAILED.value]


@pytest.mark.parametrize("path, why", [
    ("https://example.com/photo.jpg", "a web address"),
    ("~/photo.jpg", "a path in a home folder"),
    ("C:\\\\photos\\\\photo.jpg", "a Windows drive path"),
])
def test_a_path_that_can_never_arrive_fails_at_once(tmp_path, path, why):
    with IntakeDir(tmp_path, missing_timeout=300) as box:  # nothing may wait five minutes for it
        box.image("styles/s.png")
        (box.inbox / "u.toml").write_text(f'content = "{path}"\nstyle = "styles/s.png"\n')
        box.scan()
        job = box.jobs()["u"]
        assert job.status == JobStatus.FAILED.value and why in job.error and "can never arrive" in job.error


def test_tags_with_control_characters_are_refused(box):
    box.drop("t", 'tags = ["gpu\\u001b[2J"]\n')
    box.scan()
    job = box.jobs()["t"]
    assert job.status == "failed" and "printable" in job.error


def test_a_job_no_worker_here_can_run_fails_at_once_on_one_host(box):
    box.drop("g", "requires_gpu = true\nsize = 64\n")
    box.drop("a", 'tags = ["a100"]\nsize = 64\n')
    box.scan()
    jobs = box.jobs()
    for name, needs in (("g", "a GPU"), ("a", "the tag a100")):
        assert jobs[name].status == "failed", name
        assert f"needs a worker with {needs}, and this service (one host) has none" in jobs[name].error
        assert "README 'Several hosts'" in (box.outbox_dir / jobs[name].outbox_dir / "error.txt").read_text()


def test_a_job_for_another_worker_waits_saying_for_what(tmp_path):
    from service.config import config_from_dict
    from service.display import estimate_text
    from service.pipeline.intake import Intake

    with IntakeDir(tmp_path) as box:
        # A watcher that does not work: some other host's worker may have the GPU.
        box.intake = Intake(config_from_dict({"watch": {"settle_seconds": 0}, "cluster": {"roles": ["watch"]}},
                                             root=tmp_path), box.store, box.outbox)
        box.drop("g", "requires_gpu = true\nsize = 64\n")
        box.scan()
        job = box.jobs()["g"]
        assert job.status == "queued" and job.staged
        assert job.record["estimate"]["waits_for"] == "a worker with a GPU"
        assert estimate_text(job.record["estimate"], 1.0).startswith("waits for a worker with a GPU")


def test_images_named_in_another_case_are_the_jobs_images(box):
    """A camera's `IMG.Content.JPG`, Windows' `Content`: the job's own files, moved with it, are
    its images too, not a five-minute wait for `NAME.content.EXT` followed by "missing"."""
    box.image("trip.Content.jpg")
    box.image("trip.STYLE.Png", (20, 20, 200))
    (box.inbox / "trip.toml").write_text("size = 64\n")
    assert box.scan() == 1
    job = box.jobs()["trip"]
    assert job.status == "queued"
    roles = {i["name"]: i["role"] for i in job.inputs}
    assert roles == {"trip.Content.jpg": "content", "trip.STYLE.Png": "style", "trip.toml": "sidecar"}
    assert os.listdir(box.inbox) == []


def test_the_usual_spelling_wins_over_another_case_and_both_move_with_the_job(box):
    box.pair("trip")  # trip.content.jpg, trip.style.png
    box.image("trip.CONTENT.jpg", (0, 200, 0))
    (box.inbox / "trip.toml").write_text("")
    box.scan()
    inputs = box.jobs()["trip"].inputs
    assert [i["name"] for i in inputs if i["role"] == "content"] == ["trip.content.jpg"]
    assert "trip.CONTENT.jpg" in {i["name"] for i in inputs}  # moved with it, as any NAME.* file
    assert os.listdir(box.inbox) == []
