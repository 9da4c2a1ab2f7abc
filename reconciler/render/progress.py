"""Progress of a long apply: a live line on a terminal, a line every few seconds in a CI log."""

from __future__ import annotations

import time
from typing import TextIO

from reconciler.apply import Progress

CI_EVERY = 5.0
TTY_EVERY = 0.1


class StreamProgress(Progress):
    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out, self.tty = out, tty
        self.total = 0
        self.started = self.shown = time.monotonic()
        self.done = self.failed = 0

    def start(self, total: int) -> None:
        self.total = total
        self.started = self.shown = time.monotonic()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"applying: {self.done:,}/{self.total:,} calls, {self.failed:,} failed, {self.done / elapsed:,.0f}/s"

    def advance(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        now = time.monotonic()
        if now - self.shown < (TTY_EVERY if self.tty else CI_EVERY):
            return
        self.shown = now
        self.out.write(("\r\x1b[K" if self.tty else "") + self._line() + ("" if self.tty else "\n"))
        self.out.flush()

    def finish(self) -> None:
        if self.total:
            self.out.write(("\r\x1b[K" if self.tty else "") + self._line() + "\n")
            self.out.flush()
