"""The PostgreSQL schema's Alembic environment (run through `storage.postgres.migrate`)."""
