"""The run-level breaker: a systemic failure stops a whole run in seconds instead of failing vehicle by vehicle.

Systemic: the credentials refused (any 401, a 403 on a fleet-wide endpoint), the API unreachable (requests in a
row that cannot connect), failures in a row on several different vehicles (timeouts, cut connections, 5xx,
403s), or a quota wait longer than `api.max_retry_wait`. One answer from the API resets the count, so a
single vehicle that keeps timing out fails alone. Tripping sets the run's stop event: no new request is sent,
sleeping retries wake up and give up, the requests in flight finish.

`api.daily_budget` stops a run the same way: the API's answers say how much of its daily quota is left
(X-RateLimit-Limit-1, X-RateLimit-Remaining-1), and once what has been used reaches the budget nothing more is
sent, so reconciler leaves the rest of the day's quota to the fleet's other clients.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from reconciler.errors import ApiUnavailableError

THRESHOLD = 5  # failures in a row (different vehicles, or connection attempts) that stop a run


@dataclass(frozen=True, slots=True)
class DailyBudget:
    """`api.daily_budget`: the requests of the API's daily quota reconciler may use, a count (`20000`) or a
    share of the quota (`50%`)."""

    text: str
    amount: Fraction
    percent: bool

    @classmethod
    def parse(cls, value: int | str) -> DailyBudget:
        """A budget as reconciler.yaml writes it (its form already checked by the schema)."""
        text = str(value).strip()
        percent = text.endswith("%")
        return cls(text, Fraction(text.removesuffix("%")), percent)

    def allowed(self, limit: int) -> int:
        """Requests of a day's quota of `limit` reconciler may use, computed exactly (50% of 11 is 5)."""
        share = self.amount * limit / 100 if self.percent else self.amount
        return max(0, min(limit, math.floor(share)))

    def spent(self, limit: int, remaining: int) -> bool:
        """Whether the day's quota, with `remaining` requests left of `limit`, has used up the budget."""
        return limit - remaining >= self.allowed(limit)


class Breaker:
    def __init__(self, api: str, stop: threading.Event, threshold: int = THRESHOLD) -> None:
        self.api = api
        self.stop = stop
        self.threshold = threshold
        self.reason: str | None = None
        self.resets_at: datetime | None = None  # when a quota that stopped the run frees up
        self._lock = threading.Lock()
        self._failures = 0
        self._targets: set[str] = set()

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def trip(self, cause: str, *, resets_at: datetime | None = None) -> None:
        """Stop the run; the first cause is the one reported. `resets_at`: when a quota frees up."""
        self.halt(f"stopped: the Fleet API at {self.api} {cause}", resets_at=resets_at)

    def halt(self, reason: str, *, resets_at: datetime | None = None) -> None:
        """Stop the run for `reason`, said in full (the first reason is the one reported)."""
        with self._lock:
            if self.reason is None:
                self.reason, self.resets_at = reason, resets_at
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
        return ApiUnavailableError(self.reason, resets_at=self.resets_at)
