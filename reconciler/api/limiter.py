"""Client-side rate limiting shared by every worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket (`rate` requests per second, bursts of a tenth of a second's worth) with a pause that a
    429's Retry-After imposes on every thread at once."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rate = rate
        # a small burst: evenly spaced requests leave the server's own one-second bucket room for jitter
        self.capacity = max(1.0, rate / 10)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.stamp = clock()
        self.paused_until = 0.0
        self.lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                wait = max(self.paused_until - now, 0.0)
                if not wait:
                    if self.tokens >= 1 - 1e-9:  # float error must not leave a caller waiting for nothing
                        self.tokens -= 1
                        return
                    wait = (1 - self.tokens) / self.rate
                self.waited += wait
            self.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (the server said so) and start again with an empty bucket."""
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)
            self.tokens = 0.0
