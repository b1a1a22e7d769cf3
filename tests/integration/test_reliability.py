"""Faults, bad input and load against the real daemon process, file system and database."""

import os
import random
import signal
import subprocess
import sys
import time

import pace
import pillow_heif
import pytest
from PIL import Image

from iccprofiles import ADOBE_RGB, matrix_profile
from intakekit import bomb_png
from servicekit import small_pair

FAULT_ROUNDS = int(os.environ.get("NST_FAULT_ROUNDS", "5"))  # the long run before resolving: 20
DB_HOLD_S = int(os.environ.get("NST_DB_HOLD_S", "5"))  # the exclusive lock; the long run: 30




@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One daemon on the default test config for the tests that only drop jobs of their own
    names and wait for them (a daemon's start is 3-5 s of each such test)."""
    from servicekit import ServiceDir

    svc = ServiceDir(tmp_path_factory.mktemp("shared")).start()
    yield svc
    svc.close()


def test_bad_images_each_get_a_clear_answer_and_good_odd_images_work(shared):
    svc = shared
    pillow_heif.register_heif_opener()  # to write the HEIC case
    content, style = small_pair()
    inbox = svc.inbox
    good = content.resize((64, 48))
    cases = {}
    # Broken: each must fail with a message naming the problem.
    jpg = inbox / "corruptjpeg.content.jpg"
    good.save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:300] + os.urandom(200))
    cases["corruptjpeg"] = "failed"
    png = inbox / "truncpng.content.png"
    good.save(png)
    png.write_bytes(png.read_bytes()[:200])
    cases["truncpng"] = "failed"
    (inbox / "zero.content.png").write_bytes(b"")
    cases["zero"] = "failed"
    (inbox / "text.content.jpg").write_text("just words")
    cases["text"] = "failed"
    bomb_png(inbox / "bomb.content.png", 100_000, 100_000)
    cases["bomb"] = "failed"
    Image.new("RGB", (60000, 4), "red").save(inbox / "strip.content.png")
    cases["strip"] = "failed"
    # Odd but valid: each must work.
    Image.new("RGB", (1, 1), "blue").save(inbox / "onepixel.content.png")
    cases["onepixel"] = "done"
    good.convert("CMYK").save(inbox / "cmyk.content.jpg")
    cases["cmyk"] = "done"
    Image.fromarray(__import__("numpy").full((48, 64), 40000, dtype="uint16")).save(inbox / "deep.content.png")
    cases["deep"] = "done"
    pal = good.convert("P")
    pal.info["transparency"] = 0
    pal.save(inbox / "palette.content.png", transparency=0)
    cases["palette"] = "done"
    good.save(inbox / "anim.content.gif", save_all=True, append_images=[style.resize((64, 48))])
    cases["anim"] = "done"
    # A camera's Adobe RGB photograph, and a profile too damaged to read: both run, the log says what was done.
    good.save(inbox / "widegamut.content.png", icc_profile=matrix_profile(ADOBE_RGB, "Adobe RGB (1998) (test)"))
    cases["widegamut"] = "done"
    good.save(inbox / "badprofile.content.png", icc_profile=b"not a profile" * 16)
    cases["badprofile"] = "done"
    good.save(inbox / "iphone.content.heic", format="HEIF")  # paired by its extension like any other
    cases["iphone"] = "done"
    for name in cases:
        style.save(inbox / f"{name}.style.png")
        (inbox / f"{name}.toml").write_text("")
    for name, expected in cases.items():
        job = svc.wait_job(name, timeout=60)
        assert job.status == expected, (name, job.error)
        if expected == "failed":
            error = (svc.outbox / name / "error.txt").read_text()
            assert "How to fix it" in error and job.error in error
            assert "internal error" not in job.error
    colours = {name: (svc.outbox / name / "job.log").read_text() for name in ("widegamut", "badprofile", "onepixel")}
    assert "photograph: colours converted to sRGB from its ICC profile 'Adobe RGB (1998) (test)'" in colours["widegamut"]
    assert "photograph: its ICC profile is damaged" in colours["badprofile"]
    assert "ICC profile" not in colours["onepixel"]
    svc.drop("good-after-images", {})
    assert svc.wait_job("good-after-images").status == "done"
    assert "Traceback" not in svc.log_text()


