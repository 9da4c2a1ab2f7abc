"""Benchmark: load and validate manifests for a large fleet (100,000 vehicles, 4 slots each by default).

Each run is a fresh process (so peak memory is that run's own). Prints the median of N runs for:
- baseline: parsing the same files with PyYAML's C loader alone (no positions, no checks);
- validate: `validate_project`, what `reconciler validate` does (settings, parse, schema, rules, model).

    python tests/perf/bench_validate.py [--vehicles 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.perf.fleetgen import write_fleet

CHILD = """
from tests.perf.memory import peak_mb
import json, sys, time
from pathlib import Path
mode, root = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
if mode == "baseline":
    import yaml
    for path in sorted((root / "manifests").glob("*.yaml")):
        with open(path, "rb") as handle:
            list(yaml.load_all(handle, Loader=yaml.CSafeLoader))
    ok = True
else:
    import os
    from reconciler.validate import validate_project
    report = validate_project(root / "reconciler.yaml", {"WEBHOOK_AUTH": "x"})
    ok = report.exit_code == 0 and report.summary["slots"] > 0
elapsed = time.perf_counter() - start
peak = peak_mb()
print(json.dumps({"seconds": elapsed, "peak_mb": peak, "ok": ok}))
"""


def measure(mode: str, root: Path, runs: int) -> tuple[float, float]:
    seconds, peaks = [], []
    for _ in range(runs):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(root)], capture_output=True, text=True, env=env, check=True
        )
        result = json.loads(out.stdout)
        assert result["ok"], out
        seconds.append(result["seconds"])
        peaks.append(result["peak_mb"])
    return statistics.median(seconds), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = write_fleet(Path(folder), args.vehicles)
        size = sum(p.stat().st_size for p in (root / "manifests").iterdir()) / 1e6
        print(f"fleet: {args.vehicles:,} vehicles x 4 slots, {size:.1f} MB of YAML, median of {args.runs} runs")
        base_s, base_mb = measure("baseline", root, args.runs)
        val_s, val_mb = measure("validate", root, args.runs)
    print(f"baseline (yaml CSafeLoader only): {base_s:6.3f} s  peak {base_mb:6.1f} MB")
    print(f"validate_project:                 {val_s:6.3f} s  peak {val_mb:6.1f} MB")
    print(f"ratio validate / baseline:        {val_s / base_s:6.2f} x time, {val_mb / base_mb:4.2f} x memory")


if __name__ == "__main__":
    main()
