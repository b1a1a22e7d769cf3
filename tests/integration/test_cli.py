"""Every `nst` command through click's CliRunner, against a real SQLite store."""

import grp
import json
import os
import pwd
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from service.cli import main
from service.status import JobStatus
from service.store import Store


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "site"
    r = CliRunner().invoke(main, ["init", str(root)])
    assert r.exit_code == 0, r.output
    cfg = root / "config.toml"
    store = Store(f"sqlite:///{root / 'state' / 'jobs.sqlite3'}")
    store.migrate()

    def run(*args):
        return CliRunner().invoke(main, ["--config", str(cfg), *args])

    yield root, store, run
    store.dispose()


def fill(store, n=3):
    ids = []
    for i in range(n):
        job, _ = store.enqueue(key=f"k{i}", name=f"portrait-{i}" if i % 2 == 0 else f"land-{i}",
                               params={"size": 256, "iterations": 10})
        store.mark_staged(job.id, [{"role": "content", "name": "c.png", "sha256": "ab"}])
        ids.append(job.id)
    return ids


def test_init_refuses_to_overwrite(env):
    root, _, run = env
    assert (root / "inbox").is_dir() and (root / "outbox").is_dir() and (root / "state").is_dir()
    r = CliRunner().invoke(main, ["init", str(root)])
    assert r.exit_code == 1 and "exists; not overwriting" in r.stderr


def test_jobs_table_json_and_filters(env):
    _, store, run = env
    ids = fill(store)
    store.claim_next(run_id="r")
    store.transition(ids[0], JobStatus.DONE, run_id="r", outputs=["a.png", "b.png"])
    r = run("jobs")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "SUBMITTED", "DURATION", "SIZE", "ITERS", "OUTPUTS"]
    assert [l.split()[0] for l in lines[1:]] == [str(i) for i in reversed(ids)]  # newest first
    data = json.loads(run("jobs", "--json").output)
    assert [d["id"] for d in data] == list(reversed(ids))
    assert set(data[0]) == {"id", "name", "status", "priority", "submitted", "started", "finished", "duration_s",
                            "size", "iterations", "attempts", "error", "outputs", "outbox_dir", "progress"}
    assert data[-1]["progress"]["fraction"] == 1.0  # done
    shown = json.loads(run("show", str(ids[0]), "--json").output)
    assert set(data[-1]) < set(shown) and {"params", "inputs", "record"} <= set(shown)  # one serialization
    assert [d["name"] for d in json.loads(run("jobs", "--json", "--status", "done").output)] == ["portrait-0"]
    assert len(json.loads(run("jobs", "--json", "--name", "portrait*").output)) == 2
    assert len(json.loads(run("jobs", "--json", "--limit", "1").output)) == 1
    assert json.loads(run("jobs", "--json", "--since", "2999-01-01").output) == []
    assert len(json.loads(run("jobs", "--json", "--until", "2999-01-01").output)) == 3
    bad = run("jobs", "--since", "yesterday-ish")
    assert bad.exit_code == 1 and "not a date" in bad.stderr
    assert run("jobs", "--status", "nope").exit_code == 2


def test_show_gives_a_queued_jobs_estimate(env):
    _, store, run = env
    (job_id,) = fill(store, 1)
    store.note_estimate(job_id, {"device": "cpu", "budget_mib": 10240, "peak_mib": 9000, "work_mpix_iterations": 100.0,
                                 "scales": [{"size": [4096, 3072], "tile": 1328, "tiles": 12}]})
    r = run("show", str(job_id))
    assert "  estimate    peak about 8.8 GiB of 10.0; 1 scale, 4096x3072 in 12 tiles" in r.output


def test_show_by_id_and_name(env):
    _, store, run = env
    ids = fill(store, 1)
    r = run("show", str(ids[0]))
    assert r.exit_code == 0 and "job 1: portrait-0" in r.output and "size = 256" in r.output
    d = json.loads(run("show", "portrait-0", "--json").output)
    assert d["id"] == ids[0] and d["inputs"][0]["sha256"] == "ab"
    missing = run("show", "nope")
    assert missing.exit_code == 1 and missing.stderr.strip() == "nst: no job 'nope' (nst jobs lists them)"
    again, _ = store.enqueue(key="again", name="portrait-0", params={})
    r = run("show", "portrait-0")  # two of that name: the newest, and it says so
    assert f"job {again.id}: portrait-0" in r.stdout and "2 jobs are named 'portrait-0'" in r.stderr
    assert "jobs are named" not in run("show", str(ids[0])).stderr


