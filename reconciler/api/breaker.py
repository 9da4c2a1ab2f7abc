"""The run-level breaker: a systemic failure stops a whole run in seconds instead of failing vehicle by vehicle.

Systemic: the credentials refused (any 401, a 403 on a fleet-wide endpoint), the API unreachable (requests in a
row that cannot connect), failures in a row on several different vehicles (timeouts, cut connections, 5xx,
403s), or a quota wait longer than `api.max_retry_wait`. One answer from the API resets the count, so a
single vehicle that keeps timing out fails alone. Tripping sets the run's stop event: no new request is sent,
sleeping retries wake up and give up, the requests in flight finish.
"""

from __future__ import annotations

import threading

from reconciler.errors import ApiUnavailableError

THRESHOLD = 5  # failures in a row (different vehicles, or connection attempts) that stop a run


class Breaker:
    def __init__(self, api: str, stop: threading.Event, threshold: int = THRESHOLD) -> None:
        self.api = api
        self.stop = stop
        self.threshold = threshold
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._targets: set[str] = set()

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def trip(self, cause: str) -> None:
        """Stop the run; the first cause is the one reported."""
        with self._lock:
            if self.reason is None:
                self.reason = f"stopped: the Fleet API at {self.api} {cause}"
        self.stop.set()

    def answered(self) -> None:
        """The API answered: whatever failed before was not systemic."""
        if self._failures:
            with self._lock:
                self._failures = 0
                self._targets.clear()

    def failed(self, target: str, cause: str, *, unreachable: bool = False) -> None:
        """A request that found no usable answer. `target` is what it was about (a vehicle, or a path): failures
        count towards tripping once per target, except `unreachable` ones (no connection at all), which
        count every time since they say nothing about any vehicle."""
        with self._lock:
            self._failures += 1
            self._targets.add(target)
            count = self._failures if unreachable else len(self._targets)
        if count >= self.threshold:
            what = "requests" if unreachable else "requests about different vehicles or resources"
            self.trip(f"is not usable: {count} {what} failed in a row, the last with {cause}")

    def error(self) -> ApiUnavailableError:
        assert self.reason is not None
        return ApiUnavailableError(self.reason)
