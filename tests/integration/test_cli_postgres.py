"""The CLI on PostgreSQL: history, workers, and moving a SQLite history over."""

import json

from click.testing import CliRunner

from service.cli import main
from service.status import JobStatus
from service.store import Store


def test_history_commands_and_db_copy_on_postgresql(tmp_path, postgres):
    url = postgres.new_database()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[paths]\ndatabase = "{url}"\n')

    def run(*args):
        return CliRunner().invoke(main, ["--config", str(cfg), *args])

    assert "schema version 2" in run("db", "migrate").output
    old = Store(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    old.migrate()
    for i in range(5):
        job, _ = old.enqueue(key=f"k{i}", name=f"old-{i}", params={"size": 64, "iterations": 3})
        old.mark_staged(job.id, [])
    old.claim_next(run_id="r")
    old.transition(1, JobStatus.DONE, run_id="r", outputs=["a.png"])
    old.dispose()
    r = run("db", "copy", "--from", f"sqlite:///{tmp_path / 'old.sqlite3'}")
    assert r.exit_code == 0 and "copied 5 job(s)" in r.output
    assert "copied 0 job(s)" in run("db", "copy", "--from", f"sqlite:///{tmp_path / 'old.sqlite3'}").output
    jobs = json.loads(run("jobs", "--json").output)
    assert [j["id"] for j in jobs] == [5, 4, 3, 2, 1] and jobs[-1]["status"] == "done"
    store = Store(url)
    new, created = store.enqueue(key="fresh", name="fresh", params={})
    assert created and new.id == 6  # ids continue after the copied history
    store.register_daemon("w1", device="cpu", roles=("work",))
    store.dispose()
    assert json.loads(run("show", "old-0", "--json").output)["outputs"] == ["a.png"]
    workers = json.loads(run("workers", "--json").output)
    assert workers[0]["roles"] == ["work"] and workers[0]["alive"]
    bad = run("db", "copy", "--from", "postgresql+psycopg://nobody@/nowhere?host=/nonexistent")
    assert bad.exit_code == 1 and bad.stderr.startswith("nst: cannot copy from")
