"""Choosing the state backend: the one place that knows which backends exist."""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import StateError
from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend


def open_backend(
    kind: str, fleet: str, *, path: Path | None = None, dsn: str | None = None, schema: str = "reconciler"
) -> StateBackend:
    """The backend `kind` (state.backend in reconciler.yaml) holding `fleet`'s state: a file at `path`, or the
    PostgreSQL database `dsn` (tables in `schema`)."""
    if kind == "file":
        assert path is not None
        return FileBackend(path)
    if kind == "postgres":
        assert dsn is not None
        from reconciler.state.postgres import PostgresBackend  # psycopg loads only for this backend

        return PostgresBackend(dsn, fleet, schema)
    raise StateError(f"state backend '{kind}' is not available in this version")
