"""Benchmark: the whole `reconciler plan` (load manifests and state, diff, render text) on a large fleet.

The state records every vehicle as converged, except 1% whose slot 1 was recorded with another start time,
so the plan updates 1% of the vehicles. Each run is a fresh process; figures are medians of N runs:
- baseline: parsing the same manifests (PyYAML C loader) and state (json) and nothing else;
- plan: `reconciler plan` in-process from a fresh interpreter (stdout to /dev/null), and its peak memory;
- command: the same as a subprocess, interpreter start-up included.

    python tests/perf/bench_plan.py [--vehicles 10000 100000] [--runs 5]
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
    with open(".reconciler/state.json", "rb") as handle:
        json.load(handle)
    code = 0
else:
    sys.stdout = open(os.devnull, "w")
    from reconciler.cli import main
    code = main(["plan", "--detailed-exitcode"])
    sys.stdout = sys.__stdout__
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb(), "code": code}))
"""


def converged_state(root: Path, drift_every: int = 100) -> int:
    desired, _ = load_desired([root / "manifests"], ENV)
    state = State.new("bench-fleet")
    record_success(make_plan(desired, None, "bench-fleet", PlanOptions(now=datetime.now(UTC))), state, desired)
    drifted = 0
    for position, vin in enumerate(sorted(state.slots)):
        if position % drift_every == 0:
            old = state.slots[vin][1]
            moved = Program(1, "PT4H0M", old.program.days, old.program.recurrence, old.program.enabled)
            state.slots[vin][1] = SlotRecord(moved, old.callback, old.action, old.kind, old.schedule)
            drifted += 1
    FileBackend(root / ".reconciler" / "state.json").save(state, None)
    return drifted


def child(mode: str, root: Path) -> dict[str, float]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(root)], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    assert result["code"] in (0, 2), out
    return result


def command(root: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan"],
        cwd=root,
        capture_output=True,
        env={**os.environ, **ENV},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


def bench(vehicles: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = write_fleet(Path(folder), vehicles)
        drifted = converged_state(root)
        state_mb = (root / ".reconciler" / "state.json").stat().st_size / 1e6
        print(
            f"\n{vehicles:,} vehicles x 4 slots, {drifted:,} vehicles drifted (1%), state file {state_mb:.1f} MB; median of {runs} runs"
        )
        base = [child("baseline", root) for _ in range(runs)]
        plans = [child("plan", root) for _ in range(runs)]
        whole = [command(root) for _ in range(runs)]
    base_s = statistics.median(r["seconds"] for r in base)
    plan_s = statistics.median(r["seconds"] for r in plans)
    plan_mb = statistics.median(r["peak_mb"] for r in plans)
    print(
        f"  baseline (parse YAML + state JSON): {base_s:6.3f} s  peak {statistics.median(r['peak_mb'] for r in base):6.1f} MB"
    )
    print(
        f"  plan, in-process:                   {plan_s:6.3f} s  peak {plan_mb:6.1f} MB  ({plan_s / base_s:.2f} x baseline)"
    )
    print(f"  plan, whole command (with start-up): {statistics.median(whole):5.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for vehicles in args.vehicles:
        bench(vehicles, args.runs)


if __name__ == "__main__":
    main()
