"""The PostgreSQL schema's Alembic environment (run through `postgres_migrate`)."""
