"""The receiver's log: one line per notification request and a summary on shutdown, as text or JSON lines.

Lines pass through a bounded queue to a thread that writes them: a slow or stalled stream never holds up the
event loop. Lines that do not fit in the queue are dropped and counted, never allowed to grow memory.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

LOGGER = logging.getLogger("reconciler.webhook")
LOG_FORMATS = ("text", "json")
QUEUE_LINES = 10_000


def log(level: int, message: str, *, wait: bool = False, **fields: Any) -> None:
    """Log `message`; `fields` are the structured values a JSON line carries beside it. With `wait`, the line
    waits for room in the queue rather than being dropped (for the few lines that must be written)."""
    LOGGER.log(level, message, extra={"fields": fields, "wait": wait})


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_time(record)} {record.levelname} {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _time(record), "level": record.levelname.lower(), "message": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, default=str)


class DroppingQueueHandler(QueueHandler):
    """Hands records to the writer thread; drops (and counts) them when the queue is full."""

    def __init__(self, lines: queue.Queue[Any]) -> None:
        super().__init__(lines)
        self.lines = lines
        self.dropped = 0
        self.count_lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        if getattr(record, "wait", False):
            self.lines.put(record)
            return
        try:
            self.lines.put_nowait(record)
        except queue.Full:
            with self.count_lock:
                self.dropped += 1


class _Listener(QueueListener):
    def __init__(self, lines: queue.Queue[Any], target: logging.Handler) -> None:
        super().__init__(lines, target)
        self.lines = lines

    def enqueue_sentinel(self) -> None:
        self.lines.put(None)  # the end mark; waits for room, so the lines queued before it are written first


@contextmanager
def logging_to(stream: TextIO, fmt: str = "text", lines: int = QUEUE_LINES) -> Iterator[DroppingQueueHandler]:
    """Send the receiver's log to `stream` while the block runs; every queued line is written when it ends."""
    pending: queue.Queue[Any] = queue.Queue(maxsize=lines)
    handler = DroppingQueueHandler(pending)
    target = logging.StreamHandler(stream)
    target.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    listener = _Listener(pending, target)
    previous = (LOGGER.level, LOGGER.propagate)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    listener.start()
    try:
        yield handler
    finally:
        listener.stop()
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(previous[0])
        LOGGER.propagate = previous[1]
        target.flush()
