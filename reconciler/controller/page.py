"""The figures of the status page served at `/`, and of the health metrics: a `StatusView` built from the
recorded state (health.py: each vehicle's health, the holds in force), the controller's recent runs with their
plans, a convergence series and the leadership.

The state is read at most once every `FRESH` seconds (a fleet of 100,000 vehicles takes a fraction of a second
to read and judge): the page, its 30 s refresh in several browsers and the Prometheus scrapes share one reading.
Each run keeps its plan as text (cut to what the page shows), the commit's subject, and one point of the
convergence chart; the series also gains a point when a reading finds the Healthy share moved (outcomes arrive
between runs), so a follower, which makes no run, draws the fleet converging too. Both are bounded in memory.

Sync per vehicle comes from the last run's plan (health.out_of_sync): after a run that applied, the vehicles it
sent to are synced unless their outcome failed or a hold keeps them back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from reconciler.clock import parse_time, utcnow
from reconciler.controller.loop import KEEP_RUNS, Controller
from reconciler.controller.loop import Run as ControllerRun
from reconciler.controller.metrics import Metrics
from reconciler.errors import ReconcilerError
from reconciler.health import Health, VehicleHealth, holds_in_force, out_of_sync, vehicle_health
from reconciler.manifests import load_desired
from reconciler.model import Desired
from reconciler.operations import Workspace
from reconciler.plan import Plan
from reconciler.render.page import (
    EXAMPLE_VINS,
    HELD_SHOWN,
    PLAN_CHARS,
    Drift,
    Failure,
    GroupHealth,
    HealthCounts,
    HeldVehicle,
    Point,
    Run,
    StatusView,
    render_page,
)
from reconciler.render.text import render_text
from reconciler.state.model import Hold
from reconciler.webhook.app import one_line
from reconciler.webhook.log import log

CHART_POINTS = 500  # convergence points kept in memory (one per run, and per moved reading)
FRESH = 5.0  # seconds one reading of the state serves the page and /metrics
PLAN_KEPT = PLAN_CHARS - 200  # characters of a run's plan kept: the page shows no more
PROBLEMS = ("error", "invalid", "blocked", "locked", "partial", "interrupted")  # run results the page calls out


@dataclass(frozen=True, slots=True)
class Reading:
    """The fleet's health as the state said at `at`."""

    at: datetime
    health: Mapping[str, VehicleHealth]  # every vehicle of the fleet (manifests and state)
    holds: Mapping[str, Hold]  # in force at `at`
    drifted: frozenset[str] = frozenset()  # found changed out of band and left so (self-heal off): OutOfSync

    def counts(self, vins: Iterable[str], changing: frozenset[str]) -> HealthCounts:
        by: Counter[Health] = Counter()
        total = drifting = 0
        for vin in vins:
            found = self.health.get(vin)
            by[found.health if found is not None else Health.UNKNOWN] += 1
            total += 1
            drifting += vin in changing or vin in self.drifted
        return HealthCounts(
            by[Health.HEALTHY],
            by[Health.PROGRESSING],
            by[Health.DEGRADED],
            by[Health.HELD],
            by[Health.UNKNOWN],
            synced=total - drifting,
            out_of_sync=drifting,
        )

    @property
    def healthy_share(self) -> float:
        if not self.health:
            return 0.0
        return sum(1 for found in self.health.values() if found.health == Health.HEALTHY) / len(self.health)


