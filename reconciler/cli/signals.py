"""Ctrl-C and SIGTERM (a cancelled CI job, a service manager) during a command, handled in one place."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import click


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event | None = None, message: str = "Stopping (again to abort).") -> Iterator[None]:
    """Without `stop`: SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so locks are released and the state is
    saved; Ctrl-C keeps Python's own handling.

    With `stop`: the first Ctrl-C or SIGTERM sets it and says `message` (the command stops starting work, waits
    end at once, what is in flight finishes and is recorded); a second one aborts as KeyboardInterrupt.
    The previous handlers come back on leaving."""

    def handler(signum: int, frame: Any) -> None:
        if stop is None or stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\n" + message, err=True)

    handled = (signal.SIGTERM,) if stop is None else (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
