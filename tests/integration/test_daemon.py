"""The daemon as a real subprocess on a real folder, watchdog observer and SQLite file."""

import json
import random
import signal
import time

import pace
import pytest
from PIL import Image

EXPECTED = {"job.json", "job.log", "preview.png", "loss.png", "inputs"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One daemon on the default test config for the tests that check the inbox contract: each
    uses job names of its own and waits for its jobs, so they never meet (a daemon's start is
    3-5 s of each such test)."""
    from servicekit import ServiceDir

    svc = ServiceDir(tmp_path_factory.mktemp("shared")).start()
    yield svc
    svc.close()


def test_a_dropped_pair_comes_out_whole(shared):
    svc = shared
    svc.drop("harbour", {"outputs": 2})
    job = svc.wait_job("harbour")
    assert job.status == "done", job.error
    folder = svc.outbox / "harbour"
    names = {p.name for p in folder.iterdir()}
    assert EXPECTED <= names
    assert {"harbour.stylized-1.png", "harbour.corrected-1.png", "harbour.stylized-2.png",
            "harbour.corrected-2.png"} <= names
    assert sorted(p.name for p in (folder / "inputs").iterdir()) == [
        "harbour.content.png", "harbour.style.png", "harbour.toml"]
    assert not list(svc.inbox.glob("harbour.*"))  # the job's files moved out of the inbox
    record = json.loads((folder / "job.json").read_text())
    assert record["id"] == job.id and record["status"] == "done"
    assert record["record"]["weights"]["sha256"].startswith("c34748d2")
    assert record["record"]["output_variants"]["harbour.stylized-2.png"] == "larger brushwork"
    assert Image.open(folder / "harbour.stylized-1.png").size == (64, 48)
    assert "iteration 4/4" in (folder / "job.log").read_text()
    assert not [p for p in svc.outbox.iterdir() if p.name.startswith(".")]


def test_shared_library_images_are_copied_and_json_sidecars_work(shared):
    svc = shared
    from servicekit import small_pair

    content, style = small_pair()
    (svc.inbox / "styles").mkdir()
    style.save(svc.inbox / "styles" / "starry.png")
    content.save(svc.inbox / "photo.jpg")
    svc.drop("lib", {"content": "photo.jpg", "style": "styles/starry.png"}, content=False, style=False,
             suffix=".json")
    assert svc.wait_job("lib").status == "done"
    assert (svc.inbox / "styles" / "starry.png").exists()  # shared: copied, not moved
    assert (svc.inbox / "photo.jpg").exists()  # not NAME.*: copied too
    assert sorted(p.name for p in (svc.outbox / "lib" / "inputs").iterdir()) == ["lib.json", "photo.jpg",
                                                                                 "starry.png"]


def test_a_slowly_written_file_is_taken_only_when_complete(service_dir):
    svc = service_dir(watch={"settle_seconds": 1.0}).start()
    from servicekit import small_pair

    content, style = small_pair()
    style.save(svc.inbox / "slow.style.png")
    (svc.inbox / "slow.toml").write_text("")
    content.save(svc.root / "full.png")
    data = (svc.root / "full.png").read_bytes()
    target = svc.inbox / "slow.content.png"
    with open(target, "wb") as f:  # written in place, in chunks, with pauses under the settle time
        for i in range(0, len(data), len(data) // 5 + 1):
            f.write(data[i:i + len(data) // 5 + 1])
            f.flush()
            time.sleep(0.6)
    completed = time.time()
    job = svc.wait_job("slow")
    assert job.status == "done", job.error
    assert job.submitted_at.replace(tzinfo=__import__("datetime").timezone.utc).timestamp() >= completed - 0.05


def test_files_dropped_while_down_are_processed_at_start(service_dir):
    svc = service_dir()
    svc.drop("early", {})
    svc.start()
    assert svc.wait_job("early").status == "done"


def test_polling_observer(service_dir):
    # No periodic rescan for an hour: after the start-up scan only the poller can see the drop.
    svc = service_dir(watch={"polling": True, "rescan_seconds": 3600.0}).start()
    time.sleep(1.5)  # the poller's first snapshot
    svc.drop("polled", {})
    assert svc.wait_job("polled", timeout=30).status == "done"


def test_sigterm_mid_job_checkpoints_its_batch_and_resumes_it(service_dir):
    # Two outputs optimized as one batch, 40 iterations each at 96 px: about 2.5 s of them left
    # when it is stopped at step 20 on the fastest CPU here (a slower or busier one leaves more, in
    # the same proportion as the test's waits). The checkpoint holds both pictures.
    svc = service_dir(defaults={"size": 96, "iterations": 40}).start()
    svc.drop("long", {"outputs": 2})
    svc.wait_for(lambda: (j := svc.job("long")) is not None and j.progress.step >= 20,
                 what="the job to make progress")
    took = svc.stop(signal.SIGTERM)
    assert took < pace.ceiling(10)
    stopping = svc.log_text().split("stop requested", 1)[1]
    assert "again" not in stopping and stopping.rstrip().endswith("stopped")  # no "watching ... again"
    job = svc.job("long")
    assert job.status == "queued" and job.attempts == 0
    assert (svc.config.checkpoints / f"{job.id}.pt").exists()
    svc.start()
    done = svc.wait_job("long", timeout=120)
    assert done.status == "done"
    log = (svc.outbox / "long" / "job.log").read_text()
    assert "resuming from checkpoint: output 1-2/2, scale 1, iteration" in log
    assert sorted(p.name for p in (svc.outbox / "long").glob("long.stylized*.png")) == [
        "long.stylized-1.png", "long.stylized-2.png"]


def test_kill_9_mid_job_resumes_and_completes_once(service_dir):
    svc = service_dir(defaults={"size": 96, "iterations": 90}).start()
    svc.drop("crash", {})
    svc.drop("after", {"iterations": 2})
    svc.wait_for(lambda: (j := svc.job("crash")) is not None and j.progress.step >= 40,
                 what="progress past a checkpoint")
    svc.kill()
    assert svc.job("crash").status == "running"
    svc.start()
    assert svc.wait_job("crash", timeout=120).status == "done"
    assert svc.wait_job("after").status == "done"
    log = (svc.outbox / "crash" / "job.log").read_text()
    assert "resuming from checkpoint" in log and "attempt 2" in log
    assert sorted(p.name for p in svc.outbox.iterdir()) == ["after", "crash"]
    assert [j.name for j in svc.jobs()].count("crash") == 1


@pytest.mark.parametrize("case", ["corrupt", "invalid", "unknown", "escape", "missing"])
def test_bad_jobs_fail_clearly_and_the_next_good_job_runs(shared, case):
    svc = shared
    bad = f"bad-{case}"
    if case == "corrupt":
        # Fixed bytes: about 3 in 1000 random tails make a PNG header whose data looks cut short,
        # which the intake rightly waits for as a file still arriving ("damaged or truncated").
        (svc.inbox / f"{bad}.content.png").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(200))
        svc.drop(bad, {}, content=False)
        expect = f"{bad}.content.png: not an image"
    elif case == "invalid":
        svc.drop(bad, "size = = 3")
        expect = "not valid TOML"
    elif case == "unknown":
        svc.drop(bad, {"stlye_weight": 3})
        expect = "did you mean 'style_weight'"
    elif case == "escape":
        svc.drop(bad, {"content": "../secret.png"}, content=False)
        expect = "inside the inbox"
    else:
        svc.drop(bad, {}, style=False)
        expect = f"still missing: {bad}.style.jpg"
    job = svc.wait_job(bad, timeout=30)
    assert job.status == "failed" and expect in job.error
    error = (svc.outbox / bad / "error.txt").read_text()
    assert expect in error and "How to fix it" in error
    assert (svc.outbox / bad / "inputs" / f"{bad}.toml").exists()
    svc.drop(f"good-{case}", {})
    assert svc.wait_job(f"good-{case}").status == "done"
    assert "Traceback" not in svc.log_text()


def test_systemd_notifications(service_dir, tmp_path):
    """READY, STATUS and STOPPING over $NOTIFY_SOCKET, and WATCHDOG pings while alive, read as
    systemd reads them: all the time (sd_notify never waits for a reader; see test_sd_notify)."""
    import socket
    import threading

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    svc = service_dir().start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
    svc.drop("notified", {})
    svc.wait_job("notified")
    svc.wait_for(lambda: any("WATCHDOG=1" in m for m in messages), what="a watchdog ping")
    svc.stop(signal.SIGTERM)
    svc.wait_for(lambda: any("STOPPING=1" in m for m in messages), what="STOPPING=1")
    done.set()
    reader.join()
    sock.close()
    text = "\n".join(messages)
    assert "READY=1" in text and "STATUS=idle" in text and "WATCHDOG=1" in text
    assert "STATUS=running job" in text and "STOPPING=1" in text


def test_queued_jobs_of_one_shape_run_in_the_daemon_as_one_batch(service_dir):
    """Three jobs of one shape queued before the worker starts (a watcher queued them): the
    daemon's worker claims the first and the two like it, optimizes them as one batch, and
    each ends in its own folder."""
    watcher = service_dir(cluster={"roles": ["watch"]}).start()
    names = ("frame1", "frame2", "frame3")
    for name in names:
        watcher.drop(name, {})
    watcher.wait_for(lambda: sum(j.status == "queued" and j.staged for j in watcher.jobs()) == 3,
                     what="three jobs queued")
    watcher.stop()
    svc = service_dir().start()
    for name in names:
        assert svc.wait_job(name).status == "done"
        record = json.loads((svc.outbox / name / "job.json").read_text())["record"]
        assert (record["memory"]["batch"], record["memory"]["jobs"]) == (3, 3)
        assert "(in one batch with 2 other jobs)" in (svc.outbox / name / "job.log").read_text()
    first = svc.job(names[0]).id
    assert svc.log_text().count(f"in one batch with job {first}") == 2