def test_jobs_says_what_a_queued_job_waits_for(env):
    """README's inbox contract: a sidecar whose images have not arrived is in the history
    at once, and `nst jobs` says "waiting for its images: ..." rather than plain "queued"."""
    _, store, run = env
    job, _ = store.enqueue(key="w", name="waits", params={"size": 64})
    store.note_waiting(job.id, "still missing: waits.content.jpg")
    row = [line for line in run("jobs").output.splitlines() if "waits" in line][0]
    assert "waiting for its images: still missing" in row, row


def test_the_outputs_column_counts_pictures(env):
    _, store, run = env
    ids = fill(store, 2)
    store.claim_next(run_id="r")
    store.transition(ids[0], JobStatus.DONE, run_id="r", outputs=["a.stylized.png", "a.corrected.png"])
    rows = {line.split()[0]: line.split()[-1] for line in run("jobs").output.splitlines()[1:]}
    assert rows == {str(ids[0]): "1", str(ids[1]): "-"}


def test_cancel_and_retry(env):
    root, store, run = env
    ids = fill(store, 2)
    assert "cancelled" in run("cancel", str(ids[0])).output
    assert store.get(ids[0]).status == "cancelled"
    r = run("cancel", str(ids[0]))
    assert r.exit_code == 1 and "only queued or running" in r.stderr
    store.claim_next(run_id="r")
    assert "next iteration" in run("cancel", str(ids[1])).output
    r = run("retry", str(ids[1]))
    assert r.exit_code == 1 and "only failed or cancelled" in r.stderr
    r = run("retry", str(ids[0]))
    assert r.exit_code == 1 and "no outbox folder" in r.stderr


def test_retry_requeues_from_the_archived_inputs(env, content_image, style_image):
    root, store, run = env
    job, _ = store.enqueue(key="x", name="again", params={"size": 64, "iterations": 3})
    inputs = root / "outbox" / "again" / "inputs"
    inputs.mkdir(parents=True)
    content_image.save(inputs / "again.content.png")
    style_image.save(inputs / "again.style.png")
    store.mark_staged(job.id, [{"role": "content", "name": "again.content.png"},
                               {"role": "style", "name": "again.style.png"}])
    store.reserve_outbox_dir(job.id, None, "again")
    store.transition(job.id, JobStatus.FAILED, error="x")
    r = run("retry", "again", "--set", "size=96")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "again" and "the service gives it a job id" in r.stderr
    sidecar = json.loads((root / "inbox" / "again.json").read_text())
    assert sidecar["size"] == 96 and sidecar["iterations"] == 3
    assert (root / "inbox" / sidecar["content"]).exists()


def test_retry_keeps_the_refused_sidecars_valid_settings_and_set_mends_it(env, content_image, style_image):
    """A sidecar refused for a misspelt key: the retry keeps its size (not the defaults' 512),
    leaves the misspelt key out, and --set supplies what was meant."""
    root, store, run = env
    job, _ = store.enqueue(key="y", name="typo", params={}, error="typo.toml: unknown key 'iteratons'")
    inputs = root / "outbox" / "typo" / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "typo.toml").write_text('size = 256\niteratons = 20\nstrength = 7\npriority = 3\ntags = ["cpu"]\n')
    content_image.save(inputs / "typo.content.png")
    style_image.save(inputs / "typo.style.png")
    # As intake archives a refused job's own files: the sidecar, and the others without roles.
    store.mark_staged(job.id, [{"role": "sidecar", "name": "typo.toml"}, {"role": "file", "name": "typo.content.png"},
                               {"role": "file", "name": "typo.style.png"}])
    store.reserve_outbox_dir(job.id, None, "typo")
    store.transition(job.id, JobStatus.FAILED, error="typo.toml: unknown key 'iteratons'")
    r = run("retry", "typo", "--set", "iterations=20")
    assert r.exit_code == 0, r.output
    sidecar = json.loads((root / "inbox" / "typo.json").read_text())
    assert sidecar["size"] == 256 and sidecar["iterations"] == 20
    assert "iteratons" not in sidecar and "strength" not in sidecar  # misspelt; out of range
    assert sidecar["priority"] == 3 and sidecar["tags"] == ["cpu"]
    assert (root / "inbox" / sidecar["content"]).exists() and (root / "inbox" / sidecar["style"]).exists()