BAD_SIDECARS = {
    "badtoml": ("toml", b"size = = 3", "not valid TOML"),
    "badjson": ("json", b"{size: 3", "not valid JSON"),
    "wrongtype": ("toml", b"size = 'large'", "whole number"),
    "unknownkey": ("toml", b"colour = 1", "unknown parameter"),
    "negative": ("toml", b"iterations = -5", "out of range"),
    "absurd": ("toml", b"size = 100000", "out of range"),
    "huge_iters": ("toml", b"iterations = 1000000000", "out of range"),
    "nan": ("json", b'{"style_weight": NaN}', "NaN"),
    "inf": ("toml", b"style_weight = inf", "finite"),
    "longstring": ("toml", b'optimizer = "' + b"x" * 100_000 + b'"', "more than the 64 KiB a file may have"),
    "nonutf8": ("toml", b"size = 64 # \xff\xfe", "UTF-8"),
    "dotdot": ("toml", b'content = "../x.png"', "inside the inbox"),
    "absolute": ("toml", b'content = "/etc/hostname"', "inside the inbox"),
}


def test_bad_sidecars_and_paths(shared, tmp_path):
    svc = shared
    content, style = small_pair()
    for name, (ext, data, _) in BAD_SIDECARS.items():
        content.save(svc.inbox / f"{name}.content.png")
        style.save(svc.inbox / f"{name}.style.png")
        (svc.inbox / f"{name}.{ext}").write_bytes(data)
    outside = tmp_path / "outside.png"
    content.save(outside)
    os.symlink(outside, svc.inbox / "escape.content.png")
    style.save(svc.inbox / "escape.style.png")
    (svc.inbox / "escape.toml").write_text("")
    (svc.inbox / "folder.toml").mkdir()
    for name, (_, _, message) in {**BAD_SIDECARS, "escape": (0, 0, "outside the inbox"),
                                  "folder": (0, 0, "is a folder")}.items():
        job = svc.wait_job(name, timeout=30)
        assert job.status == "failed" and message in job.error, (name, job.error)
        assert (svc.outbox / name / "error.txt").exists()
    assert outside.exists()  # never moved out from under its owner
    svc.drop("after", {})
    assert svc.wait_job("after").status == "done"
    shown = subprocess.run([sys.executable, "-m", "service.cli", "--config", str(svc.config_path), "show", "nan"],
                           capture_output=True, text=True)
    assert "error       nan.json: style_weight" in shown.stdout or "NaN" in shown.stdout


def test_awkward_names_and_collisions(shared):
    svc = shared
    (svc.outbox / "taken").mkdir()
    (svc.outbox / "taken" / "mine.txt").write_text("someone else's")
    names = ["with space", "quote'd \"x\"", "ünïcødé 名前", "-leading-dash", "taken", "new\nline"]
    for name in names:
        svc.drop(name, {})
    for name in names:
        assert svc.wait_job(name).status == "done", name
    assert (svc.outbox / "taken" / "mine.txt").read_text() == "someone else's"
    taken = svc.job("taken")
    assert taken.outbox_dir == f"taken-{taken.id}"
    assert svc.job("-leading-dash").outbox_dir == "leading-dash"
    assert svc.job("new\nline").outbox_dir == "new_line"
    for entry in svc.outbox.iterdir():
        assert entry.parent == svc.outbox  # nothing written outside the outbox


def test_outputs_are_not_world_writable(service_dir):
    svc = service_dir(worker={"file_mode": "0o640"}).start()
    svc.drop("modes", {})
    assert svc.wait_job("modes").status == "done"
    folder = svc.outbox / "modes"
    paths = [folder, *folder.rglob("*")]
    # The check holds only if it sees the job's files: the pictures, the record, the inputs.
    names = {p.name for p in paths}
    assert {"job.json", "job.log", "inputs", "modes.stylized.png"} <= names, sorted(names)
    assert any(p.parent.name == "inputs" for p in paths), sorted(names)
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o750 if path.is_dir() else 0o640), (path, oct(mode))


