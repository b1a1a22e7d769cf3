"""Several daemons on one PostgreSQL job store and one shared inbox and outbox."""

import json
import subprocess
import sys
import time

import pace
import pytest

from servicekit import ROOT, ServiceDir, small_pair, start_all


@pytest.fixture
def cluster(tmp_path, postgres):
    url = postgres.new_database()
    nodes: list[ServiceDir] = []

    def make(count=3, *, roles=None, defaults=None, cluster_extra=None):
        for i in range(count):
            node = ServiceDir(
                tmp_path, node=f"n{i}", defaults=defaults,
                watch={"polling": True, "settle_seconds": 0.3, "rescan_seconds": 2.0},
                paths={"inbox": "inbox", "outbox": "outbox", "state": f"state-n{i}", "shared": "shared",
                       "database": url},
                cluster={"heartbeat_seconds": 0.5, "takeover_seconds": 4.0,
                         **({"roles": roles[i]} if roles else {}), **(cluster_extra or {})},
            )
            nodes.append(node)
        return nodes

    yield make
    for node in nodes:
        node.close()


# Each daemon computes on one thread: the cluster's hosts are daemons on this machine's few
# cores, and three torch pools of two threads each on two cores spend their time waiting for
# each other (a 64 px job took 8.7 s among three such daemons).
ONE_CORE_EACH = {"OMP_NUM_THREADS": "1"}


def drop_many(node: ServiceDir, n: int, prefix: str = "j"):
    content, style = small_pair(64)
    (node.inbox / "styles").mkdir(exist_ok=True)
    style.save(node.inbox / "styles" / "s.png")
    for i in range(n):
        content.save(node.inbox / f".{prefix}{i}.png")
        (node.inbox / f".{prefix}{i}.png").rename(node.inbox / f"{prefix}{i}.content.png")
        (node.inbox / f".{prefix}{i}.toml").write_text('style = "styles/s.png"\n')
        (node.inbox / f".{prefix}{i}.toml").rename(node.inbox / f"{prefix}{i}.toml")


def test_three_daemons_share_the_work_exactly_once(cluster):
    nodes = start_all(cluster(3, defaults={"size": 64, "iterations": 5}), ONE_CORE_EACH)
    n = 18  # six a worker: enough for all three to race for every claim
    drop_many(nodes[0], n)
    nodes[0].wait_for(lambda: sum(j.status == "done" for j in nodes[0].jobs()) == n, timeout=60,
                      what=f"{n} jobs done")
    jobs = nodes[0].jobs()
    assert sorted(j.name for j in jobs) == sorted(f"j{i}" for i in range(n))  # each recorded once
    assert all(j.attempts == 1 for j in jobs)
    assert len({j.pid for j in jobs}) >= 2  # spread across the workers
    assert sorted(p.name for p in nodes[0].outbox.iterdir()) == sorted(f"j{i}" for i in range(n))
    workers = json.loads(subprocess.run(
        [sys.executable, "-m", "service.cli", "--config", str(nodes[0].config_path), "workers", "--json"],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    assert len([w for w in workers if w["alive"]]) == 3


def test_a_killed_workers_job_is_taken_over_and_completes_once(cluster):
    a, b = start_all(cluster(2, defaults={"size": 96, "iterations": 60}), ONE_CORE_EACH)
    a.drop("big", {})
    a.wait_for(lambda: (j := a.job("big")) is not None and j.progress.step >= 30,
               what="a worker to run the job past a checkpoint")
    # Whichever worker claimed it is killed; the other takes it over.
    holder, other = (a, b) if a.job("big").pid == a.proc.pid else (b, a)
    killed_at = time.monotonic()
    holder.kill()
    other.wait_for(lambda: (j := other.job("big")) is not None and j.attempts == 2, timeout=60,
                   what="the other worker to take the job over")
    waited = time.monotonic() - killed_at
    assert waited < 4.0 + pace.ceiling(3.0)  # the takeover time plus a claim poll or two, at this machine's pace
    job = other.wait_job("big", timeout=180)
    assert job.status == "done" and job.pid == other.proc.pid
    log = (other.outbox / "big" / "job.log").read_text()
    assert "resuming from checkpoint" in log
    assert [p.name for p in other.outbox.iterdir()] == ["big"]


def test_two_watchers_racing_record_each_job_once(cluster):
    w1, w2, worker = start_all(cluster(3, roles=[["watch"], ["watch"], ["work"]]), ONE_CORE_EACH)
    drop_many(w1, 8, prefix="r")
    w1.wait_for(lambda: sum(j.status == "done" for j in w1.jobs()) == 8, timeout=120, what="8 jobs done")
    assert sorted(j.name for j in w1.jobs()) == sorted(f"r{i}" for i in range(8))
    assert not list(w1.inbox.glob("r*"))


def test_daemons_survive_a_database_restart(cluster, postgres):
    a, b = start_all(cluster(2, defaults={"size": 64, "iterations": 20}), ONE_CORE_EACH)
    drop_many(a, 6, prefix="p")
    a.wait_for(lambda: any(j.status == "running" for j in a.jobs()), what="a running job")
    postgres.restart()
    a.wait_for(lambda: sum(j.status == "done" for j in a.jobs()) == 6, timeout=180, what="6 jobs done")
    assert a.proc.poll() is None and b.proc.poll() is None
    assert sorted(p.name for p in a.outbox.iterdir()) == sorted(f"p{i}" for i in range(6))
