"""Group commit: appends from many threads made durable together, one write for everything queued."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.errors import StateError


class GroupCommit:
    """Each caller returns once its own entries are durable. While one thread writes, the others queue up; the
    next writer takes the whole queue. Throughput then grows with the number of threads instead of being
    capped at one durable write (an fsync, a database commit) per entry.

    `write` makes a batch durable or raises; `what` names the place in messages.
    """

    def __init__(self, write: Callable[[list[dict[str, Any]]], None], what: str) -> None:
        self.write = write
        self.what = what
        self.condition = threading.Condition()
        self.queue: list[dict[str, Any]] = []
        self.tickets = 0  # entries handed in
        self.written = 0  # entries durable
        self.writing = False
        self.failure: tuple[int, BaseException] | None = None

    def append(self, entries: Sequence[dict[str, Any]], wait: bool = True) -> None:
        """Queue `entries`; with `wait`, return once they (and all queued before) are durable. Without, they are
        written with the next batch anyone waits for (or by `flush`): for entries whose loss costs a lookup,
        not a wrong outcome."""
        with self.condition:
            self.queue.extend(entries)
            self.tickets += len(entries)
            if not wait:
                return
            mine = self.tickets
            while True:
                if self.failure is not None and mine <= self.failure[0]:
                    raise StateError(f"could not write {self.what}: {self.failure[1]}")
                if self.written >= mine:
                    return
                if not self.writing:
                    batch, self.queue, upto, self.writing = self.queue, [], self.tickets, True
                    break
                self.condition.wait()
        try:
            self.write(batch)
        except Exception as error:
            with self.condition:
                self.failure, self.writing = (upto, error), False
                self.condition.notify_all()
            if isinstance(error, StateError):
                raise
            raise StateError(f"could not write {self.what}: {error}") from error
        with self.condition:
            self.written, self.writing = upto, False
            self.condition.notify_all()

    def discard(self) -> None:
        """Forget what is queued and not written yet (the journal is being cleared: a saved state holds it)."""
        with self.condition:
            if not self.writing:
                self.queue.clear()
                self.written = self.tickets
