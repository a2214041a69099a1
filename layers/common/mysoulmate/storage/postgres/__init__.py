"""PostgreSQL (Aurora) adapter: connection and schema check, COPY ingest, rollups, Alembic
migrations."""
