"""Holding the writers' lock for the length of a run."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import TracebackType

from reconciler.errors import StateError
from reconciler.state.backend import LOCK_TTL, LockInfo, StateBackend


class Lease:
    """Takes the lock on enter, renews it in the background, releases it on exit (errors and signals included).

    A run killed outright (SIGKILL) leaves the lock behind until it expires; on the same host the next writer
    sees that the holder's process is gone and takes it over at once.
    """

    def __init__(self, backend: StateBackend, command: str, ttl: timedelta = LOCK_TTL) -> None:
        self.backend = backend
        self.ttl = ttl
        self.info = LockInfo.for_this_process(command, ttl)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    def __enter__(self) -> Lease:
        self.backend.acquire_lock(self.info)
        self._thread = threading.Thread(target=self._renew, name="reconciler-lock", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            self.info = self.info.renewed(self.ttl)
            try:
                self.backend.renew_lock(self.info)
            except StateError as error:
                self.lost = str(error)
                return

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.backend.release_lock(self.info.id)
