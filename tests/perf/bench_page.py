"""Benchmark: the controller's status page for a large fleet, its time, size and memory.

A fleet of N vehicles in G groups (names of 63 characters, the longest a manifest allows), each vehicle given a
health at random and counted per group (the controller's aggregation, timed apart), with the page's lists full
and over their caps: 60 causes, 3,000 held vehicles (50 shown), 25 runs each with the text plan of a fleet-wide
change (one line per vehicle; 20 shown, cut to 20,000 characters each), and 5,000 convergence figures (thinned
to 500). Medians of `--runs`, in this process:
- aggregate: counting N vehicles by group and health into the view's HealthCounts;
- render: `render_page(view)`, the page's size in bytes, and the memory that rendering allocates (tracemalloc);
- baseline: `json.dumps` of what the page shows (the view with its lists cut to the page's caps, as
  dataclasses.asdict), measured in the same run: the cost of writing the same figures in the simplest form.

Then what `serve` does for `/` and `/metrics`, from a recorded state of N vehicles (4 slots each, in groups of
N/G, 2% held, 1% failed for good) on the file backend (reconciler/controller/page.py):
- reading: the state loaded with its pending events and every vehicle's health judged (health.py), at most
  once every 5 s whatever the number of viewers and scrapes; its memory (tracemalloc peak);
- baseline: `FileBackend.load()` alone, in the same run (the part of a reading that is reading the file);
- view + render: a StatusView from that reading (per group counts, failures, holds, runs) and the page;
- scrape: /metrics's text, the health families included, from that reading;
- plan text: a fleet-wide plan written as text and cut to what the page keeps, as after each run.

    python tests/perf/bench_page.py [--vehicles 100000] [--groups 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from prometheus_client import generate_latest

from reconciler.clock import isotime
from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.metrics import Metrics
from reconciler.controller.page import StatusPage, plan_text
from reconciler.manifests import load_desired
from reconciler.operations import open_workspace
from reconciler.planner import PlanOptions, make_plan
from reconciler.render.page import (
    HEALTHS,
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
from reconciler.state.file import FileBackend
from reconciler.state.model import Hold, Outcome, State
from reconciler.state.record import record_outcome

NOW = datetime(2026, 5, 14, 9, 30, tzinfo=UTC)
WEIGHTS = (90, 4, 3, 2, 1)  # Healthy, Progressing, Degraded, Held, Unknown


def vin(n: int) -> str:
    return f"VF3{n:014d}"


def aggregate(healths: list[tuple[int, int, bool]], groups: int) -> tuple[HealthCounts, tuple[GroupHealth, ...]]:
    """(group, health index, synced) per vehicle -> counts per group and for the fleet."""
    by_group = Counter((group, health) for group, health, _ in healths)
    synced = Counter(group for group, _, sync in healths if sync)
    members = Counter(group for group, _, _ in healths)
    rows = []
    for group in range(groups):
        healthy, progressing, degraded, held, unknown = (by_group[group, health] for health in range(len(HEALTHS)))
        counts = HealthCounts(
            healthy, progressing, degraded, held, unknown, synced[group], members[group] - synced[group]
        )
        rows.append(GroupHealth(f"group-{group:04d}".ljust(63, "x"), counts))
    totals = [sum(getattr(row.counts, name) for row in rows) for name in HealthCounts.__dataclass_fields__]
    return HealthCounts(*totals), tuple(rows)


def build(vehicles: int, groups: int) -> tuple[list[tuple[int, int, bool]], Callable[[], StatusView]]:
    rng = random.Random(7)
    healths = [(n % groups, health, health == 0) for n, health in enumerate(rng.choices(range(5), WEIGHTS, k=vehicles))]
    plan = "".join(f"  ~ vehicle.{vin(n)}.slot.1: 07:00 Mon-Fri -> 06:45 Mon-Fri\n" for n in range(vehicles))

    def view() -> StatusView:
        totals, rows = aggregate(healths, groups)
        return StatusView(
            fleet="fleet-ops",
            generated=NOW,
            totals=totals,
            groups=rows,
            failures=tuple(Failure(f"Cause{c}", 100 + c, tuple(vin(c * 10 + i) for i in range(9))) for c in range(60)),
            drift=Drift(found=1_234, repaired=1_000, pending=234),
            held=tuple(HeldVehicle(vin(n), NOW, "TooManyWakeUpsOverMonth", 1) for n in range(3_000)),
            held_total=3_000,
            runs=tuple(
                Run(NOW - timedelta(minutes=r), f"{r:040x}", f"sha256:{r:064x}", "success", 42.0, 0, vehicles, 0, plan)
                for r in range(25)
            ),
            convergence=tuple(Point(NOW - timedelta(minutes=5_000 - i), i / 5_000) for i in range(5_000)),
            leader="ctl-a:4242",
            leading=True,
        )

    return healths, view


def timed(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    healths, make = build(args.vehicles, args.groups)
    view = make()
    page = render_page(view)
    tracemalloc.start()
    render_page(view)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    aggregate_s = timed(lambda: aggregate(healths, args.groups), args.runs)
    render_s = timed(lambda: render_page(view), args.runs)
    shown = dataclasses.replace(
        view,
        failures=view.failures[:50],
        held=view.held[:50],
        runs=tuple(dataclasses.replace(run, plan_text=run.plan_text[:20_000]) for run in view.runs[:20]),
        convergence=view.convergence[::10],
    )
    baseline_s = timed(lambda: json.dumps(dataclasses.asdict(shown), default=str), args.runs)
    print(f"{args.vehicles:,} vehicles in {args.groups:,} groups; medians of {args.runs} runs")
    print(f"  aggregate (per vehicle -> per group): {aggregate_s * 1000:8.1f} ms")
    print(f"  render_page:                          {render_s * 1000:8.1f} ms  ({render_s / baseline_s:.2f}x baseline)")
    print(f"  baseline json.dumps of what it shows: {baseline_s * 1000:8.1f} ms")
    print(f"  page: {len(page.encode()):,} bytes; memory allocated while rendering: {peak / 1e6:.1f} MB")
    print()
    from_state(args.vehicles, args.groups, args.runs)


def from_state(vehicles: int, groups: int, runs: int) -> None:
    from tests.perf.fleetgen import write_fleet
    from tests.planning import record_success

    environ = {**os.environ, "WEBHOOK_AUTH": "Basic bench"}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_fleet(root, vehicles, group_size=max(1, vehicles // groups), groups_per_schedule=10)
        desired, _ = load_desired([root / "manifests"], environ)
        now = datetime.now(UTC)
        state = record_success(
            make_plan(desired, None, "bench-fleet", PlanOptions(now=now)), State.new("bench-fleet"), desired
        )
        vins = sorted(state.slots)
        until = isotime(now + timedelta(days=10))
        for vin in vins[::50]:
            state.holds[vin] = Hold(until, "TooManyWakeUpsOverMonth", 1)
        for vin in vins[1::100]:
            action = next(iter(state.slots[vin].values())).action
            assert action is not None
            record_outcome(state, action, Outcome.FAILED, status="Failed", cause="MissingRights")
        backend = FileBackend(root / ".reconciler" / "state.json")
        backend.save(state, None)
        workspace = open_workspace(root / "reconciler.yaml", environ)
        metrics = Metrics()
        controller = Controller(workspace, environ, Leadership(workspace.backend, 30), metrics)
        page = StatusPage(controller, metrics)
        page.desired = desired
        (schedules := root / "manifests" / "schedules.yaml").write_text(
            schedules.read_text().replace(':30", days: weekdays', ':40", days: weekdays')
        )
        fleet_wide = make_plan(
            load_desired([root / "manifests"], environ)[0], state, "bench-fleet", PlanOptions(now=now)
        )

        tracemalloc.start()
        page.reading(fresh=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        reading_s = timed(lambda: page.reading(fresh=True), runs)
        load_s = timed(backend.load, runs)
        view_s = timed(page.view, runs)
        view = page.view()
        render_s = timed(lambda: render_page(view), runs)
        scrape_s = timed(lambda: generate_latest(metrics.registry), runs)
        text_s = timed(lambda: plan_text(fleet_wide), max(1, runs // 2))
        held = view.held_total
        print(
            f"serve, from a recorded state of {vehicles:,} vehicles ({held:,} held, {len(vins[1::100]):,} failed, "
            f"{len(fleet_wide.vins()):,} in the fleet-wide plan); medians of {runs} runs"
        )
        print(
            f"  reading (state + pending + health):   {reading_s * 1000:8.1f} ms  ({reading_s / load_s:.2f}x baseline); "
            f"memory {peak / 1e6:.1f} MB"
        )
        print(f"  baseline FileBackend.load():          {load_s * 1000:8.1f} ms")
        print(f"  view from the reading:                {view_s * 1000:8.1f} ms")
        print(
            f"  render_page:                          {render_s * 1000:8.1f} ms  ({len(render_page(view).encode()):,} bytes)"
        )
        print(f"  /metrics text (health from reading):  {scrape_s * 1000:8.1f} ms")
        print(f"  plan text of the fleet-wide plan:     {text_s * 1000:8.1f} ms (after each run that planned)")


if __name__ == "__main__":
    main()
