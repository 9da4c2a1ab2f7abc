"""Events made durable off the event loop, many requests per write.

A request hands its events to one writer thread and awaits them; the thread takes everything queued since its
last write and appends it in one call (one fsync on the file backend). The event loop never waits on the disk,
and while one write is under way the next requests gather into the following one, so throughput grows with
concurrency instead of being capped at one fsync per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

Append = Callable[[Sequence[dict[str, Any]]], None]


class EventWriter:
    def __init__(self, append: Append) -> None:
        self.append = append
        self.condition = threading.Condition()
        self.queue: list[tuple[list[dict[str, Any]], Future[None]]] = []
        self.thread: threading.Thread | None = None
        self.closed = False
        self.writes = 0  # calls to `append`, for the summary and tests

    async def write(self, records: list[dict[str, Any]]) -> None:
        """Return once `records` are durable; the append's exception when they could not be written."""
        await asyncio.wrap_future(self.submit(records))

    def submit(self, records: list[dict[str, Any]]) -> Future[None]:
        done: Future[None] = Future()
        with self.condition:
            if self.closed:
                raise RuntimeError("the event writer is closed")
            self.queue.append((records, done))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
                self.thread.start()
            self.condition.notify()
        return done

    def _run(self) -> None:
        while True:
            with self.condition:
                while not self.queue and not self.closed:
                    self.condition.wait()
                if not self.queue:
                    return
                batch, self.queue = self.queue, []
            try:
                self.append([record for records, _ in batch for record in records])
            except BaseException as error:  # every waiter learns why; the thread goes on with the next batch
                for _, done in batch:
                    done.set_exception(error)
            else:
                for _, done in batch:
                    done.set_result(None)
            self.writes += 1

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self.condition:
            self.closed = True
            self.condition.notify()
            thread = self.thread
        if thread is not None:
            thread.join()
