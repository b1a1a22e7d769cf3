"""The CLI against a real daemon process and the job it really ran."""

import json
import subprocess
import sys

from servicekit import ROOT


def nst(svc, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "service.cli", "--config", str(svc.config_path), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_submit_status_jobs_show_logs_on_a_real_job(service_dir, pair_files):
    svc = service_dir(defaults={"size": 96, "iterations": 30}).start()
    content, style = pair_files
    name = nst(svc, "submit", str(content), str(style), "--name", "e2e", "--set", "outputs=1").stdout.strip()
    assert name == "e2e"
    svc.wait_for(lambda: (j := svc.job("e2e")) is not None and j.progress.step > 0,
                 what="the job to start")
    status = nst(svc, "status", "--once").stdout
    assert "service: running" in status and "running: job" in status and "ETA" in status
    doctor = nst(svc, "doctor", check=False).stdout
    assert "] daemon: running:" in doctor and f"pid {svc.proc.pid}" in doctor
    follow = nst(svc, "logs", "e2e", "--follow").stdout  # returns when the job ends
    assert "iteration 30/30" in follow and "finished" in follow
    jobs = json.loads(nst(svc, "jobs", "--json").stdout)
    assert [(j["name"], j["status"]) for j in jobs] == [("e2e", "done")]
    shown = json.loads(nst(svc, "show", "e2e", "--json").stdout)
    assert shown["record"]["final_losses"]["style"] > 0
    assert all(p.startswith(str(svc.outbox / "e2e")) for p in shown["output_paths"])
    assert {i["role"] for i in shown["inputs"]} == {"content", "style", "sidecar"}
    assert all(len(i["sha256"]) == 64 for i in shown["inputs"])
    text = nst(svc, "show", "e2e").stdout
    assert "status      done" in text and "weights" in text
    assert not svc.config.live_image(shown["id"]).exists()  # the live view goes with the archive


def test_cancel_a_running_job_keeps_a_partial_result(service_dir):
    svc = service_dir(defaults={"size": 128, "iterations": 2000}).start()
    svc.drop("stopme", {"outputs": 2})  # optimized as one batch: both pictures part way
    svc.wait_for(lambda: (j := svc.job("stopme")) is not None and j.progress.step > 5,
                 what="the job to run")
    assert "next iteration" in nst(svc, "cancel", "stopme").stdout
    job = svc.wait_job("stopme", timeout=30)
    assert job.status == "cancelled"
    names = {p.name for p in (svc.outbox / "stopme").iterdir()}
    assert {"stopme.stylized-1-partial.png", "stopme.stylized-2-partial.png", "preview.png"} <= names
    assert nst(svc, "retry", "stopme", "--set", "iterations=3").stdout.strip().startswith("stopme")
    svc.wait_for(lambda: any(j.name.startswith("stopme") and j.status == "done" for j in svc.jobs()),
                 what="the retried job to finish")