def test_submit_writes_images_then_sidecar(env, pair_files):
    root, _, run = env
    content, style = pair_files
    r = run("submit", str(content), str(style), str(style), "--name", "two styles", "--set", "size=200",
            "--priority", "4")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "two styles"
    sidecar = json.loads((root / "inbox" / "two styles.json").read_text())
    assert sidecar["style"] == ["two styles.style-1.png", "two styles.style-2.png"]
    assert sidecar["size"] == 200 and sidecar["priority"] == 4
    assert not [p for p in (root / "inbox").iterdir() if p.name.startswith(".")]
    again = run("submit", str(content), str(style), "--name", "two styles")
    assert again.output.strip() == "two styles-2"
    bad = run("submit", str(content), str(style), "--set", "size=99999")
    assert bad.exit_code == 1 and "size" in bad.stderr
    assert not (root / "inbox" / "photo.json").exists()


def test_logs_of_a_finished_job(env):
    root, store, run = env
    ids = fill(store, 1)
    folder = root / "outbox" / "portrait-0"
    folder.mkdir()
    (folder / "job.log").write_text("line one\nline two\n")
    store.reserve_outbox_dir(ids[0], None, "portrait-0")
    store.transition(ids[0], JobStatus.CANCELLED)
    r = run("logs", "portrait-0")
    assert r.exit_code == 0 and r.output == "line one\nline two\n"
    assert run("logs", "portrait-0", "--follow").output == "line one\nline two\n"


def test_status_without_a_daemon(env):
    _, store, run = env
    fill(store, 2)
    r = run("status", "--once")
    assert r.exit_code == 3  # as `systemctl status` for a stopped service: scripts can tell
    assert "service: not running" in r.output and "queue: 2 job(s)" in r.output


