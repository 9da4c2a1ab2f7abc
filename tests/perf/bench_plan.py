"""Benchmark: the whole `reconciler plan` (load manifests and state, diff, render) on a large fleet.

Scenarios, each on a fleet of N vehicles in one schedule of 4 slots (`--vehicles`):
- first: no state recorded yet, so every vehicle changes (as after `init`);
- edited: every vehicle recorded as converged, then the schedule's start moved (a routine fleet-wide edit);
- drifted: every vehicle recorded as converged except 1%, recorded with another start time.
Each is planned in text and in JSON. Figures are medians of `--runs` fresh processes, printed next to the
baseline measured in the same run: parsing the same manifests (PyYAML's C loader) and state (json), nothing else.

`--peer` also times the first plan of 2,500 vehicles x 4 slots as a whole command (interpreter start-up
included) against octoDNS 1.22 planning 10,000 records with 1% changed (octodns_peer.sh, which installs
octoDNS once in a cached virtual environment).

`--excludes K` instead times the edited fleet planned with K vehicles left out by one `--exclude vin:` each
(serve leaves out each drifted vehicle so when self-heal is off) against the same plan without them.

    python tests/perf/bench_plan.py [--vehicles 100000] [--runs 5] [--peer] [--excludes K]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reconciler.manifests import load_desired
from reconciler.model import Program
from reconciler.planner import PlanOptions, make_plan
from reconciler.state.file import FileBackend
from reconciler.state.model import SlotRecord, State
from tests.perf.fleetgen import write_fleet
from tests.planning import record_success

ENV = {"WEBHOOK_AUTH": "Basic bench"}
PEER = Path(__file__).with_name("octodns_peer.sh")
CHILD = """
from tests.perf.memory import peak_mb
import json, os, sys, time
os.chdir(sys.argv[2])
start = time.perf_counter()
if sys.argv[1] == "baseline":
    import yaml
    from pathlib import Path
    for path in sorted(Path("manifests").glob("*.yaml")):
        with open(path, "rb") as handle:
            list(yaml.load_all(handle, Loader=yaml.CSafeLoader))
    if os.path.exists(".reconciler/state.json"):
        with open(".reconciler/state.json", "rb") as handle:
            json.load(handle)
    code = 0
