"""Durable file writes: a reader sees the old file or the whole new one, and what is written survives a crash.

Every file reconciler writes (state, lock, plan files, written manifests) goes through these: the bytes to a
temporary file beside the target (same file system, so the rename is atomic), fsync, rename, fsync of the
folder. Temporary names start with a dot and end in `.tmp`, so a writer can recognise leftovers of a kill.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def temporary(path: Path) -> Path:
    """A fresh temporary name beside `path`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def write_synced(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` and fsync it (the caller renames it into place)."""
    with open(path, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def sync_directory(path: Path) -> None:
    """fsync a folder, so the names a rename put in it survive a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload`, atomically and durably (its folder is created when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary(path)
    try:
        write_synced(temp, payload)
        os.replace(temp, path)
        sync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
