"""Choosing the state backend from the settings."""

from __future__ import annotations

from reconciler.config import Settings
from reconciler.errors import StateError
from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend


def open_backend(settings: Settings) -> StateBackend:
    if settings.state.backend == "file":
        assert settings.state.path is not None
        return FileBackend(settings.path(settings.state.path, "state.path"))
    raise StateError(f"state backend '{settings.state.backend}' is not available in this version")
