"""The job store's schema changes, as Alembic revisions (`versions/`), run by `Store.migrate`."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _config(conn=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> int:
    """The newest revision this release knows, as a number (revisions are 0001, 0002, ...)."""
    from alembic.script import ScriptDirectory

    return int(ScriptDirectory.from_config(_config()).get_current_head())


def upgrade(conn, *, legacy: int | None = None, to: str = "head") -> None:
    """Bring the database on `conn` to `to`. `legacy`: the version a pre-Alembic release
    recorded, so its tables are taken as that revision rather than created again."""
    from alembic import command

    cfg = _config(conn)
    if legacy:
        command.stamp(cfg, f"{legacy:04d}")
    command.upgrade(cfg, to)