@pytest.mark.slow
def test_kill_9_at_random_points(service_dir):
    """kill -9 while loading, optimizing and writing, over and over: every job done exactly once."""
    svc = service_dir(defaults={"size": 96, "iterations": 40}, worker={"max_attempts": 100}).start()
    rng = random.Random(7)
    names = [f"k{i}" for i in range(3)]
    for name in names:
        svc.drop(name, {})
    for round_ in range(FAULT_ROUNDS):
        time.sleep(rng.uniform(0.2, 4.0))
        svc.kill()
        svc.launch()  # not waiting for it to serve: the next kill may land while it loads
    svc.started()
    for name in names:
        assert svc.wait_job(name, timeout=180).status == "done", name
    assert sorted(p.name for p in svc.outbox.iterdir()) == sorted(names)  # once each, no partials
    for name in names:
        folder = svc.outbox / name
        assert {f"{name}.stylized.png", "job.json", "preview.png", "loss.png"} <= {p.name for p in folder.iterdir()}
        assert sorted(p.name for p in (folder / "inputs").iterdir()) == [
            f"{name}.content.png", f"{name}.style.png", f"{name}.toml"]
    assert len(svc.jobs()) == len(names)


def test_sigterm_under_load_is_quick_and_loses_nothing(service_dir):
    svc = service_dir(defaults={"size": 96, "iterations": 40}).start()
    for i in range(3):
        svc.drop(f"t{i}", {})
    for _ in range(3):
        svc.wait_for(lambda: any(j.status == "running" for j in svc.jobs()), what="a running job")
        time.sleep(1.0)
        assert svc.stop(signal.SIGTERM) < pace.ceiling(10)
        svc.start()
    for i in range(3):
        assert svc.wait_job(f"t{i}", timeout=240).status == "done"


