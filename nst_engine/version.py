"""The release's version: its one home (pyproject.toml reads it; the service shows it)."""

__version__ = "0.1.0"
