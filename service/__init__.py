"""The watch-folder service around nst_engine: inbox, job store, worker, outbox, CLI."""

__version__ = "0.1.0"
