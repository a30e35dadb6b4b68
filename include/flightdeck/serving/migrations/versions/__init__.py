"""Gateway schema revisions, written by hand with Alembic's op API (PostgreSQL and SQLite)."""
