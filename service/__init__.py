"""The watch-folder service around nst_engine: inbox, job store, worker, outbox, CLI."""

from nst_engine.version import __version__  # one version for the engine and the service

__all__ = ["__version__"]
