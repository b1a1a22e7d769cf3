"""What each worker process of `[worker] devices` is given: its one GPU, or its share of the
cores, and never the daemon's systemd socket."""

import os

import torch

from service.processes import environment, resolve


def test_a_gpu_worker_sees_only_its_gpu_and_not_the_notify_socket(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    env = environment("cuda:1", ["cuda:0", "cuda:1"])
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    assert environment("cuda", ["cuda"])["CUDA_VISIBLE_DEVICES"] == "0"


def test_cpu_workers_see_no_gpu_and_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    env = environment("cpu", ["cpu", "cpu"])
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert environment("cpu", ["cuda:0", "cpu"])["OMP_NUM_THREADS"] == str(cores)


def test_all_is_every_gpu_when_there_are_several():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve(("all",)) == ([f"cuda:{i}" for i in range(count)] if count >= 2 else [])
    assert resolve(("cpu", "cpu")) == ["cpu", "cpu"] and resolve(()) == []
