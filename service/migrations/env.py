"""Alembic's entry point: the store runs the migrations on a connection it already holds (inside
its own transaction and lock), so there is no URL or logging setup here."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
