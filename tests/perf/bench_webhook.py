"""Benchmark: notifications recorded durably by `reconciler webhook serve` on the file backend.

Starts the receiver as its own process for a project whose state knows one callback, then N connections post
envelopes of 10 events each (with the callback's Authorization header) for a fixed time. Prints events per
second recorded (each request is fsynced before its 200) and p50/p99 latency, next to GET /healthz in the
same run as the baseline. Median of N runs.

    python tests/perf/bench_webhook.py [--connections 32] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reconciler.state.file import FileBackend
from reconciler.state.model import State
from reconciler.state.record import record_callback
from tests.perf.bench_sandbox import Connection, percentile

SECRET = "Basic YmVuY2g6YmVuY2g="
MANIFEST = """kind: Callback
name: fleet-ops
webhook:
  target: http://127.0.0.1:9/remote/webhook
  headers: {Authorization: "${env:WEBHOOK_AUTH}"}
remoteTypes: [ThermalPreconditioning]
"""


def envelope(batch: int) -> bytes:
    events = [
        {
            "remoteActionId": f"r-{batch}-{i}",
            "vin": "VF3UHNKF5RL000005",
            "eventDate": "2026-11-25T08:00:00.000Z",
            "remoteType": "ThermalPreconditioning",
            "eventStatus": {"type": "Pending", "status": "SentToVehicle"},
        }
        for i in range(10)
    ]
    return json.dumps({"callbackId": "cb-bench", "attributes": [], "events": events}).encode()


async def load(port: int, connections: int, seconds: float, post: bool) -> tuple[int, list[float], int]:
    body = envelope(0) if post else b""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal failures
        connection = Connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await connection.request(
                    "POST" if post else "GET", "/remote/webhook" if post else "/healthz", body, SECRET
                )
                latencies.append(time.perf_counter() - start)
                failures += status != 200
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "manifests").mkdir()
        (root / "manifests" / "callbacks.yaml").write_text(MANIFEST)
        (root / "reconciler.yaml").write_text("fleet: bench\nmanifests: [manifests]\n")
        state = State.new("bench")
        record_callback(state, "fleet-ops", "cb-bench", {}, {}, "Running")
        backend = FileBackend(root / ".reconciler" / "state.json")
        backend.save(state, None)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "WEBHOOK_AUTH": SECRET, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "webhook", "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            process.stdout.readline()
            time.sleep(0.5)
            rows: dict[str, list[tuple[float, float, float, int]]] = {"health": [], "events": []}
            for _ in range(args.runs):
                for mode in ("health", "events"):
                    count, latencies, failures = asyncio.run(
                        load(port, args.connections, args.seconds, mode == "events")
                    )
                    rows[mode].append(
                        (count / args.seconds, percentile(latencies, 0.5), percentile(latencies, 0.99), failures)
                    )
            recorded = len(backend.read_events())
        finally:
            process.terminate()
            process.wait(timeout=20)
    print(
        f"{args.connections} connections, {args.seconds:g} s per run, median of {args.runs} runs; "
        f"{recorded:,} events on disk at the end"
    )
    for mode, label in (("health", "GET /healthz (baseline)"), ("events", "POST 10 events, fsynced")):
        rate = statistics.median(r[0] for r in rows[mode])
        p50 = statistics.median(r[1] for r in rows[mode]) * 1000
        p99 = statistics.median(r[2] for r in rows[mode]) * 1000
        extra = f" = {rate * 10:,.0f} events/s" if mode == "events" else ""
        print(
            f"  {label:26s} {rate:8,.0f} req/s{extra}   p50 {p50:5.1f} ms   p99 {p99:5.1f} ms   non-200 {sum(r[3] for r in rows[mode])}"
        )


if __name__ == "__main__":
    main()
