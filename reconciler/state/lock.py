"""Holding the writers' lock for the length of a run."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import TracebackType

from reconciler.errors import LockLostError, StateError
from reconciler.state.backend import LOCK_TTL, LockInfo, StateBackend


class Lease:
    """Takes the lock on enter, renews it in the background, releases it on exit (errors and signals included).
    A release that fails while an error is already on its way out does not replace that error: it is added to it
    as a note (the lock then expires by itself).

    A run killed outright (SIGKILL) leaves the lock behind until it expires; on the same host the next writer
    sees that the holder's process is gone and takes it over at once. When another run takes the lock over
    (this one was stalled past the lock's expiry), `stop` is set so the run stops sending, and every later save
    under the lease (`save`) is refused: the new holder's state is never overwritten.
    """

    def __init__(
        self,
        backend: StateBackend,
        command: str,
        ttl: timedelta = LOCK_TTL,
        stop: threading.Event | None = None,
    ) -> None:
        self.backend = backend
        self.ttl = ttl
        self.info = LockInfo.for_this_process(command, ttl)
        self.stop = stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    @property
    def id(self) -> str:
        return self.info.id

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
            except LockLostError as error:
                self.lost = str(error)
                if self.stop is not None:
                    self.stop.set()
                return
            except (StateError, OSError):
                continue  # a passing failure to write: the lock is still ours until it expires

    def check(self) -> None:
        """LockLostError when another run took the lock over."""
        if self.lost is not None:
            raise LockLostError(f"{self.lost}; this run stopped without saving over the new holder's state")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.backend.release_lock(self.info.id)
        except (StateError, OSError) as problem:
            if error is None:
                raise
            # what stopped the run is what its user needs to read (the release failed for the same reason,
            # most likely): it goes on, told that the lock is left behind and until when
            error.add_note(
                f"Warning: the lock is left behind ({problem}): it expires {self.info.expires}, or "
                f"`reconciler state unlock {self.id}` removes it"
            )
