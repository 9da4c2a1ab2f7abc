"""Leadership among replicas: a lease in the state backend, claimed and renewed every third of its period.

Only the leader plans and applies. A leader that cannot renew (the database is down, the process stalled) stops
leading once its last confirmed lease would have expired, whatever the backend says later; a follower takes an
expired lease at its next claim, so a dead leader is replaced within 4/3 of a period (two at most).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from reconciler.errors import ReconcilerError
from reconciler.state.backend import LockInfo, StateBackend
from reconciler.webhook.log import log


class Leadership:
    def __init__(
        self,
        backend: StateBackend,
        period: float,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.backend = backend
        self.period = period
        self.info = LockInfo.for_this_process("serve", timedelta(seconds=period))
        self.holder: LockInfo | None = None  # who leads, as last seen
        self.known = False  # a claim has answered: this replica knows whether it leads
        self.problem: str | None = None  # why the last claim failed
        self._confirmed_until = 0.0  # monotonic time until which our lease is certainly ours
        self._leading = False
        self._on_change = on_change
        self._lock = threading.Lock()

    @property
    def leading(self) -> bool:
        with self._lock:
            if self._leading and time.monotonic() >= self._confirmed_until:
                self._set(False, "its lease expired without being renewed")
            return self._leading

    def claim(self) -> None:
        """One claim (or renewal) of the lease; logs a change of leader."""
        asked = time.monotonic()
        try:
            holder = self.backend.claim_lease(self.info, timedelta(seconds=self.period))
        except (ReconcilerError, OSError) as error:
            problem = "; ".join(str(error).splitlines())
            if problem != self.problem:
                log(logging.ERROR, f"could not claim the leader lease: {problem}", reason=problem)
            self.problem = problem
            self.leading  # noqa: B018 - gives up leading once the lease we had may have expired
            return
        with self._lock:
            self.problem = None
            self.known = True
            ours = holder.id == self.info.id
            if ours:
                self.info = holder
                self._confirmed_until = asked + self.period
            elif self.holder is None or self.holder.id != holder.id:
                log(
                    logging.INFO,
                    f"following the leader {holder.holder}@{holder.host} (pid {holder.pid})",
                    leader_host=holder.host,
                    leader_pid=holder.pid,
                )
            self.holder = holder
            if ours != self._leading:
                self._set(ours, "another replica holds the lease" if not ours else "")

    def _set(self, leading: bool, why: str) -> None:
        self._leading = leading
        if leading:
            log(logging.INFO, "leading: this replica plans and applies", leader=True)
        else:
            log(logging.WARNING, f"no longer leading: {why}", leader=False, reason=why)
        self._on_change(leading)

    def run(self, stop: threading.Event) -> None:
        """Claim every third of the period until `stop` is set."""
        while not stop.is_set():
            self.claim()
            stop.wait(self.period / 3)

    def release(self) -> None:
        """Give the lease up (a graceful stop): another replica takes over at its next claim."""
        with self._lock:
            was = self._leading
            self._leading = False
        if not was:
            return
        try:
            self.backend.release_lease(self.info.id)
        except (ReconcilerError, OSError) as error:
            log(logging.WARNING, f"could not release the leader lease (it expires by itself): {error}", wait=True)
            return
        log(logging.INFO, "released the leader lease", leader=False, wait=True)