def test_an_empty_history_is_empty_not_an_error(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    r = CliRunner().invoke(main, ["--config", str(cfg), "jobs", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = CliRunner().invoke(main, ["--config", str(cfg), "jobs"])
    assert r.exit_code == 0 and "No jobs yet" in r.stderr
    for args, code in ((["workers", "--json"], 0), (["status", "--once"], 3)):  # 3: no daemon
        r = CliRunner().invoke(main, ["--config", str(cfg), *args])
        assert r.exit_code == code, (args, r.output)
    r = CliRunner().invoke(main, ["--config", str(cfg), "show", "1"])
    assert r.exit_code == 1 and "no job '1'" in r.stderr
    assert not (tmp_path / "state" / "jobs.sqlite3").exists()  # a read creates no database


def test_bad_config_is_one_line(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[defaults]\nsize = 'x'\n")
    r = CliRunner().invoke(main, ["--config", str(cfg), "jobs"])
    assert r.exit_code == 1 and r.stderr.startswith("nst: config [defaults]: size") and "Traceback" not in r.output


def test_doctor(env):
    _, _, run = env
    r = run("doctor")
    assert r.exit_code == 0, r.output
    for check in ("config", "inbox", "outbox", "state", "database", "weights", "face detector", "pictures", "device",
                  "precision", "observer", "daemon", "web page"):
        assert f"] {check}:" in r.output
    assert "daemon: not running" in r.output
    assert re.search(r"\[ok  \] pictures: reads HEIC \(pillow-heif [\d.]+, libheif [\d.]+\), AVIF \(libavif [\d.]+\), "
                     r"colour profiles \(littleCMS [\d.]+\)", r.output), r.output


def test_doctor_checks_the_weights_jobs_will_load_and_warns_of_an_open_page(env):
    root, _, run = env
    cfg = root / "config.toml"
    cfg.write_text(cfg.read_text().replace('weights = "caffe"', 'weights = "/etc/passwd"')
                   .replace('host = "127.0.0.1"', 'host = "0.0.0.0"').replace("enabled = false", "enabled = true"))
    r = run("doctor")
    assert r.exit_code == 1
    assert "[FAIL] weights: [defaults] weights = '/etc/passwd':" in r.output
    assert "[FAIL] web access: [web] host = '0.0.0.0' with no password" in r.output


def test_doctor_never_shows_a_database_password_and_answers_for_a_server_that_is_down(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[paths]\ndatabase = "postgresql+psycopg://nst:hunter2secret@127.0.0.1:{port}/nst"\n')
    r = CliRunner().invoke(main, ["--config", str(cfg), "doctor"])
    assert "[FAIL] database: postgresql+psycopg://***@127.0.0.1" in r.output
    assert "hunter2secret" not in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("damage", ["garbage", "folder"])
def test_a_damaged_database_is_one_line_at_once(tmp_path, monkeypatch, damage):
    import time as time_module

    root = tmp_path / "site"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    db = root / "state" / "jobs.sqlite3"
    db.parent.mkdir(exist_ok=True)
    if damage == "folder":
        db.mkdir()
    else:
        db.write_bytes(b"this is not a database, only its name" * 200)

    def no_waiting(_seconds):
        raise AssertionError("waited on a damaged database as if it were an outage")

    monkeypatch.setattr(time_module, "sleep", no_waiting)
    import logging  # `serve` sets up the service's logging in this process: put pytest's back after
    monkeypatch.setattr(logging.root, "handlers", logging.root.handlers[:])
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    for command in (["jobs"], ["show", "1"], ["status", "--once"], ["serve"]):
        r = CliRunner().invoke(main, ["--config", str(root / "config.toml"), *command])
        assert r.exit_code == 1, (command, r.output)
        assert r.stderr.startswith("nst: the database ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.output and "move it away" in r.stderr


def test_names_with_control_characters_never_reach_the_terminal_raw(env):
    _, store, run = env
    job, _ = store.enqueue(key="esc", name="evil\x1b[2J\rname\x08\n", params={"size": 64})
    store.mark_staged(job.id, [{"role": "content", "name": "evil\x1b]0;title\x07.png", "sha256": "ab"}])
    for command in (["jobs"], ["show", str(job.id)], ["status", "--once"]):
        r = run(*command)
        assert r.exit_code in (0, 3), r.output  # 3: status, with no daemon
        assert not any(c in r.output for c in "\x1b\r\x08\x07"), (command, r.output)
    assert "evil\\x1b[2J\\rname" in run("jobs").output


def test_service_install_prints_a_hardened_unit(env, tmp_path, monkeypatch):
    root, _, run = env
    r = run("service", "install", "--print")
    assert r.exit_code == 0
    unit = r.output
    for line in ("Type=notify", "Restart=on-failure", "KillMode=mixed", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "WatchdogSec=300", "TimeoutStopSec=60"):
        assert line in unit.splitlines()
    rw = next(l for l in unit.splitlines() if l.startswith("ReadWritePaths="))
    for sub in ("inbox", "outbox", "state"):
        assert str(root / sub) in rw
    assert f"--config {root / 'config.toml'} serve" in unit
    monkeypatch.setenv("HOME", str(tmp_path))
    user_unit = run("service", "install", "--user", "--print").stdout
    assert "WantedBy=default.target" in user_unit and "ProtectHome=read-only" not in user_unit
    r = run("service", "install", "--user")
    assert r.exit_code == 0 and (tmp_path / ".config/systemd/user/nst.service").read_text() == user_unit


def test_system_unit_runs_as_the_folder_owner_or_the_named_account(env):
    root, _, run = env
    owner = root.stat().st_uid
    unit = run("service", "install", "--print").output.splitlines()
    if owner == 0:
        assert not any(line.startswith("User=") for line in unit)
    else:
        assert f"User={pwd.getpwuid(owner).pw_name}" in unit
    if os.geteuid() == 0:
        refused = run("service", "install", "--print", "--run-as", "nobody")  # the folders are root's
        assert refused.exit_code == 1 and "'nobody' cannot write" in refused.stderr and "chown -R nobody:" in \
            refused.stderr
        nobody_uid = pwd.getpwnam("nobody").pw_uid
        for folder in (root, root / "inbox", root / "outbox", root / "state"):
            os.chown(folder, nobody_uid, -1)
        try:
            unit = run("service", "install", "--print", "--run-as", "nobody").output.splitlines()
            assert "User=nobody" in unit
            assert f"Group={grp.getgrgid(pwd.getpwnam('nobody').pw_gid).gr_name}" in unit
            assert "User=nobody" in run("service", "install", "--print").output.splitlines()  # the owner
        finally:
            for folder in (root, root / "inbox", root / "outbox", root / "state"):
                os.chown(folder, owner, -1)
        as_root = run("service", "install", "--print")
        assert "owned by root, so the unit runs as root" in as_root.stderr
    r = run("service", "install", "--print", "--run-as", "no-such-account-here")
    assert r.exit_code != 0 and "no account named" in r.output
    r = run("service", "install", "--print", "--user", "--run-as", "nobody")
    assert r.exit_code != 0 and "system units" in r.output


def test_every_command_has_help_with_an_example():
    for name, command in main.commands.items():
        subcommands = getattr(command, "commands", {name: command})
        for sub in subcommands.values():
            if getattr(sub, "commands", None):
                continue
            assert "Example" in (sub.help or ""), f"{name} {sub.name} lacks an example"


def test_history_commands_do_not_import_torch(env):
    root, store, _ = env
    fill(store, 1)
    code = ("import sys; from click.testing import CliRunner; from service.cli import main; "
            f"r = CliRunner().invoke(main, ['--config', {str(root / 'config.toml')!r}, 'jobs', '--json']); "
            "assert r.exit_code == 0, r.output; "
            f"r = CliRunner().invoke(main, ['--config', {str(root / 'config.toml')!r}, 'show', '1']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unit_hardening_by_systemd_analyze(tmp_path):
    import shutil
    from pathlib import Path

    from service.config import config_from_dict
    from service.systemd import unit_text

    site = Path("/srv/nst")  # a service's usual home; the unit is only written, not run
    config = config_from_dict({}, root=site, path=site / "config.toml")
    unit = tmp_path / "nst.service"
    unit.write_text(unit_text(config, user=False, executable="/usr/local/bin/nst", run_as="nobody"))
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "PrivateTmp=yes",
                    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service"):
        assert setting in unit.read_text().splitlines()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (scripts/test-deps.sh installs systemd)")
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                         text=True).stdout
    exposure = float(re.search(r"Overall exposure level for nst.service: ([0-9.]+)", out).group(1))
    assert exposure <= 3.0, out


def test_huge_numbers_and_out_of_range_options_are_clear_answers(env, pair_files):
    _, _, run = env
    r = run("show", "9" * 30)
    assert r.exit_code == 1 and "no job" in r.stderr and "Traceback" not in r.output
    r = run("jobs", "--limit", "9" * 30)
    assert r.exit_code == 2 and "Traceback" not in r.output
    content, style = pair_files
    r = run("submit", str(content), str(style), "--priority", "99999")
    assert r.exit_code == 2 and "-1000" in r.output


@pytest.mark.parametrize("text, message", [
    ("[paths]\ninbox = 5\n", "[paths] inbox: a path"),
    ('[paths]\ndatabase = "mysql://u:pw@db/nst"\n', "not a database nst can use"),
    ("[web]\nport = 99999\n", "[web] port: 99999 is out of range"),
    ("[watch]\nignore = [1, 2]\n", "[watch] ignore: a list of name patterns"),
    ("[watch]\nsettle_seconds = -1\n", "[watch] settle_seconds: -1.0 is out of range"),
    ("[worker]\nretry_seconds = nan\n", "[worker] retry_seconds: expected a finite number, got nan"),
    ("[cluster]\ntakeover_seconds = 0\n", "[cluster] takeover_seconds"),
    ("[limits]\nmax_image_pixels = 0\n", "[limits] max_image_pixels: 0 is out of range"),
    ("[limits]\nmax_size = 1000000000\n", "[limits] max_size: 1000000000 is out of range"),
    ("[limits]\nmax_outputs = -1\n", "[limits] max_outputs"),
])
def test_bad_config_values_are_refused_and_doctor_reports_them(tmp_path, text, message):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    r = CliRunner().invoke(main, ["--config", str(cfg), "jobs"])
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output
    assert "pw@" not in r.output  # a database password is never shown
    r = CliRunner().invoke(main, ["--config", str(cfg), "doctor"])
    assert r.exit_code == 1 and "[FAIL] config: " in r.output and message in r.output


def test_folders_under_tmp_keep_private_tmp_off_and_say_so(env):
    root, _, run = env  # the test's folders are under /tmp
    r = run("service", "install", "--print")
    assert "PrivateTmp=yes" not in r.stdout.splitlines() and "# PrivateTmp off" in r.stdout
    assert "under /tmp" in r.stderr
