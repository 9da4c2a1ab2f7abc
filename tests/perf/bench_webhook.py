"""Benchmark: notifications recorded durably by `reconciler webhook serve` on the file backend.

Starts the receiver as its own process (its log to a file) and drives it with N keep-alive connections for a
fixed time. Median of N runs; every figure has its baseline measured in the same run.

1. A project whose state knows one callback: envelopes of 10 events each (with the callback's Authorization
   header), each fsynced before its 200: events per second and p50/p99 latency, next to GET /healthz.
2. A project of V vehicles (100,000 by default: large manifests and state): the same valid traffic alone, then
   with S more connections posting envelopes for callbackIds the receiver does not know (which make it look at
   the state again), first with the state unchanged, then while the journal grows as during an apply (one entry
   every 100 ms). Valid events/s and p99 next to the valid traffic alone, and the unknown ids' answers/s.

    python tests/perf/bench_webhook.py [--connections 32] [--seconds 5] [--runs 3] [--vehicles 100000]
                                       [--strangers 4] [--code DIR]

`--code DIR` runs the receiver from another source tree (e.g. an older version exported with `git archive`),
to compare versions under the same load.
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
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
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


def envelope(callback_id: str, batch: int = 0, status: tuple[str, str] = ("Pending", "SentToVehicle")) -> bytes:
    """A notification of ten events for `callback_id` (remote ids unique per `batch`), each of `status`."""
    events = [
        {
            "remoteActionId": f"r-{batch}-{i}",
            "vin": "VF3UHNKF5RL000005",
            "eventDate": "2026-11-25T08:00:00.000Z",
            "remoteType": "ThermalPreconditioning",
            "eventStatus": {"type": status[0], "status": status[1]},
        }
        for i in range(10)
    ]
    return json.dumps({"callbackId": callback_id, "attributes": [], "events": events}).encode()


@dataclass
class Stream:
    """One kind of request, sent over `connections` connections in a loop until the deadline."""

    method: str
    target: str
    body: bytes
    auth: str
    expected: int
    connections: int
    latencies: list[float] = field(default_factory=list)
    unexpected: int = 0


async def drive(port: int, streams: list[Stream], seconds: float) -> None:
    deadline = time.perf_counter() + seconds

    async def worker(stream: Stream) -> None:
        connection = Connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await connection.request(stream.method, stream.target, stream.body, stream.auth)
                stream.latencies.append(time.perf_counter() - start)
                stream.unexpected += status != stream.expected
        finally:
            connection.close()

    await asyncio.gather(*(worker(s) for s in streams for _ in range(s.connections)))


def measure(port: int, streams: list[Stream], seconds: float) -> list[tuple[float, float, float, int]]:
    """(requests/s, p50, p99, unexpected answers) of each stream, driven together."""
    asyncio.run(drive(port, streams, seconds))
    return [
        (len(s.latencies) / seconds, percentile(s.latencies, 0.5), percentile(s.latencies, 0.99), s.unexpected)
        for s in streams
    ]


def valid(connections: int, callback_id: str) -> Stream:
    return Stream("POST", "/remote/webhook", envelope(callback_id), SECRET, 200, connections)


def strangers(connections: int) -> Stream:
    body = envelope(f"unknown-{uuid.uuid4().hex}")
    return Stream("POST", "/remote/webhook", body, "Basic d3Jvbmc6Z3Vlc3M=", 401, connections)


@contextmanager
def receiver(root: Path, code: Path) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WEBHOOK_AUTH": SECRET, "PYTHONPATH": str(code)}
    with open(root / "receiver.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "webhook", "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            assert banner.startswith("Receiving"), (root / "receiver.log").read_text()
            time.sleep(0.5)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=60)


@contextmanager
def journal_growing(root: Path, every: float = 0.1) -> Iterator[None]:
    """Entries appended to the journal as a running apply does, so the state's signature keeps changing."""
    backend = FileBackend(root / ".reconciler" / "state.json")
    stop = threading.Event()

    def grow() -> None:
        while not stop.wait(every):
            backend.append_journal([{"kind": "intent", "id": uuid.uuid4().hex, "op": "bench"}])

    thread = threading.Thread(target=grow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        backend.clear_journal()


def row(label: str, figures: list[tuple[float, float, float, int]], events: bool = True) -> str:
    rate = statistics.median(f[0] for f in figures)
    p50 = statistics.median(f[1] for f in figures) * 1000
    p99 = statistics.median(f[2] for f in figures) * 1000
    extra = f" = {rate * 10:8,.0f} events/s" if events else " " * 20
    return (
        f"  {label:44s} {rate:8,.0f} req/s{extra}   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
        f"unexpected {sum(f[3] for f in figures)}"
    )


def small_project(root: Path) -> str:
    (root / "manifests").mkdir()
    (root / "manifests" / "callbacks.yaml").write_text(MANIFEST)
    (root / "reconciler.yaml").write_text("fleet: bench\nmanifests: [manifests]\n")
    state = State.new("bench")
    record_callback(state, "fleet-ops", "cb-bench", {}, {}, "Running")
    FileBackend(root / ".reconciler" / "state.json").save(state, None)
    return "cb-bench"


def large_project(root: Path, vehicles: int) -> str:
    from tests.perf.bench_plan import converged_state
    from tests.perf.fleetgen import write_fleet

    write_fleet(root, vehicles)
    converged_state(root)
    state = FileBackend(root / ".reconciler" / "state.json").load()
    assert state is not None
    return state.callbacks["fleet-ops"].id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vehicles", type=int, default=100_000, help="of the large project (0: skip part 2)")
    parser.add_argument("--strangers", type=int, default=4, help="connections posting unknown callbackIds")
    parser.add_argument("--code", type=Path, default=REPO, help="source tree the receiver runs from")
    args = parser.parse_args()
    seconds, runs = args.seconds, args.runs
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "small"
        root.mkdir()
        callback_id = small_project(root)
        rows: dict[str, list[tuple[float, float, float, int]]] = {"health": [], "events": []}
        with receiver(root, args.code) as port:
            for _ in range(runs):
                rows["health"] += measure(
                    port, [Stream("GET", "/healthz", b"", SECRET, 200, args.connections)], seconds
                )
                rows["events"] += measure(port, [valid(args.connections, callback_id)], seconds)
        recorded = len(FileBackend(root / ".reconciler" / "state.json").read_events())
        print(
            f"receiver from {args.code}\n"
            f"1. {args.connections} connections, {seconds:g} s per run, median of {runs} runs; "
            f"{recorded:,} events on disk at the end"
        )
        print(row("GET /healthz (baseline)", rows["health"], events=False))
        print(row("POST 10 events, fsynced", rows["events"]))
        if not args.vehicles:
            return

        large = Path(folder) / "large"
        large.mkdir()
        started = time.perf_counter()
        callback_id = large_project(large, args.vehicles)
        state_mb = (large / ".reconciler" / "state.json").stat().st_size / 1e6
        generated = time.perf_counter() - started
        modes = ("alone", "strangers", "strangers-apply")
        figures: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in modes}
        unknown: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in modes[1:]}
        with receiver(large, args.code) as port:
            figures["alone"] += [measure(port, [valid(args.connections, callback_id)], seconds)[0] for _ in range(runs)]
            for mode in modes[1:]:  # the journal grows in the last mode only: the state stays unchanged before it
                for _ in range(runs):
                    with journal_growing(large) if mode == "strangers-apply" else nullcontext():
                        ok, refused = measure(
                            port, [valid(args.connections, callback_id), strangers(args.strangers)], seconds
                        )
                    figures[mode].append(ok)
                    unknown[mode].append(refused)
        print(
            f"2. {args.vehicles:,} vehicles (state {state_mb:.0f} MB, generated in {generated:.0f} s): "
            f"{args.connections} valid connections, {args.strangers} with unknown callbackIds"
        )
        print(row("valid alone (baseline)", figures["alone"]))
        print(row("valid, with unknown ids (state unchanged)", figures["strangers"]))
        print(row("  unknown ids answered (401)", unknown["strangers"], events=False))
        print(row("valid, with unknown ids (journal growing)", figures["strangers-apply"]))
        print(row("  unknown ids answered (401)", unknown["strangers-apply"], events=False))
        base = statistics.median(f[0] for f in figures["alone"])
        for mode in modes[1:]:
            ratio = statistics.median(f[0] for f in figures[mode]) / base
            print(f"  valid events/s {mode}: {ratio:.2f} x alone")


if __name__ == "__main__":
    main()
