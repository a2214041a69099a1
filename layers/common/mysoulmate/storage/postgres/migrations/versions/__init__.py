"""Alembic revisions, one file each (a package so the layer build keeps the directory)."""
