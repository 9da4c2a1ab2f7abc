"""The controller's Prometheus metrics, in a registry of its own (names are part of the product's contract).

API calls are counted by the transport the client sends through (every HTTP exchange, retries included), which
also reads the quota headers of each answer; outcomes as the receiver records them; the receiver's own counters
are read at scrape time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.health import Health
from reconciler.state.events import event_outcome
from reconciler.state.model import Outcome
from reconciler.webhook.app import Receiver

RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
MAX_CAUSES = 64  # distinct failure causes kept as label values; more are counted as "other"

# (method, path below /fleets/{fid}) -> kind of call
_KINDS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), kind)
    for method, pattern, kind in (
        ("GET", r"/vehicles", "list_vehicles"),
        ("GET", r"/vehicles/[^/]+/status", "vehicle_status"),
        ("GET", r"/remote/callbacks", "list_callbacks"),
        ("POST", r"/remote/callbacks", "create_callback"),
        ("GET", r"/remote/callbacks/[^/]+", "get_callback"),
        ("PUT", r"/remote/callbacks/[^/]+", "update_callback"),
        ("DELETE", r"/remote/callbacks/[^/]+", "delete_callback"),
        ("PUT", r"/remote/callbacks/[^/]+/status", "callback_status"),
        ("POST", r"/vehicles/[^/]+/callbacks/[^/]+/remotes", "post_remote"),
        ("GET", r"/vehicles/[^/]+/callbacks/[^/]+/remotes", "list_remotes"),
        ("GET", r"/vehicles/[^/]+/callbacks/[^/]+/remotes/[^/]+", "get_remote"),
    )
)
_FLEET_PATH = re.compile(r"/fleets/[^/]+(/.*)?$")


def call_kind(method: str, path: str) -> str:
    """What an API request does, from its method and path (`other` for any path the product does not use)."""
    found = _FLEET_PATH.search(path.rstrip("/"))
    below = (found.group(1) or "") if found else None
    for wanted, pattern, kind in _KINDS:
        if method == wanted and below is not None and pattern.fullmatch(below):
            return kind
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.api_calls = Counter(
            "reconciler_api_calls",
            "Fleet API requests by kind and result (HTTP status, or error).",
            ["kind", "result"],
            registry=r,
        )
        self.outcomes = Counter(
            "reconciler_outcomes",
            "Final outcomes of remote actions recorded from notifications, by outcome and failure cause.",
            ["outcome", "cause"],
            registry=r,
        )
        self.quota = Gauge(
            "reconciler_quota_remaining",
            "Requests left in the API's quota windows, as its last answer said (X-RateLimit-Remaining-1 and -2).",
            ["window"],
            registry=r,
        )
        self.runs = Counter("reconciler_runs", "Reconciliation runs by result.", ["result"], registry=r)
        self.run_duration = Histogram(
            "reconciler_run_duration_seconds", "How long reconciliation runs took.", buckets=RUN_BUCKETS, registry=r
        )
        self.leader = Gauge("reconciler_leader", "1 while this replica holds the leader lease, else 0.", registry=r)
        self.drift_found = Counter(
            "reconciler_drift_found", "Vehicles the drift reads found changed out of band.", registry=r
        )
        self.drift_repaired = Counter(
            "reconciler_drift_repaired",
            "Drifted vehicles seen holding the manifests' programs again after a remote sent since.",
            registry=r,
        )
        self._causes: set[str] = set()

    def watch_receiver(self, receiver: Receiver) -> None:
        self.registry.register(_ReceiverCollector(receiver))

    def watch_health(self, counts: Callable[[], tuple[Mapping[Health, int], int] | None]) -> None:
        """Vehicles by health and the holds in force, asked of `counts` when scraped (None: not known now)."""
        self.registry.register(_HealthCollector(counts))

    def count_outcomes(self, events: Sequence[dict[str, Any]]) -> None:
        """Count the final outcomes among events just recorded (pending steps are not outcomes)."""
        for event in events:
            outcome = event_outcome(event)
            if outcome is Outcome.PENDING:
                continue
            cause = str(event.get("failureCause") or "") if outcome is Outcome.FAILED else ""
            cause = "".join(c for c in cause[:128] if c.isprintable())  # a label from the network: printable
            if cause and cause not in self._causes:
                if len(self._causes) >= MAX_CAUSES:
                    cause = "other"
                else:
                    self._causes.add(cause)
            self.outcomes.labels(outcome.value, cause).inc()

    def answered(self, request: httpx.Request, response: httpx.Response | None) -> None:
        kind = call_kind(request.method, request.url.path)
        self.api_calls.labels(kind, str(response.status_code) if response is not None else "error").inc()
        if response is None:
            return
        for header, window in (("X-RateLimit-Remaining-1", "day"), ("X-RateLimit-Remaining-2", "second")):
            value = response.headers.get(header, "")
            if value.isdigit():
                self.quota.labels(window).set(int(value))


class ObservedTransport(httpx.BaseTransport):
    """The client's transport, counting every exchange and reading the quota headers of every answer."""

    def __init__(self, inner: httpx.BaseTransport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            self.metrics.answered(request, None)
            raise
        self.metrics.answered(request, response)
        return response

    def close(self) -> None:
        self.inner.close()


class _ReceiverCollector(Collector):
    """The receiver's counters, read when scraped."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "reconciler_events_received",
            "Notification events received: recorded, or not recorded (refused, unavailable, failed).",
            labels=["result"],
        )
        family.add_metric(["recorded"], self.receiver.received)
        family.add_metric(["not_recorded"], self.receiver.not_recorded)
        yield family


class _HealthCollector(Collector):
    """The fleet's health, read when scraped: reconciler_vehicles{health} and reconciler_held_vehicles."""

    def __init__(self, counts: Callable[[], tuple[Mapping[Health, int], int] | None]) -> None:
        self.counts = counts

    def describe(self) -> list[Metric]:
        return []  # registered without asking for figures: the first scrape reads the state, not the start

    def collect(self) -> Iterator[GaugeMetricFamily]:
        found = self.counts()
        if found is None:  # the state cannot be read now: no figure rather than a wrong one
            return
        by_health, held = found
        family = GaugeMetricFamily(
            "reconciler_vehicles", "Vehicles of the fleet by health, from the recorded state.", labels=["health"]
        )
        for health in Health:
            family.add_metric([health.value], by_health.get(health, 0))
        yield family
        yield GaugeMetricFamily(
            "reconciler_held_vehicles",
            "Vehicles held back by a hold in force (out of wake-ups for the month, or backing off after failures).",
            value=held,
        )
