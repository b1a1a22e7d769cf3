"""`config.toml` to one typed object: defaults, paths, and every refusal in one place."""

from pathlib import Path

import pytest

from service.config import ConfigError, config_from_dict


def test_defaults_and_paths_relative_to_the_config(tmp_path):
    c = config_from_dict({}, root=tmp_path)
    assert c.inbox == tmp_path / "inbox" and c.state == tmp_path / "state"
    assert c.database == f"sqlite:///{tmp_path / 'state' / 'jobs.sqlite3'}"
    assert c.archive(7) == tmp_path / "state" / "jobs" / "7"
    assert c.live_log(7) == tmp_path / "state" / "jobs" / "7" / "job.log"
    assert c.published_log("x") == tmp_path / "outbox" / "x" / "job.log" and c.published_log(None) is None
    shared = config_from_dict({"paths": {"shared": "/srv/shared", "database": "sqlite:///db/j.sqlite3"}},
                              root=tmp_path)
    assert shared.archive(1) == Path("/srv/shared/jobs/1")
    assert shared.database == f"sqlite:///{tmp_path / 'db' / 'j.sqlite3'}"


@pytest.mark.parametrize("data, message", [
    ({"pathz": {}}, "unknown section [pathz]"),
    ({"watch": {"setle_seconds": 1}}, "unknown key 'setle_seconds'; did you mean 'settle_seconds'?"),
    ({"limits": {"max_image_pixels": -1}}, "max_image_pixels: -1 is out of range"),
    ({"watch": {"polling": "yes"}}, "polling: expected true or false"),
    ({"worker": {"max_attempts": 0}}, "max_attempts: 0 is out of range"),
    ({"worker": {"file_mode": "0o666"}}, "world-writable"),
    ({"worker": {"file_mode": "rw"}}, "octal mode"),
    ({"web": {"host": " "}}, "an address to listen on"),
    ({"cluster": {"roles": ["watch", "paint"]}}, "roles"),
    ({"paths": {"database": "postgres://x"}}, "not a database nst can use"),
    ({"paths": {"outbox": ""}}, "a path as a string"),
    ({"defaults": {"size": 10**6}}, "[defaults]"),
    ({"worker": {"devices": ["cuda:0", "gpu1"]}}, "devices: 'gpu1' is not a worker device"),
    ({"worker": {"devices": ["all", "cpu"]}}, '"all" stands alone'),
])
def test_every_refusal_names_the_key(tmp_path, data, message):
    with pytest.raises(ConfigError, match=None) as e:
        config_from_dict(data, root=tmp_path)
    assert message in str(e.value)


def test_a_postgresql_url_is_accepted_and_its_password_never_shown(tmp_path):
    c = config_from_dict({"paths": {"database": "postgresql+psycopg://nst:pw@db/nst"}}, root=tmp_path)
    assert c.database.startswith("postgresql+psycopg://")
    from service.config import redact_url

    assert redact_url(c.database) == "postgresql+psycopg://***@db/nst"


def test_worker_devices_one_or_a_list():
    assert config_from_dict({"worker": {"devices": "all"}}, root=Path(".")).worker.devices == ("all",)
    assert config_from_dict({"worker": {"devices": ["cuda:0", "cuda:1"]}}, root=Path(".")).worker.devices == (
        "cuda:0", "cuda:1")
    assert config_from_dict({}, root=Path(".")).worker.devices == ()
