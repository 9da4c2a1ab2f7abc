"""Benchmark: loading and saving the recorded state of a large fleet, and which JSON library to use for it.

For N vehicles (4 slots each, every one recorded as applied and successful), in fresh processes, medians of
`--runs`:
- load: `FileBackend.load()` (read, parse, decode and check every record), and its peak memory;
- save: `FileBackend.save()` (encode, write, fsync, rename), as apply does every few seconds;
- baseline: `json.loads` and `json.dumps` of the same document alone;
- version 1: the same state in the format of version 1 (one list of five strings per slot), loaded;
- libraries: parsing and serialising the same document with the standard library, orjson and msgspec (those
  installed; neither is a dependency).

    python tests/perf/bench_state.py [--vehicles 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reconciler.manifests import load_desired
from reconciler.planner import PlanOptions, make_plan
from reconciler.state.file import FileBackend
from reconciler.state.model import State, program_text
from tests.perf.fleetgen import write_fleet
from tests.planning import record_success

CHILD = """
from tests.perf.memory import peak_mb
import json, sys, time
from pathlib import Path
from reconciler.state.file import FileBackend
mode, path = sys.argv[1], Path(sys.argv[2])
backend = FileBackend(path)
raw = path.read_bytes()
start = time.perf_counter()
if mode == "load":
    state = backend.load()
elif mode == "parse":
    data = json.loads(raw)
elif mode == "save":
    state = backend.load()
    start = time.perf_counter()
    backend.save(state, state.serial)
elif mode == "dumps":
    data = json.loads(raw)
    start = time.perf_counter()
    json.dumps(data, separators=(",", ":")).encode()
else:
    import importlib
    library = importlib.import_module(mode.split(":")[1])
    data = json.loads(raw)
    start = time.perf_counter()
    if mode.startswith("loads:"):
        library.loads(raw) if hasattr(library, "loads") else library.json.decode(raw)
    else:
        library.dumps(data) if hasattr(library, "dumps") else library.json.encode(data)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb()}))
"""


def recorded_state(root: Path, vehicles: int) -> State:
    write_fleet(root, vehicles, groups_per_schedule=max(1, vehicles // 1000))
    desired, _ = load_desired([root / "manifests"], {"WEBHOOK_AUTH": "Basic bench"})
    state = State.new("bench-fleet")
    return record_success(make_plan(desired, None, "bench-fleet", PlanOptions(now=datetime.now(UTC))), state, desired)


def version_1(state: State) -> dict[str, object]:
    """The document version 1 wrote: a [program, callback, action, kind, schedule] list per slot."""
    data = state.to_dict()
    data["version"] = 1
    del data["layouts"]
    data["slots"] = {
        vin: {str(n): [program_text(r.program), r.callback, r.action, r.kind, r.schedule] for n, r in sorted(s.items())}
        for vin, s in sorted(state.slots.items())
    }
    return data


def child(mode: str, path: Path) -> dict[str, float] | None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        if "ModuleNotFoundError" in out.stderr:
            return None
        raise RuntimeError(out.stderr)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def median(mode: str, path: Path, runs: int) -> tuple[float, float] | None:
    results = [child(mode, path) for _ in range(runs)]
    if any(r is None for r in results):
        return None
    return (
        statistics.median(r["seconds"] for r in results if r),
        statistics.median(r["peak_mb"] for r in results if r),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        state = recorded_state(root, args.vehicles)
        path = root / "state.json"
        FileBackend(path).save(state, None)
        old = root / "state-v1.json"
        old.write_text(json.dumps(version_1(state), separators=(",", ":")))
        size, old_size = path.stat().st_size / 1e6, old.stat().st_size / 1e6
        print(f"{args.vehicles:,} vehicles x 4 slots recorded; medians of {args.runs} fresh processes")
        print(f"  state file: {size:.1f} MB (version 1 of the same state: {old_size:.1f} MB)")
        parse = median("parse", path, args.runs)
        dumps = median("dumps", path, args.runs)
        load = median("load", path, args.runs)
        save = median("save", path, args.runs)
        v1 = median("load", old, args.runs)
        assert parse and dumps and load and save and v1
        print(f"  baseline json.loads: {parse[0]:.3f} s; json.dumps: {dumps[0]:.3f} s")
        print(
            f"  load: {load[0]:.3f} s ({load[0] / parse[0]:.2f} x json.loads), peak {load[1]:.0f} MB; "
            f"version 1 file: {v1[0]:.3f} s, peak {v1[1]:.0f} MB"
        )
        print(f"  save (encode, write, fsync, rename): {save[0]:.3f} s ({save[0] / dumps[0]:.2f} x json.dumps)")
        print("  libraries on the same document (parse / serialise):")
        for library in ("json", "orjson", "msgspec"):
            loads = median(f"loads:{library}", path, args.runs)
            written = median(f"dumps:{library}", path, args.runs)
            if loads is None or written is None:
                print(f"    {library:8} not installed")
                continue
            print(
                f"    {library:8} {loads[0]:.3f} s ({loads[0] / parse[0]:.2f} x) / "
                f"{written[0]:.3f} s ({written[0] / dumps[0]:.2f} x)"
            )


if __name__ == "__main__":
    main()
