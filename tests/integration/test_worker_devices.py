"""`[worker] devices`: one worker process per device, all claiming from the daemon's one queue.
Two CPU workers stand in for two GPUs (each sees none: CUDA_VISIBLE_DEVICES is empty)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from servicekit import ROOT, ServiceDir


def workers(site: ServiceDir) -> list:
    return [d for d in site.store().live_daemons(within_s=10.0) if d.roles == "work"]


def alive(pid: int) -> bool:
    """Running, not a zombie: a worker's exit is what is checked."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = ServiceDir(tmp_path_factory.mktemp("devices"), defaults={"size": 64, "iterations": 12},
                      worker={"devices": ["cpu", "cpu"]}, cluster={"heartbeat_seconds": 0.5})
    site.start()
    site.wait_for(lambda: len(workers(site)) == 2, what="two worker processes serving")
    yield site
    site.close()


def test_two_worker_processes_share_one_queue_each_job_once(site):
    names = [f"share{i}" for i in range(6)]
    for name in names:
        site.drop(name, {})
    site.wait_for(lambda: all((j := site.job(n)) is not None and j.status == "done" for n in names),
                  what="six jobs done")
    jobs = [site.job(n) for n in names]
    ran = {d.run_id: d for d in workers(site)}
    assert {j.run_id for j in jobs} == set(ran), "both workers took jobs from the one queue, and only they"
    assert all(j.attempts == 1 for j in jobs)
    assert sorted(p.name for p in site.outbox.iterdir() if p.name.startswith("share")) == names
    listed = subprocess.run([sys.executable, "-m", "service.cli", "--config", str(site.config_path), "workers"],
                            capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert sum(" cpu " in line and " work " in line for line in listed.splitlines()) == 2, listed
    assert "2 worker processes: cpu, cpu" in listed


def test_a_killed_worker_process_is_started_again_and_its_job_completes_once(site):
    site.drop("long", {"iterations": 60})
    site.wait_for(lambda: (j := site.job("long")) is not None and j.status == "running" and j.progress.step > 0,
                  what="job long to make progress")
    victim = next(d for d in workers(site) if d.run_id == site.job("long").run_id)
    os.kill(victim.pid, signal.SIGKILL)
    done = site.wait_job("long", "done")
    assert done.attempts == 2 and done.run_id != victim.run_id
    assert [p.name for p in site.outbox.iterdir() if p.name.startswith("long")] == ["long"]
    site.wait_for(lambda: len(workers(site)) == 2 and victim.pid not in {d.pid for d in workers(site)},
                  what="the killed worker started again")
    assert "worker 0 on cpu exited (signal 9)" in site.log_text() or "worker 1 on cpu exited (signal 9)" in site.log_text()


def test_workers_stop_when_their_daemon_is_killed(site):
    pids = [d.pid for d in workers(site)]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    site.kill()
    site.wait_for(lambda: not any(alive(pid) for pid in pids), what="the workers to stop after their daemon's kill -9")


def test_a_start_with_jobs_waiting_wakes_its_workers_without_ending_them(site):
    """The daemon queues what waited in the inbox at once and wakes its workers (SIGUSR1) while
    they still import torch: the signal must wait for their handler, not end them."""
    site.drop("waiting", {})
    site.start()
    assert site.wait_job("waiting").status == "done"
    this_start = site.logs[-1].read_text()
    assert "exited" not in this_start, this_start[-3000:]


def test_sigterm_stops_the_daemon_and_waits_for_its_workers(site):
    site.wait_for(lambda: len(workers(site)) == 2, what="two worker processes serving")
    pids = [d.pid for d in workers(site)]
    site.stop()
    assert not any(alive(pid) for pid in pids)


def test_a_worker_stuck_in_a_job_exits_and_is_started_again(tmp_path):
    """No iteration for `stall_seconds` (here 1 s, against a 2048 px iteration on one core that
    takes longer on any CPU): the worker ends itself, as systemd's watchdog would end a daemon,
    and the daemon starts it again; the job then fails for its attempts, with the reason."""
    site = ServiceDir(tmp_path, worker={"devices": ["cpu"], "stall_seconds": 1, "max_attempts": 1},
                      cluster={"heartbeat_seconds": 0.5})
    try:
        site.start()
        site.drop("stuck", {"size": 2048, "iterations": 2},
                  content=Image.new("RGB", (2048, 1536), (90, 120, 160)))
        job = site.wait_job("stuck", "failed")
        assert "stopped during this job" in job.error
        log = site.log_text()
        assert "made no progress for 1 s; this worker exits" in log
        assert "worker 0 on cpu exited (code 70)" in log
    finally:
        site.close()
