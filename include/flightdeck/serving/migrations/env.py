"""Alembic environment for the gateway schema.

`flightdeck.serving.db.upgrade` hands in a connection already inside a transaction
(`config.attributes["connection"]`); the migrations run on it. Without one (the `alembic`
command line) the URL in the config is used. Logging is left to the application.
"""

from __future__ import annotations

from alembic import context

from flightdeck.serving.db import VERSION_TABLE, engine_for, metadata, own_tables_only

config = context.config
options = {
    "target_metadata": metadata,
    # Our own version table: the database may also hold Airflow's or MLflow's Alembic history.
    "version_table": VERSION_TABLE,
    "render_as_batch": True,  # SQLite cannot ALTER most things; batch mode copies the table
    "include_name": own_tables_only,  # the release lock's table (and others) live beside ours
}


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    with engine_for(config.get_main_option("sqlalchemy.url")).begin() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
