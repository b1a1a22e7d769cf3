"""Hostile files in the inbox: the intake in this process, a real SQLite store and outbox.

Whoever can write to the inbox gets a job and a clear answer, never a file from
outside the inbox, a blocked service or a stopped scan.
"""

from __future__ import annotations

import os
import resource
import shutil
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intakekit import IntakeDir
from service.pipeline.inbox import read_sidecar, safe_component
from service.pipeline.outbox import JobFolder, Outbox
from service.status import JobStatus
from service.submit import resubmit_job

MARKER = b"TOPSECRET-7d1f"


@pytest.fixture
def box(tmp_path):
    d = IntakeDir(tmp_path)
    yield d
    d.close()


@pytest.fixture
def secret(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(MARKER)
    return outside


def _scan_in_thread(box, seconds=10.0) -> None:
    """A scan that hangs (a FIFO opened for reading) fails the test instead of hanging it."""
    errors = []
    t = threading.Thread(target=lambda: errors.append(box.scan()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the inbox scan blocked"


def test_links_out_of_the_inbox_never_reach_the_outbox_the_archive_or_the_web(box, secret, tmp_path):
    from service.web import create_app

    box.image("c.jpg")
    shutil.move(box.inbox / "c.jpg", secret / "c.jpg")
    (secret / "photos").mkdir()
    box.image("p.jpg")
    shutil.move(box.inbox / "p.jpg", secret / "photos" / "p.jpg")
    web_secret = box.config.state / "web-secret"
    create_app(box.config, store=box.store)  # makes state/web-secret, the session-signing key
    key = web_secret.read_bytes()
    # The attack of the report: a refused sidecar used to carry every NAME.* along, links followed.
    os.symlink(secret / "secret.txt", box.inbox / "t4.notes.txt")
    os.symlink(secret / "c.jpg", box.inbox / "t4.content.jpg")
    (box.inbox / "t4.toml").touch()
    os.symlink(secret / "secret.txt", box.inbox / "t5.toml")  # a linked sidecar
    os.symlink(secret / "photos", box.inbox / "linked")  # a linked folder
    (box.inbox / "t6.toml").write_text('content = "linked/p.jpg"\nstyle = "linked/p.jpg"\n')
    box.pair("t7")
    os.remove(box.inbox / "t7.style.png")
    os.symlink(web_secret, box.inbox / "t7.style.png")
    (box.inbox / "t7.toml").touch()
    box.scan(3)

    jobs = box.jobs()
    assert {n: j.status for n, j in jobs.items()} == {n: "failed" for n in ("t4", "t5", "t6", "t7")}
    assert "outside the inbox" in jobs["t4"].error and "outside the inbox" in jobs["t7"].error
    written = box.everything_written()
    assert MARKER not in written and key not in written
    assert (secret / "secret.txt").read_bytes() == MARKER and web_secret.read_bytes() == key  # targets untouched
    assert not any(os.path.islink(p) for p in box.outbox_dir.rglob("*"))
    assert "t4.notes.txt" in (box.outbox_dir / "t4" / "error.txt").read_text()  # says what it did not take

    client = create_app(box.config, store=box.store).test_client()
    for job in jobs.values():
        info = client.get(f"/api/jobs/{job.id}").get_json()
        for name in info["files"]:
            body = client.get(f"/jobs/{job.id}/files/{name}").data
            assert MARKER not in body and key not in body
        zipped = client.get(f"/jobs/{job.id}/zip").data
        assert MARKER not in zipped


def test_a_fifo_never_blocks_the_scan_and_is_never_read(box):
    os.mkfifo(box.inbox / "fp.pipe")
    (box.inbox / "fp.toml").write_text("size = 'x'\n")  # a bad sidecar beside a FIFO of its name
    os.mkfifo(box.inbox / "f1.toml")  # a FIFO as the sidecar itself
    box.pair("f2")
    os.remove(box.inbox / "f2.content.jpg")
    os.mkfifo(box.inbox / "f2.content.jpg")  # a FIFO as an image
    (box.inbox / "f2.toml").touch()
    box.pair("good")
    (box.inbox / "good.toml").touch()
    _scan_in_thread(box)

    jobs = box.jobs()
    assert jobs["good"].status == "queued"
    assert jobs["fp"].status == "failed" and "expected a whole number" in jobs["fp"].error
    assert jobs["f1"].status == "failed" and "named pipe" in jobs["f1"].error
    assert jobs["f2"].status == "failed" and "named pipe" in jobs["f2"].error
    assert sorted(os.listdir(box.inbox)) == []  # the pipes went with their jobs
    box.intake.recover()  # what a restart runs: nothing left that it chokes on
    box.scan()
    assert box.jobs()["f1"].status == "failed"


def test_publishing_copies_only_regular_files(tmp_path, secret):
    inputs = tmp_path / "archive" / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "a.toml").write_text("size = 64\n")
    os.mkfifo(inputs / "pipe")
    os.symlink(secret / "secret.txt", inputs / "link.txt")
    os.symlink(secret, inputs / "dirlink")
    folder = JobFolder(1, "j", inputs_dir=inputs)
    folder.add_text("job.json", "{}")
    final = Outbox(tmp_path / "outbox").publish(folder, lambda _d: None)
    assert sorted(p.name for p in (final / "inputs").iterdir()) == ["a.toml"]


def test_a_huge_number_in_one_sidecar_fails_that_job_and_the_scan_goes_on(box):
    (box.inbox / "big.toml").write_text("size = " + "9" * 5000 + "\n")
    (box.inbox / "deep.json").write_text("[" * 100_000)
    box.pair("good")
    (box.inbox / "good.toml").touch()
    assert box.scan() == 1
    jobs = box.jobs()
    assert jobs["good"].status == "queued"
    assert jobs["big"].status == "failed" and "cannot be read" in jobs["big"].error
    assert jobs["deep"].status == "failed"
    assert "syntax" in (box.outbox_dir / "big" / "error.txt").read_text()


def test_a_huge_sidecar_is_refused_without_being_read_into_memory(box):
    size = 200 * 2**20
    with open(box.inbox / "huge.toml", "wb") as f:
        f.truncate(size)  # sparse: costs no disk until copied
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    box.scan()
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    job = box.jobs()["huge"]
    assert job.status == "failed" and "more than the 64 KiB a file may have" in job.error
    assert grew < 64 * 2**20, f"peak memory grew by {grew / 2**20:.0f} MiB"
    assert (box.outbox_dir / "huge" / "inputs" / "huge.toml").stat().st_size == size  # kept, not lost


@pytest.mark.parametrize("name", [
    "漢" * 83,  # CJK: 249 bytes in 83 characters
    "😀" * 62,  # emoji, 4 bytes each
    "e\u0301" * 83,  # combining marks
    "👍🏽" * 31,  # emoji with a skin-tone modifier
])
def test_long_names_in_any_script_publish(box, name):
    assert len(f"{name}.toml".encode()) <= 255
    (box.inbox / f"{name}.toml").write_text("size = 'x'\n")
    box.scan()
    job = box.jobs()[name]
    assert job.status == "failed" and job.outbox_dir, job.error
    folder = box.outbox_dir / job.outbox_dir
    assert (folder / "error.txt").is_file()
    cut = safe_component(name)
    assert len(cut.encode()) <= 200 and name.startswith(cut)
    assert len(f"{cut}.stylized-16-partial.png".encode()) <= 255
    # Cut at a grapheme boundary: what was cut off does not start with a mark or a modifier.
    assert name[len(cut)] not in "\u0301\U0001F3FD"


def test_cancelling_a_queued_job_publishes_its_inputs_and_retry_works(box):
    box.pair("c1")
    (box.inbox / "c1.toml").write_text("size = 64\n")
    box.scan()
    job = box.jobs()["c1"]
    assert box.store.request_cancel(job.id) == JobStatus.CANCELLED
    box.intake.sweep()
    job = box.store.get(job.id)
    folder = box.outbox_dir / job.outbox_dir
    assert sorted(p.name for p in (folder / "inputs").iterdir()) == ["c1.content.jpg", "c1.style.png", "c1.toml"]
    assert '"cancelled"' in (folder / "job.json").read_text()
    assert not (box.config.archive(job.id)).exists()
    name = resubmit_job(box.config, job, {})
    assert (box.inbox / f"{name}.json").is_file()


def test_a_redropped_sidecar_with_the_same_mtime_is_a_new_job(box):
    box.pair("r")
    (box.inbox / "r.toml").write_text("size = 64\n")
    stamp = (box.inbox / "r.toml").stat().st_mtime_ns
    keep = {p.name: p.read_bytes() for p in box.inbox.iterdir()}
    box.scan()
    for name, data in keep.items():  # as `cp -p` or rsync would: same bytes, same mtime
        (box.inbox / name).write_bytes(data)
        os.utime(box.inbox / name, ns=(stamp, stamp))
    box.scan()
    assert [j.status for j in box.store.list_jobs()] == ["queued", "queued"]


def test_a_refusal_while_the_outbox_cannot_be_written_is_published_later(box):
    shutil.rmtree(box.outbox_dir)
    box.outbox_dir.write_text("not a folder")  # publishing fails with an OSError, even for root
    (box.inbox / "late.toml").write_text("size = 'x'\n")
    box.scan()
    job = box.jobs()["late"]
    assert job.outbox_dir is None
    box.intake.sweep(grace_s=0)
    assert box.jobs()["late"].outbox_dir is None  # still cannot: waits, nothing lost
    box.outbox_dir.unlink()
    box.outbox_dir.mkdir()
    box.intake.sweep(grace_s=0)
    job = box.jobs()["late"]
    assert job.status == "failed" and (box.outbox_dir / job.outbox_dir / "inputs" / "late.toml").is_file()


def test_other_files_of_the_job_move_with_it_on_success(box):
    box.pair("s")
    (box.inbox / "s.notes.txt").write_text("shot on film")
    box.pair("s.b")  # a longer job name: its files are not s's
    (box.inbox / "s.b.toml").write_text("size = 64\n")
    (box.inbox / "s.toml").write_text("size = 64\n")
    box.scan()
    jobs = box.jobs()
    archived = {i["name"] for i in jobs["s"].inputs}
    assert archived == {"s.content.jpg", "s.style.png", "s.notes.txt", "s.toml"}
    assert {i["name"] for i in jobs["s.b"].inputs} == {"s.b.content.jpg", "s.b.style.png", "s.b.toml"}
    assert os.listdir(box.inbox) == []


def test_a_sidecar_may_not_name_a_weights_file(box, secret):
    box.pair("w")
    (box.inbox / "w.toml").write_text(f'weights = "{secret / "secret.txt"}"\n')
    box.scan()
    job = box.jobs()["w"]
    assert job.status == "failed" and "config.toml" in job.error and "T" not in job.error.split(":")[-1][:3]


KINDS = ("regular", "link-in", "link-out", "dangling", "fifo", "folder", "socket")


def _make(box, secret, path, kind) -> None:
    if kind == "regular":
        box.image(path.name) if path.suffix in (".jpg", ".png") else path.write_text("size = 64\n")
    elif kind == "link-in":
        box.image("shared/real.png")
        os.symlink(box.inbox / "shared" / "real.png", path)
    elif kind == "link-out":
        os.symlink(secret / "secret.txt", path)
    elif kind == "dangling":
        os.symlink(box.inbox / "nowhere.png", path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sidecar=st.sampled_from(KINDS), content=st.sampled_from(KINDS), style=st.sampled_from(KINDS),
       extra=st.sampled_from(KINDS), suffix=st.sampled_from([".toml", ".json"]))
def test_any_mix_of_file_kinds_gives_an_answer_and_leaks_nothing(tmp_path_factory, sidecar, content, style, extra,
                                                                 suffix):
    root = tmp_path_factory.mktemp("mix")
    outside = root / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(MARKER)
    box = IntakeDir(root, missing_timeout=0.0)
    try:
        for path, kind in ((box.inbox / "m.content.jpg", content), (box.inbox / "m.style.png", style),
                           (box.inbox / "m.extra.txt", extra)):
            _make(box, outside, path, kind)
        _make(box, outside, box.inbox / f"m{suffix}", sidecar)
        if sidecar == "regular" and suffix == ".json":
            (box.inbox / "m.json").write_text("{}")
        _scan_in_thread(box)
        _scan_in_thread(box)
        jobs = box.jobs()
        assert set(jobs) == {"m"}
        assert jobs["m"].status in ("queued", "failed")
        if jobs["m"].status == "failed":
            assert jobs["m"].outbox_dir and (box.outbox_dir / jobs["m"].outbox_dir / "error.txt").is_file()
        else:
            assert sidecar in ("regular", "link-in") and content in ("regular", "link-in")
        assert MARKER not in box.everything_written()
        assert (outside / "secret.txt").read_bytes() == MARKER
    finally:
        box.close()


def test_a_newline_in_a_file_name_cannot_forge_a_log_line():
    import logging

    from service.daemon import OneLineFormatter

    record = logging.LogRecord("nst.intake", logging.WARNING, __file__, 1, "could not take %s yet: %s",
                               ("evil\n2026-01-01 00:00:00 INFO nst.worker: job 1 done\r.toml", "x"), None)
    line = OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\r" not in line and "evil\\n2026" in line


def test_a_settled_file_that_is_plainly_refused_fails_at_once(tmp_path):
    from intakekit import bomb_png

    box = IntakeDir(tmp_path, missing_timeout=300)
    try:
        box.pair("bomb")
        bomb_png(box.inbox / "bomb.content.png", 40_000, 40_000)
        os.remove(box.inbox / "bomb.content.jpg")
        box.pair("text")
        (box.inbox / "text.content.jpg").write_text("just words")
        box.pair("cut")
        data = (box.inbox / "cut.style.png").read_bytes()
        (box.inbox / "cut.style.png").write_bytes(data[: len(data) // 2])  # may still be arriving
        for name in ("bomb", "text", "cut"):
            (box.inbox / f"{name}.toml").touch()
        box.scan()
        jobs = box.jobs()
        assert jobs["bomb"].status == "failed" and "megapixels" in jobs["bomb"].error
        assert "max_image_pixels" in (box.outbox_dir / "bomb" / "error.txt").read_text()
        assert jobs["text"].status == "failed" and "not an image" in jobs["text"].error
        # May still be arriving: waits up to missing_timeout, and the history says so meanwhile.
        assert jobs["cut"].status == "queued" and (box.inbox / "cut.toml").exists()
        assert jobs["cut"].error.startswith("waiting for its images: ") and "truncated" in jobs["cut"].error
    finally:
        box.close()


def test_a_waiting_sidecar_shows_in_the_history_and_its_job_goes_on_when_the_images_come(tmp_path, monkeypatch):
    monkeypatch.setattr("service.pipeline.intake.ORPHAN_GRACE_S", 0.0)
    box = IntakeDir(tmp_path, missing_timeout=300)
    try:
        (box.inbox / "late.toml").write_text("size = 64\n")
        (box.inbox / "gone.toml").write_text("size = 64\n")
        box.scan()
        jobs = box.jobs()
        assert jobs["late"].status == "queued" and "still missing: late.content.jpg" in jobs["late"].error
        assert box.store.claim_next(run_id="w") is None  # not staged: no worker takes it
        box.pair("late")
        (box.inbox / "gone.toml").unlink()  # its owner takes it back
        assert box.scan() == 1
        box.intake.sweep()
        jobs = box.jobs()
        assert jobs["late"].status == "queued" and jobs["late"].error is None and jobs["late"].staged
        assert len(box.store.list_jobs()) == 2  # the waiting job itself went on: none recorded twice
        assert jobs["gone"].status == "cancelled" and "left the inbox" in jobs["gone"].error
    finally:
        box.close()


def test_a_waiting_job_ends_when_its_sidecar_is_rewritten_or_taken_back_while_no_daemon_runs(tmp_path, monkeypatch):
    """A rewritten sidecar is a new drop, a job of its own; the job recorded for the old one
    ended only if the sidecar's path left the inbox, and with a rewrite it never did: it stayed
    queued, "waiting for its images", for ever. So did one whose sidecar went while no daemon ran.
    Its absence counts only after a grace (another host's listing of a share may lag)."""
    from service.submit import SubmitError, resubmit_job

    with IntakeDir(tmp_path, missing_timeout=300) as box:
        (box.inbox / "w.toml").write_text("size = 64\n")
        (box.inbox / "x.toml").write_text("size = 64\n")
        box.scan()
        (box.inbox / "w.toml").write_text("size = 48\n")
        box.scan()
        box.intake.sweep()  # within the grace: the old job still waits
        assert [j.status for j in box.store.list_jobs()] == ["queued"] * 3
        monkeypatch.setattr("service.pipeline.intake.ORPHAN_GRACE_S", 0.0)
        box.intake.sweep()
        jobs = {j.id: j for j in box.store.list_jobs()}
        assert (jobs[1].status, jobs[1].error) == ("cancelled", "its sidecar left the inbox (taken back, or "
                                                   "rewritten: a new job) while it waited for its images")
        assert jobs[3].name == "w" and jobs[3].status == "queued" and jobs[3].size == 48
        assert jobs[3].error.startswith("waiting for its images: ") and jobs[2].status == "queued"
    (box.inbox / "x.toml").unlink()  # while no daemon runs
    with IntakeDir(tmp_path, missing_timeout=300) as box:
        box.intake.recover()
        box.pair("w")
        assert box.scan() == 1
        assert [(j.id, j.status, j.staged) for j in box.store.list_jobs()] == [
            (3, "queued", True), (2, "cancelled", False), (1, "cancelled", False)]
        with pytest.raises(SubmitError, match="job 2 took nothing in: its sidecar left the inbox"):
            resubmit_job(box.config, box.store.get(2), {})


def test_a_rewritten_waiting_sidecar_waits_the_whole_missing_timeout_of_its_own(tmp_path):
    """The rewrite is a new job; its wait for the images was timed from the old sidecar's first
    scan, kept by path, so a sidecar fixed four minutes in failed one minute later, not five."""
    now = [0.0]
    with IntakeDir(tmp_path, missing_timeout=300) as box:
        box.intake.clock = lambda: now[0]
        (box.inbox / "w.toml").write_text("size = 64\n")
        box.scan()
        now[0] = 250.0
        (box.inbox / "w.toml").write_text("size = 48\n")  # fixed by its owner, images still to come
        box.scan()
        now[0] = 400.0  # 150 s after the rewrite, 400 s after the first drop
        box.scan()
        rewritten = next(j for j in box.store.list_jobs() if j.size == 48)
        assert rewritten.status == "queued" and rewritten.error.startswith("waiting for its images: ")
        now[0] = 551.0  # 301 s after the rewrite
        box.scan()
        rewritten = box.store.get(rewritten.id)
        assert rewritten.status == "failed" and rewritten.error.startswith("gave up after waiting 300 s")



def test_a_waiting_sidecar_is_read_once_while_it_waits_and_again_whenever_it_is_replaced(tmp_path, monkeypatch, secret):
    """A sidecar waiting for its images was read, hashed and parsed at every scan (twice a
    second while anything settles: 300 waiting cost 60-80 ms a scan). It is read once; a
    rewrite (even to the same size, its mtime put back as `cp -p` or rsync do) or a link
    swapped in is read again, and the link refused."""
    from service.pipeline import intake

    reads = []
    monkeypatch.setattr(intake, "read_sidecar", lambda path, inbox: reads.append(path.name) or read_sidecar(path, inbox))
    with IntakeDir(tmp_path, missing_timeout=300) as box:
        sidecar = box.inbox / "w.toml"
        sidecar.write_text("size = 64\n")
        stamp = sidecar.stat().st_mtime_ns
        box.scan(times=5)
        assert reads == ["w.toml"]
        sidecar.write_text("size = 48\n")
        os.utime(sidecar, ns=(stamp, stamp))
        box.scan(times=3)
        assert reads == ["w.toml"] * 2
        box.pair("w")
        assert box.scan() == 1
        assert [(j.size, j.status, j.staged) for j in box.store.list_jobs()] == [(48, "queued", True), (64, "queued", False)]

        (box.inbox / "v.toml").write_text("size = 64\n")
        box.scan(times=2)
        os.replace(box.inbox / "v.toml", tmp_path / "v.toml")
        os.symlink(secret / "secret.txt", box.inbox / "v.toml")
        box.scan()
        box.pair("v")
        box.scan()
        linked = [j for j in box.store.list_jobs() if j.name == "v" and j.status == "failed"]
        assert len(linked) == 1 and "a link that points outside the inbox" in linked[0].error
        assert MARKER not in box.everything_written()


def test_a_job_cancelled_while_it_waits_for_its_images_takes_its_files_out_of_the_inbox(tmp_path):
    """`nst cancel` says the service moves a cancelled job's inputs to the outbox; a job cancelled
    while its sidecar waited for images left the sidecar, and the images when they came, in the
    inbox for ever, looked at twice a second, with no folder."""
    from service.submit import can_resubmit

    with IntakeDir(tmp_path, missing_timeout=300) as box:
        (box.inbox / "c.toml").write_text("size = 64\n")
        (box.inbox / "d.toml").write_text("size = 64\n")
        box.scan()
        jobs = box.jobs()
        box.pair("d")  # its images came: the cancel reaches it before the next scan
        for name in ("c", "d"):
            assert box.store.request_cancel(jobs[name].id) == JobStatus.CANCELLED
        box.intake.sweep()
        assert os.listdir(box.inbox) == []
        jobs = box.jobs()
        assert sorted(os.listdir(box.outbox_dir / "c" / "inputs")) == ["c.toml"]
        assert sorted(os.listdir(box.outbox_dir / "d" / "inputs")) == ["d.content.jpg", "d.style.png", "d.toml"]
        assert jobs["d"].status == "cancelled" and can_resubmit(box.config, jobs["d"])
        assert box.scan() == 0 and len(box.store.list_jobs()) == 2


def test_a_file_moved_out_while_being_opened_is_looked_at_again_not_refused(tmp_path, monkeypatch):
    """Another host's watcher stages the same job (renames its files into the archive) between
    this one's check and its open: the opened file then resolves outside the inbox. That is no
    refusal (it failed a job the other daemon was staging, in the three-daemon test) but a file
    gone, which the scan looks at again; a linked folder out of the inbox is still refused."""
    from service import safefiles
    from service.errors import RefusedFile

    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    (inbox / "j.content.png").write_bytes(b"picture")
    real_open = os.open

    def open_then_staged_elsewhere(path, flags, *args):
        fd = real_open(path, flags, *args)
        if str(path).endswith("j.content.png"):
            os.rename(inbox / "j.content.png", archive / "j.content.png")
        return fd

    monkeypatch.setattr(safefiles.os, "open", open_then_staged_elsewhere)
    with pytest.raises(FileNotFoundError):
        safefiles.read_regular(inbox / "j.content.png", inbox, max_bytes=100)
    monkeypatch.setattr(safefiles.os, "open", real_open)

    os.symlink(archive, inbox / "linked")
    with pytest.raises(RefusedFile, match="outside the inbox"):
        safefiles.read_regular(inbox / "linked" / "j.content.png", inbox, max_bytes=100)
