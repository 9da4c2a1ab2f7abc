"""Benchmark: the PostgreSQL state backend, each figure next to the file backend measured in the same run.

A throwaway PostgreSQL cluster is started for the run (tests/postgres.py: initdb in a temporary folder), with
fsync on: every commit is on disk, as the file backend's fsync'd appends are.

1. Events: two `webhook serve` receivers on one database, N connections split between them, envelopes of 10
   events each, every event new, and every 10th envelope delivered to both receivers (the API retrying through
   a load balancer). Events recorded per second; then the rows are counted: none lost, none twice. Baseline:
   one receiver on the file backend, the same load.
2. `reconciler plan` on 10,000 vehicles (1% drifted), state in PostgreSQL against state in a file: median of
   several fresh processes, and the ratio.
3. A first apply of V vehicles against the sandbox, state in PostgreSQL against a file: POSTs per second.

    python tests/perf/bench_postgres.py [--connections 32] [--seconds 5] [--runs 3] [--plan-vehicles 10000]
                                        [--apply-vehicles 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import psycopg

from reconciler.state.file import FileBackend
from reconciler.state.model import State
from reconciler.state.postgres import PostgresBackend
from reconciler.state.record import record_callback
from tests.perf.bench_sandbox import Connection
from tests.perf.bench_webhook import MANIFEST, SECRET, envelope
from tests.postgres import Cluster, start_cluster

FLEET = "bench"


def project(root: Path, dsn: str | None, schema: str) -> str:
    """A config repo whose state knows one callback: in a file, or (with `dsn`) in PostgreSQL."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "callbacks.yaml").write_text(MANIFEST)
    state_section = f"state:\n  backend: postgres\n  dsn: {dsn}\n  schema: {schema}\n" if dsn else ""
    (root / "reconciler.yaml").write_text(f"fleet: {FLEET}\nmanifests: [manifests]\n{state_section}")
    state = State.new(FLEET)
    record_callback(state, "fleet-ops", "cb-bench", {}, {}, "Running")
    if dsn:
        backend = PostgresBackend(dsn, FLEET, schema)
        backend.save(state, None)
        backend.close()
    else:
        FileBackend(root / ".reconciler" / "state.json").save(state, None)
    return "cb-bench"


@contextmanager
def receiver(root: Path) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {**os.environ, "WEBHOOK_AUTH": SECRET, "PYTHONPATH": str(REPO)}
    log = open(root / f"receiver-{port}.log", "w")  # noqa: SIM115 - closed below
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
        assert process.stdout.readline().startswith("Receiving"), (root / f"receiver-{port}.log").read_text()
        time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def deliver(ports: list[int], callback_id: str, connections: int, seconds: float) -> tuple[int, int, set[int]]:
    """(envelopes answered 200, other answers, batches sent): connections spread over the receivers."""
    counter = itertools.count()
    accepted = refused = 0
    batches: set[int] = set()

    async def worker(index: int) -> None:
        nonlocal accepted, refused
        mine = Connection("127.0.0.1", ports[index % len(ports)])
        other = Connection("127.0.0.1", ports[(index + 1) % len(ports)])
        deadline = time.perf_counter() + seconds
        try:
            while time.perf_counter() < deadline:
                batch = next(counter)
                body = envelope(callback_id, batch, ("Done", "Success"))
                targets = [mine, other] if batch % 10 == 0 and len(ports) > 1 else [mine]
                for target in targets:  # every 10th envelope: delivered again through the other receiver
                    status = await target.request("POST", "/remote/webhook", body, SECRET)
                    if status == 200:
                        accepted += 1
                        batches.add(batch)
                    else:
                        refused += 1
        finally:
            mine.close()
            other.close()

    async def all_workers() -> None:
        await asyncio.gather(*(worker(n) for n in range(connections)))

    asyncio.run(all_workers())
    return accepted, refused, batches


def events_part(cluster: Cluster, connections: int, seconds: float, runs: int) -> None:
    rates: dict[str, list[float]] = {"file": [], "postgres": []}
    checks = []
    for run in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            callback_id = project(root / "file", None, "")
            with receiver(root / "file") as port:
                _, refused, batches = deliver([port], callback_id, connections, seconds)
            rates["file"].append(len(batches) * 10 / seconds)
            schema = f"bench_{run}_{os.getpid()}"
            callback_id = project(root / "pg", cluster.dsn, schema)
            with receiver(root / "pg") as first, receiver(root / "pg") as second:
                _, refused, batches = deliver([first, second], callback_id, connections, seconds)
            with psycopg.connect(cluster.dsn) as db:
                rows, keys = db.execute(f"SELECT count(*), count(DISTINCT key) FROM {schema}.events").fetchone()  # type: ignore[misc]
            rates["postgres"].append(len(batches) * 10 / seconds)
            checks.append((len(batches) * 10, rows, keys, refused))
    print(f"1. events, {connections} connections, {seconds:g} s, batches of 10, median of {runs} runs")
    base = statistics.median(rates["file"])
    both = statistics.median(rates["postgres"])
    print(f"  one receiver, file backend (baseline):  {base:9,.0f} events/s")
    print(f"  two receivers, one PostgreSQL database: {both:9,.0f} events/s ({both / base:.2f} x baseline)")
    for sent, rows, keys, refused in checks:
        print(
            f"    run: {sent:,} events accepted, {rows:,} rows ({sent - rows:+,} lost), "
            f"{rows - keys:,} recorded twice, {refused} answers other than 200"
        )


