"""Alembic's entry point for the archive: always run from `store.upgrade`, which hands
over an open connection (no alembic.ini, no URL here)."""

from alembic import context

from usage_lib.history.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