class StatusPage:
    """What `/` and the health metrics show, kept up to date by the controller's runs."""

    def __init__(self, controller: Controller, metrics: Metrics, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.controller = controller
        self.metrics = metrics
        self.clock = clock
        self.runs: deque[Run] = deque(maxlen=KEEP_RUNS)  # the most recent last
        self.points: deque[Point] = deque(maxlen=CHART_POINTS)
        self.desired: Desired | None = None
        self.changing: frozenset[str] = frozenset()  # OutOfSync after the last plan
        self._reading: Reading | None = None
        self._read_at = 0.0  # monotonic
        self._lock = threading.Lock()  # one reading of the state at a time
        self._page_lock = threading.Lock()  # one page built at a time; the viewers meanwhile wait for it
        self._page: tuple[tuple[object, ...], str] | None = None  # the last page, with what it was built from
        controller.listeners.append(self.after_run)
        metrics.watch_health(self.health_counts)

    # ---- readings -------------------------------------------------------------------------------------------

    def reading(self, *, fresh: bool = False) -> Reading:
        """The fleet's health, read again when the last reading is older than FRESH seconds (or `fresh`)."""
        with self._lock:
            if self._reading is not None and not fresh and time.monotonic() - self._read_at < FRESH:
                return self._reading
            desired = self._desired()
            state = self.controller.workspace.load_state(pending=True)
            now = self.clock()
            holds = holds_in_force(state, now)
            vins = set(state.slots if state is not None else ())
            if desired is not None:
                vins.update(desired.vehicles)
                vins.update(vin for members in desired.groups.values() for vin in members)
            drifted = frozenset(state.drifted if state is not None else ())
            reading = Reading(now, {vin: vehicle_health(state, vin, holds) for vin in vins}, holds, drifted)
            last = self.points[-1].healthy if self.points else None
            if fresh or last is None or abs(reading.healthy_share - last) > 1e-9:
                self.points.append(Point(now, reading.healthy_share))
            self._reading, self._read_at = reading, time.monotonic()
            return reading

    def health_counts(self) -> tuple[Mapping[Health, int], int] | None:
        """For /metrics: vehicles by health, and the holds in force (None when the state cannot be read)."""
        try:
            reading = self.reading()
        except (ReconcilerError, OSError) as error:
            log(logging.WARNING, f"the fleet's health is not known: {one_line(error)}", reason=one_line(error))
            return None
        return Counter(found.health for found in reading.health.values()), len(reading.holds)

    def _desired(self) -> Desired | None:
        """The manifests in force: the last run's; before any run (a follower), the configuration's, if valid."""
        if self.desired is None and self.controller.source is None:
            try:
                self.desired, _ = load_desired(self.controller.workspace.settings.manifests, self.controller.environ)
            except ReconcilerError:
                return None
        return self.desired

    # ---- after each run ---------------------------------------------------------------------------------------

    def after_run(self, run: ControllerRun, plan: Plan | None, workspace: Workspace | None) -> None:
        if workspace is not None and run.result not in ("invalid", "error"):
            # validated by the run a moment ago: only a file changed since could fail, and the last is kept
            with contextlib.suppress(ReconcilerError):
                self.desired, _ = load_desired(workspace.settings.manifests, self.controller.environ)
        reading = self.reading(fresh=True)
        if plan is not None:
            changing = out_of_sync(plan)
            if run.result == "applied":  # sent: synced unless the outcome failed or a hold keeps it back
                done = (Health.HEALTHY, Health.PROGRESSING)
                changing = {vin for vin in changing if _health(reading, vin) not in done}
            self.changing = frozenset(changing)
        self.runs.append(self._shown(run, plan))

    def _shown(self, run: ControllerRun, plan: Plan | None) -> Run:
        subject = ""
        if run.commit and self.controller.source is not None:
            try:
                subject = self.controller.source.subject(run.commit)
            except ReconcilerError:
                subject = ""
        created = updated = deleted = 0
        text = ""
        if plan is not None:
            summary = plan.summary()
            created, deleted = summary.callbacks_create, summary.callbacks_delete
            updated = summary.callbacks_update + summary.vehicles
            text = plan_text(plan)
        return Run(
            started=parse_time(run.started),
            commit=run.commit or "",
            digest=run.digest or "",
            result=run.result,
            duration=run.duration,
            created=created,
            updated=updated,
            deleted=deleted,
            plan_text=text,
            message=" · ".join(part for part in (subject, run.message) if part),
        )

    # ---- the page ---------------------------------------------------------------------------------------------

    def html(self) -> str:
        """The page, built once for each reading of the state and each run: however many viewers ask, a replica
        builds it at most once a reading (FRESH seconds), and the others get the same text."""
        with self._page_lock:
            built_from = (self.reading(), self.runs[-1] if self.runs else None, self.desired, self.changing)
            leading = self.controller.leadership.leading
            if self._page is not None:
                (*last, was_leading), text = self._page
                if was_leading == leading and all(a is b for a, b in zip(last, built_from, strict=True)):
                    return text
            text = render_page(self.view())
            self._page = ((*built_from, leading), text)
            return text

    def view(self) -> StatusView:
        reading = self.reading()
        desired = self.desired
        changing = self.changing
        groups: tuple[GroupHealth, ...] = ()
        if desired is not None:
            groups = tuple(
                GroupHealth(name, reading.counts(sorted(set(members)), changing))
                for name, members in sorted(desired.groups.items())
            )
        causes: dict[str, list[str]] = {}
        for vin, found in reading.health.items():
            if found.health == Health.DEGRADED:
                causes.setdefault(found.cause or "unknown cause", []).append(vin)
        failures = tuple(
            Failure(cause, len(vins), tuple(sorted(vins)[:EXAMPLE_VINS]))
            for cause, vins in sorted(causes.items(), key=lambda item: (-len(item[1]), item[0]))
        )
        held = sorted(reading.holds.items(), key=lambda item: (item[1].until, item[0]))[:HELD_SHOWN]
        leadership = self.controller.leadership
        holder = leadership.holder
        return StatusView(
            fleet=self.controller.workspace.fleet,
            generated=reading.at,
            totals=reading.counts(reading.health, changing),
            groups=groups,
            failures=failures,
            drift=self._drift(),
            held=tuple(HeldVehicle(vin, parse_time(hold.until), hold.cause, hold.attempts) for vin, hold in held),
            held_total=len(reading.holds),
            runs=tuple(reversed(self.runs)),
            convergence=tuple(self.points),
            leader=f"{holder.host} (pid {holder.pid})" if holder is not None else None,
            leading=leadership.leading,
            last_error=self._last_error(),
        )

    def _drift(self) -> Drift:
        """From the drift counters when the controller keeps them (self-heal), zero otherwise."""
        registry = self.metrics.registry
        found = registry.get_sample_value("reconciler_drift_found_total") or 0.0
        repaired = registry.get_sample_value("reconciler_drift_repaired_total") or 0.0
        return Drift(int(found), int(repaired), max(int(found - repaired), 0))

    def _last_error(self) -> str | None:
        problem = self.controller.repo_problem
        if problem is not None:
            return f"the config repo cannot be fetched: {problem}"
        if self.runs and self.runs[-1].result in PROBLEMS:
            last = self.runs[-1]
            return f"the last run ended {last.result}: {last.message}"
        return None


def _health(reading: Reading, vin: str) -> Health:
    found = reading.health.get(vin)
    return found.health if found is not None else Health.UNKNOWN


def plan_text(plan: Plan) -> str:
    """The plan as `reconciler plan` writes it (no colour), cut at a line to what the page shows."""
    out = io.StringIO()
    render_text(plan.to_dict(), out)
    text = out.getvalue()
    if len(text) <= PLAN_KEPT:
        return text
    kept = text[:PLAN_KEPT].rsplit("\n", 1)[0] or text[:PLAN_KEPT]
    return f"{kept}\n… {len(text) - len(kept):,} more characters (the whole plan: reconciler plan)"
