"""Durable file writes: a reader sees the old file or the whole new one, and what is written survives a crash;
and the one reader of the JSON files those writes make (plan files, pushed states).

Every file reconciler writes (state, lock, plan files, written manifests) goes through these: the bytes to a
temporary file beside the target (same file system, so the rename is atomic), fsync, rename, fsync of the
folder. Temporary names start with a dot and end in `.tmp`, so a writer can recognise leftovers of a kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any


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


def read_json_file(path: Path, kind: str, error: type[Exception]) -> Any:
    """The JSON value in `path`, a reconciler `kind` ("plan file"); `error` naming the file when it is missing,
    unreadable, not UTF-8, not JSON or nested too deep, never a traceback."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {kind}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as problem:
        raise error(f"{path} is not a reconciler {kind} ({str(problem)[:200]})") from None
