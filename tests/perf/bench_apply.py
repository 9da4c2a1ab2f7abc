"""Benchmark: apply against the sandbox.

1. 10,000 vehicles x 4 slots, a first apply (10,000 remote POSTs) against a sandbox with no added latency;
   the baseline in the same run is the sandbox's own POST rate with a minimal client (bench_sandbox's). Also
   the apply process's peak memory, and the share of its run spent saving the state.
2. The sandbox limited to R requests/s and `api.rate_limit` R: the rate apply sustains while it sends (the
   sandbox's request count over the run's time), and how many 429s.

Each apply is a fresh process running what `reconciler apply --auto-approve` runs; figures are medians of N
runs, each on a fresh sandbox and state.

    python tests/perf/bench_apply.py [--vehicles 10000] [--rate 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.perf.bench_sandbox import load, remote_urls, start_sandbox
from tests.perf.fleetgen import write_fleet

FLEET = "0a123bc5d1e873066454b4d9"
CHILD = """
import json, os, sys, time
from pathlib import Path
from tests.perf.memory import peak_mb
from reconciler.operations import apply_changes, open_workspace
start = time.perf_counter()
run = apply_changes(open_workspace(Path("reconciler.yaml"), os.environ), os.environ)
report = run.report
assert not report.failed and not report.skipped, report
print(json.dumps({
    "wall": time.perf_counter() - start, "elapsed": report.elapsed, "saving": report.saving,
    "saves": report.saves, "peak_mb": peak_mb(), "calls": len(report.results),
}))
"""


def apply_once(vehicles: int, sandbox_args: list[str], rate: float, parallelism: int) -> dict[str, float]:
    process, api = start_sandbox(vehicles, extra=sandbox_args)
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = write_fleet(Path(folder), vehicles, first=1, fleet=FLEET)
            env = {
                **os.environ,
                "WEBHOOK_AUTH": "Basic bench",
                "RECONCILER_API_URL": api,
                "RECONCILER_API_CLIENT_ID": "sandbox-client",
                "RECONCILER_API_USERNAME": "sandbox",
                "RECONCILER_API_PASSWORD": "sandbox-password",
                "RECONCILER_API_RATE_LIMIT": str(rate),
                "RECONCILER_API_PARALLELISM": str(parallelism),
            }
            before = httpx.get(api.split("/connectedcar")[0] + "/_sandbox/stats").json()
            done = subprocess.run(
                [sys.executable, "-c", CHILD],
                cwd=root,
                env={**env, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            measured = json.loads(done.stdout)
        stats = httpx.get(api.split("/connectedcar")[0] + "/_sandbox/stats").json()
        posts = stats["calls"]["post_remote"]
        return {
            **measured,
            "posts": posts,
            "post_rate": posts / measured["elapsed"],
            # every request apply made, over the time it spent making them (the run, after planning)
            "request_rate": (stats["requests"] - before["requests"]) / measured["elapsed"],
            "command_rate": (stats["requests"] - before["requests"]) / measured["wall"],
            "limited": stats["rate_limited"],
        }
    finally:
        process.terminate()
        process.wait(timeout=20)


def baseline_rate(vehicles: int) -> float:
    process, api = start_sandbox(vehicles)
    try:
        urls = remote_urls(api, pages=1)
        count, _, _ = asyncio.run(load(urls, 32, 4.0, True))
        return count / 4.0
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = baseline_rate(args.vehicles)
    fast = [
        apply_once(
            args.vehicles,
            ["--rate-limit", "1000000", "--daily-limit", "100000000"],
            10_000,
            args.parallelism,  # the largest api.rate_limit allowed
        )
        for _ in range(args.runs)
    ]
    rate = statistics.median(r["post_rate"] for r in fast)
    print(
        f"{args.vehicles:,} vehicles x 4 slots, first apply, parallelism {args.parallelism}, median of {args.runs} runs"
    )
    print(f"  baseline: the sandbox's remote POST rate with a minimal client: {base:,.0f}/s")
    print(
        f"  apply:    {statistics.median(r['posts'] for r in fast):,.0f} POSTs at {rate:,.0f}/s "
        f"({rate / base:.2f} x baseline), whole command {statistics.median(r['wall'] for r in fast):.1f} s"
    )
    saving = statistics.median(r["saving"] / r["elapsed"] for r in fast)
    print(
        f"  apply:    peak memory {statistics.median(r['peak_mb'] for r in fast):.0f} MB; saving the state "
        f"{saving:.1%} of the run ({statistics.median(r['saves'] for r in fast):.0f} saves, "
        f"{statistics.median(r['saving'] for r in fast):.2f} s)"
    )
    limited = [
        apply_once(
            args.vehicles, ["--rate-limit", str(args.rate), "--daily-limit", "100000000"], args.rate, args.parallelism
        )
        for _ in range(args.runs)
    ]
    achieved = statistics.median(r["request_rate"] for r in limited)
    whole = statistics.median(r["command_rate"] for r in limited)
    print(
        f"  sandbox and api.rate_limit at {args.rate:g}/s: {achieved:,.1f} requests/s sustained while applying "
        f"({achieved / args.rate:.2f} x R; {whole / args.rate:.2f} x R over the whole command, start-up and plan "
        f"included), 429s: {sum(int(r['limited']) for r in limited)}"
    )


if __name__ == "__main__":
    main()
