"""Benchmark: `validate` on one large manifest file (10 MB and 60 MB by default), time and peak memory.

The file holds groups of 1,000 vehicles and a schedule for every 10 groups, with distinct VINs (a 60 MB file is
some 2.7 million vehicles). Each run is a fresh process (so peak memory is that run's own); figures are medians
of N runs, next to a baseline measured in the same run on the same file:
- baseline: PyYAML's C loader reading the file (no positions, no checks, no model);
- validate: `validate_project`, what `reconciler validate` does.
Linear growth shows as a steady time per MB and a steady peak per MB of input across sizes.

    python tests/perf/bench_large_manifest.py [--sizes 10 60] [--runs 3] [--code DIR]

`--code DIR` measures the reconciler package found in DIR instead (an older checkout, for before/after).
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

from tests.perf.fleetgen import CALLBACK

CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tests.perf.memory import peak_mb
mode, root = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
if mode == "baseline":
    import yaml
    with open(root / "manifests" / "fleet.yaml", "rb") as handle:
        ok = len(list(yaml.load_all(handle, Loader=yaml.CSafeLoader))) > 0
else:
    from reconciler.validate import validate_project
    report = validate_project(root / "reconciler.yaml", {"WEBHOOK_AUTH": "x"})
    ok = report.exit_code == 0 and report.summary["vehicles"] > 0
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb(), "ok": ok}))
"""


def vin(index: int) -> str:
    """Distinct VINs beyond the million make_vin cycles through: the model-year letter counts millions."""
    return f"VF3UHNKF0{'RSTVWXY'[index // 1_000_000]}L{index % 1_000_000:06d}"


def write_large(root: Path, megabytes: float) -> tuple[int, int]:
    """A config repo whose one manifest file is about `megabytes` MB; (vehicles, bytes)."""
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (root / "reconciler.yaml").write_text("fleet: bench-fleet\nmanifests: [manifests]\n")
    groups: list[str] = []
    vehicles = 0
    with open(manifests / "fleet.yaml", "w") as out:
        out.write(CALLBACK)
        while out.tell() < megabytes * 1e6:
            groups.append(f"depot-{len(groups):05d}")
            out.write(f"---\nkind: VehicleGroup\nname: {groups[-1]}\nvins:\n")
            out.writelines(f"  - {vin(n)}\n" for n in range(vehicles, vehicles + 1000))
            vehicles += 1000
        for first in range(0, len(groups), 10):
            out.write(
                f"---\nkind: Preconditioning\nname: shift-{first // 10:04d}\ncallback: fleet-ops\n"
                f"vehicles:\n  groups: [{', '.join(groups[first : first + 10])}]\nprograms:\n"
                '  - {slot: 1, start: "06:30", days: weekdays}\n  - {slot: 2, start: "PT18H", days: [Sat, Sun]}\n'
            )
    return vehicles, (manifests / "fleet.yaml").stat().st_size


def measure(mode: str, root: Path, runs: int, code: Path) -> tuple[float, float]:
    seconds, peaks = [], []
    for _ in range(runs):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(root), str(code)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(out.stdout)
        assert result["ok"], out
        seconds.append(result["seconds"])
        peaks.append(result["peak_mb"])
    return statistics.median(seconds), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 60], help="MB of YAML")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", type=Path, default=REPO, help="folder holding the reconciler package to measure")
    args = parser.parse_args()
    print(f"validate of one manifest file, median of {args.runs} fresh processes, code from {args.code}")
    print(
        f"{'input':>8} {'vehicles':>10} | {'baseline s':>10} {'MB':>7} | {'validate s':>10} {'MB':>7} |"
        f" {'x time':>6} {'x mem':>6} | {'s/MB':>5} {'peak/input':>10}"
    )
    for megabytes in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            vehicles, size = write_large(root, megabytes)
            base_s, base_mb = measure("baseline", root, args.runs, args.code)
            val_s, val_mb = measure("validate", root, args.runs, args.code)
        mb = size / 1e6
        print(
            f"{mb:6.1f}MB {vehicles:>10,} | {base_s:10.2f} {base_mb:7.0f} | {val_s:10.2f} {val_mb:7.0f} |"
            f" {val_s / base_s:6.2f} {val_mb / base_mb:6.2f} | {val_s / mb:5.3f} {val_mb / (size / 2**20):10.1f}"
        )


if __name__ == "__main__":
    main()
