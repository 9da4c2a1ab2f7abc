"""Choosing the state backend: the one place that knows which backends exist."""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import StateError
from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend


def open_backend(kind: str, path: Path | None = None) -> StateBackend:
    """The backend `kind` (state.backend in reconciler.yaml) storing at `path` (file backend)."""
    if kind == "file":
        assert path is not None
        return FileBackend(path)
    raise StateError(f"state backend '{kind}' is not available in this version")