def test_database_held_by_another_process(shared):
    """A long read transaction (WAL: never blocks us) and an exclusive write lock (we wait, then go on).
    The read is held until a whole job has been done under it, however long that takes here."""
    svc = shared
    db = svc.config.database.split("///", 1)[1]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({db!r}, isolation_level=None)\n"
        "c.execute('BEGIN'); c.execute('SELECT count(*) FROM jobs').fetchall()\n"
        "print('reading', flush=True); sys.stdin.readline()\n"
        "c.execute('COMMIT')\n"
        f"c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep({DB_HOLD_S}); c.execute('COMMIT')\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "reading"
        svc.drop("during-read", {})
        assert svc.wait_job("during-read", timeout=30).status == "done"
        assert holder.poll() is None  # the read was held all along
        holder.stdin.write("go on\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        svc.drop("during-lock", {})
        assert svc.wait_job("during-lock", timeout=60).status == "done"
        holder.wait(timeout=30 + DB_HOLD_S)
        assert svc.proc.poll() is None
    finally:
        holder.kill()


def test_inbox_deleted_and_recreated(service_dir):
    # No rescan for minutes: only watching the inbox's parent can notice the new inbox.
    svc = service_dir(watch={"rescan_seconds": 600}).start()
    import shutil

    shutil.rmtree(svc.inbox)
    svc.wait_for(lambda: "is missing" in svc.log_text(), what="the daemon to report the missing inbox")
    svc.inbox.mkdir()
    svc.drop("back", {})
    assert svc.wait_job("back", timeout=30).status == "done"
    assert "watching it again" in svc.log_text()


def test_hostile_files_neither_stop_nor_leak_and_a_restart_survives_them(service_dir, tmp_path):
    """The attacks of the security review against the real daemon: a FIFO beside a bad
    sidecar, a FIFO as a sidecar, a sidecar with a 5000-digit number, links out of the
    inbox; a good job dropped with them is done, and the daemon restarts cleanly."""
    import os

    svc = service_dir().start()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET-31c")
    os.mkfifo(svc.inbox / "fp.pipe")
    (svc.inbox / "fp.toml").write_text("size = 'x'\n")
    os.mkfifo(svc.inbox / "f1.toml")
    (svc.inbox / "big.toml").write_text("size = " + "9" * 5000 + "\n")
    os.symlink(secret, svc.inbox / "t4.notes.txt")
    os.symlink(secret, svc.inbox / "t4.content.jpg")
    (svc.inbox / "t4.toml").touch()
    svc.drop("good", {})
    assert svc.wait_job("good", timeout=60).status == "done"
    for name in ("fp", "f1", "big", "t4"):
        assert svc.wait_job(name, timeout=30).status == "failed", name
    svc.stop()
    svc.start()
    svc.drop("after", {})
    assert svc.wait_job("after", timeout=60).status == "done"
    assert svc.proc.poll() is None and "Traceback" not in svc.log_text()
    for path in svc.outbox.rglob("*"):
        assert not path.is_symlink() and (not path.is_file() or b"TOPSECRET" not in path.read_bytes())
    assert sorted(os.listdir(svc.inbox)) == []


def test_many_unrelated_files_do_not_stall_the_daemon(service_dir):
    svc = service_dir().start()
    junk = svc.inbox / "junk"
    junk.mkdir()
    for i in range(10_000):
        (junk / f"note-{i}.txt").write_bytes(b"x")
    for i in range(300):
        (svc.inbox / f"stray-{i}.png").write_bytes(b"x")
    svc.drop("through", {})
    assert svc.wait_job("through", timeout=60).status == "done"
    rss_kib = int(open(f"/proc/{svc.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    assert rss_kib < 1_500_000  # torch and the network dominate; the file burst adds little


@pytest.mark.slow
def test_many_jobs_at_once(shared):
    """Sidecars dropped together, some by rename, some by slow copy: all done, none twice."""
    n = int(os.environ.get("NST_LOAD_JOBS", "20"))
    svc = shared
    content, style = small_pair(64)
    content.save(svc.root / "c.png")
    (svc.inbox / "many-styles").mkdir()
    style.save(svc.inbox / "many-styles" / "s.png")
    data = (svc.root / "c.png").read_bytes()
    names = [f"many{i}" for i in range(n)]
    for i, name in enumerate(names):
        if i % 3 == 0:  # slow copy in place
            with open(svc.inbox / f"{name}.content.png", "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(0.01)
                f.write(data[len(data) // 2:])
        else:
            (svc.inbox / f".{name}.png").write_bytes(data)
            os.rename(svc.inbox / f".{name}.png", svc.inbox / f"{name}.content.png")
        (svc.inbox / f"{name}.toml").write_text('style = "many-styles/s.png"\niterations = 1\n')

    def ours():
        return [j for j in svc.jobs() if j.name.startswith("many")]

    svc.wait_for(lambda: sum(j.status == "done" for j in ours()) == n, timeout=60 + 3 * n,
                 what=f"{n} jobs done")
    assert sorted(j.name for j in ours()) == sorted(names)
    assert sorted(p.name for p in svc.outbox.iterdir() if p.name.startswith("many")) == sorted(names)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_outbox_full_mid_job_waits_and_recovers(service_dir):
    svc = service_dir(worker={"retry_seconds": 1.0}, defaults={"size": 128, "iterations": 10})
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(svc.outbox)], check=True)
    try:
        svc.start()
        svc.drop("roomy", {})
        svc.wait_for(lambda: (j := svc.job("roomy")) is not None and j.error and "could not write" in j.error,
                     timeout=60, what="the job to report the full outbox")
        job = svc.job("roomy")
        assert job.status in ("queued", "running") and "No space left" in job.error
        assert (svc.config.archive(job.id) / "inputs" / "roomy.content.png").exists()  # inputs stay
        assert not [p for p in svc.outbox.iterdir() if p.name.endswith(".partial")]
        subprocess.run(["mount", "-o", "remount,size=20m", str(svc.outbox)], check=True)
        done = svc.wait_job("roomy", timeout=60)
        assert done.status == "done"
        # The finished images were kept, not computed again, and the loss curve survived.
        folder = svc.outbox / done.outbox_dir
        log_text = (folder / "job.log").read_text()
        assert "publishing them without recomputing" in log_text
        assert log_text.count("finished in") == 1, log_text
        assert (folder / "loss.png").exists() and (folder / "roomy.stylized.png").exists()
        assert svc.proc.poll() is None
        svc.stop()
    finally:
        subprocess.run(["umount", "-l", str(svc.outbox)], check=False)