else:
    sys.stdout = open("plan.out", "w")
    from reconciler.cli import main
    code = main(["plan", "--detailed-exitcode", "--format", sys.argv[1], *sys.argv[3:]])
    sys.stdout.close()
    sys.stdout = sys.__stdout__
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb(), "code": code}))
"""
TARGETS = {  # (scenario, format): seconds, from the fleet-scale plan requirements (100,000 vehicles)
    ("first", "text"): 2.0,
    ("first", "json"): 3.0,
    ("edited", "text"): 2.0,
    ("edited", "json"): 3.0,
    ("drifted", "text"): 1.5,
}


def one_schedule(root: Path, vehicles: int) -> Path:
    """N vehicles in groups of 1,000, all in one schedule of 4 slots."""
    return write_fleet(root, vehicles, groups_per_schedule=max(1, vehicles // 1000))


def converged(root: Path, drift_every: int | None = None) -> None:
    """Record every vehicle as applied and successful; with `drift_every`, one vehicle in that many recorded
    with slot 1 at another start time."""
    desired, _ = load_desired([root / "manifests"], ENV)
    state = State.new("bench-fleet")
    record_success(make_plan(desired, None, "bench-fleet", PlanOptions(now=datetime.now(UTC))), state, desired)
    if drift_every:
        for position, vin in enumerate(sorted(state.slots)):
            if position % drift_every == 0:
                old = state.slots[vin][1]
                moved = Program(1, "PT4H0M", old.program.days, old.program.recurrence, old.program.enabled)
                state.slots[vin][1] = SlotRecord(moved, old.callback, old.action, old.kind, old.schedule)
    FileBackend(root / ".reconciler" / "state.json").save(state, None)


def scenario(root: Path, name: str, vehicles: int) -> Path:
    one_schedule(root, vehicles)
    if name == "edited":
        converged(root)
        schedules = root / "manifests" / "schedules.yaml"
        schedules.write_text(schedules.read_text().replace('start: "05:30"', 'start: "05:45"'))
    elif name == "drifted":
        converged(root, drift_every=100)
    return root


def child(mode: str, root: Path, *options: str) -> dict[str, float]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(root), *options], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    assert result["code"] in (0, 2), out
    if mode != "baseline":
        result["output_mb"] = (root / "plan.out").stat().st_size / 1e6
    return result


def command(root: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan"], cwd=root, capture_output=True, env={**os.environ, **ENV}
    )
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def bench(vehicles: int, runs: int) -> None:
    print(f"\n{vehicles:,} vehicles x 4 slots in one schedule; medians of {runs} fresh processes")
    for name in ("first", "edited", "drifted"):
        with tempfile.TemporaryDirectory() as folder:
            root = scenario(Path(folder), name, vehicles)
            base = [child("baseline", root) for _ in range(runs)]
            base_s = median(base, "seconds")
            state = root / ".reconciler" / "state.json"
            size = f", state file {state.stat().st_size / 1e6:.1f} MB" if state.exists() else ""
            print(
                f"  {name}{size}: baseline (parse YAML + state JSON) {base_s:.3f} s, {median(base, 'peak_mb'):.0f} MB"
            )
            for fmt in ("text", "json"):
                plans = [child(fmt, root) for _ in range(runs)]
                seconds = median(plans, "seconds")
                target = TARGETS.get((name, fmt))
                wanted = f" (target <= {target:g} s at 100,000)" if target else ""
                print(
                    f"    plan --format {fmt:4}: {seconds:6.3f} s{wanted}, {seconds / base_s:5.2f} x baseline, "
                    f"peak {median(plans, 'peak_mb'):5.0f} MB, output {median(plans, 'output_mb'):6.2f} MB"
                )


def excluded(vehicles: int, runs: int, count: int) -> None:
    """The edited fleet planned with `count` vehicles left out one `--exclude vin:` each, as serve leaves out
    every drifted vehicle when self-heal is off, against the same plan without them."""
    with tempfile.TemporaryDirectory() as folder:
        root = scenario(Path(folder), "edited", vehicles)
        state = FileBackend(root / ".reconciler" / "state.json").load()
        assert state is not None
        vins = sorted(state.slots)[:: max(1, vehicles // count)][:count]
        options = [f"--exclude=vin:{vin}" for vin in vins]
        plain = median([child("text", root) for _ in range(runs)], "seconds")
        left = median([child("text", root, *options) for _ in range(runs)], "seconds")
    print(
        f"\nedited fleet of {vehicles:,}, {len(vins):,} vehicles left out by --exclude vin: each: "
        f"{left:.3f} s vs {plain:.3f} s without ({left / plain:.2f}x)"
    )


def peer(runs: int) -> None:
    """2,500 vehicles x 4 slots (10,000 slots), first plan, whole command; octoDNS on 10,000 records."""
    with tempfile.TemporaryDirectory() as folder:
        root = scenario(Path(folder), "first", 2500)
        ours = statistics.median(command(root) for _ in range(runs))
    theirs = []
    for _ in range(runs):
        out = subprocess.run(["bash", str(PEER), "10000"], capture_output=True, text=True, check=True)
        theirs.append(float(out.stdout.strip().splitlines()[-1]))
    octodns = statistics.median(theirs)
    print(
        f"\npeer: first plan of 2,500 vehicles x 4 slots, whole command: {ours:.3f} s; "
        f"octoDNS 1.22 planning 10,000 records (1% changed): {octodns:.3f} s; "
        f"reconciler {octodns / ours:.1f}x faster (target >= 20x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, nargs="+", default=[100_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peer", action="store_true", help="also compare with octoDNS (installs it once)")
    parser.add_argument("--excludes", type=int, help="only: the edited fleet with this many vin: excludes")
    args = parser.parse_args()
    for vehicles in args.vehicles:
        if args.excludes:
            excluded(vehicles, args.runs, args.excludes)
            continue
        bench(vehicles, args.runs)
    if args.peer:
        peer(args.runs)


if __name__ == "__main__":
    main()