def timed(command: list[str], root: Path, env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
        assert done.returncode in (0, 2), done.stderr[-2000:]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# `plan` in a fresh process whose imports (the PostgreSQL driver's too) are done before the clock starts
WARM = """
import os, sys, time
import psycopg
from reconciler.cli import main
sys.stdout = open(os.devnull, "w")
start = time.perf_counter()
code = main(["plan"])
sys.stderr.write(f"{time.perf_counter() - start}\\n")
"""


def warm(root: Path, env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", WARM], cwd=root, env=env, capture_output=True, text=True)
        times.append(float(done.stderr.strip().splitlines()[-1]))
    return statistics.median(times)


def plan_part(cluster: Cluster, vehicles: int, runs: int) -> None:
    from tests.perf.bench_plan import scenario

    with tempfile.TemporaryDirectory() as folder:
        root = scenario(Path(folder), "drifted", vehicles)
        env = {**os.environ, "WEBHOOK_AUTH": "Basic bench", "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "reconciler", "plan"]
        on_file = timed(command, root, env, runs)
        warm_file = warm(root, env, runs)
        state = FileBackend(root / ".reconciler" / "state.json").load()
        assert state is not None
        schema = f"bench_plan_{vehicles}_{os.getpid()}"
        backend = PostgresBackend(cluster.dsn, state.fleet, schema)
        backend.save(state, None, serial=state.serial)
        backend.close()
        config = root / "reconciler.yaml"
        config.write_text(
            config.read_text() + f"state:\n  backend: postgres\n  dsn: {cluster.dsn}\n  schema: {schema}\n"
        )
        on_postgres = timed(command, root, env, runs)
        warm_postgres = warm(root, env, runs)
    print(f"2. plan, {vehicles:,} vehicles, 1% drifted, median of {runs} fresh processes")
    print(f"  the whole command, state in a file (baseline): {on_file:6.2f} s")
    print(f"  the whole command, state in PostgreSQL:        {on_postgres:6.2f} s ({on_postgres / on_file:.2f} x)")
    print(f"  imports done first, state in a file:           {warm_file:6.2f} s")
    print(
        f"  imports done first, state in PostgreSQL:       {warm_postgres:6.2f} s ({warm_postgres / warm_file:.2f} x)"
    )


def apply_part(cluster: Cluster, vehicles: int, runs: int) -> None:
    from tests.perf.bench_sandbox import start_sandbox
    from tests.perf.fleetgen import write_fleet

    rates: dict[str, list[float]] = {"file": [], "postgres": []}
    for run in range(runs):
        for kind in ("file", "postgres"):
            process, api = start_sandbox(vehicles, extra=["--rate-limit", "1000000", "--daily-limit", "100000000"])
            try:
                with tempfile.TemporaryDirectory() as folder:
                    root = write_fleet(Path(folder), vehicles, first=1, fleet="0a123bc5d1e873066454b4d9")
                    if kind == "postgres":
                        config = root / "reconciler.yaml"
                        schema = f"bench_apply_{run}_{os.getpid()}"
                        config.write_text(
                            config.read_text()
                            + f"state:\n  backend: postgres\n  dsn: {cluster.dsn}\n  schema: {schema}\n"
                        )
                    env = {
                        **os.environ,
                        "WEBHOOK_AUTH": "Basic bench",
                        "RECONCILER_API_URL": api,
                        "RECONCILER_API_CLIENT_ID": "sandbox-client",
                        "RECONCILER_API_USERNAME": "sandbox",
                        "RECONCILER_API_PASSWORD": "sandbox-password",
                        "RECONCILER_API_RATE_LIMIT": "10000",
                    }
                    start = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "reconciler", "apply", "--auto-approve"],
                        cwd=root,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    elapsed = time.perf_counter() - start  # the whole command: its own figure has 0.1 s steps
                    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
                    rates[kind].append(vehicles / elapsed)
            finally:
                process.terminate()
                process.wait(timeout=20)
    base, on_pg = statistics.median(rates["file"]), statistics.median(rates["postgres"])
    print(f"3. first apply of {vehicles:,} vehicles against the sandbox (the whole command), median of {runs} runs")
    print(f"  state in a file (baseline): {base:7,.0f} POSTs/s")
    print(f"  state in PostgreSQL:        {on_pg:7,.0f} POSTs/s ({on_pg / base:.2f} x baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan-vehicles", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--apply-vehicles", type=int, default=10_000)
    parser.add_argument("--parts", default="123", help="which parts to run (1, 2, 3)")
    args = parser.parse_args()
    cluster = start_cluster(durable=True)  # fsync on: the figures are of durable writes
    try:
        if "1" in args.parts:
            events_part(cluster, args.connections, args.seconds, args.runs)
        if "2" in args.parts:
            for vehicles in args.plan_vehicles:
                plan_part(cluster, vehicles, max(args.runs, 5))
        if "3" in args.parts:
            apply_part(cluster, args.apply_vehicles, args.runs)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
