"""Benchmark: remote POSTs per second the sandbox serves, and the memory of a 10,000-vehicle sandbox.

Starts `reconciler sandbox` as its own process (10,000 vehicles), then a client with N concurrent keep-alive
connections posts preconditioning remotes to rotating vehicles for a fixed time. Prints throughput and
p50/p99 latency (median over runs), next to a baseline in the same run: GET of the fleet, which passes the
same authentication and rate limiting but has no body to validate and nothing to simulate.

    python tests/perf/bench_sandbox.py [--connections 32] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BODY = {
    "label": "bench",
    "preconditioning": {
        "airConditioning": {
            "programs": [
                {
                    "actionsType": "Set",
                    "slot": 1,
                    "enabled": True,
                    "recurrence": "Daily",
                    "start": "PT7H30M",
                    "occurence": {"day": ["Mon", "Tue", "Wed", "Thu", "Fri"]},
                }
            ]
        }
    },
}


def start_sandbox(vehicles: int, extra: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    limits = extra if extra is not None else ["--rate-limit", "1000000", "--daily-limit", "100000000"]
    command = [sys.executable, "-m", "reconciler", "sandbox", "--listen", "127.0.0.1:0", "--vehicles", str(vehicles)]
    command += ["--speed", "50", "--offline-rate", "0", *limits]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.split(": ", 1)[1].strip()


def remote_urls(api: str, pages: int | None = None) -> list[str]:
    """A callback made for the benchmark, and the remotes URL of each vehicle (of the first `pages` pages)."""
    fleet = f"{api}/fleets/0a123bc5d1e873066454b4d9"
    auth = ("sandbox", "sandbox-password")
    subscribe = {
        "label": "bench",
        "callback": {"webhook": {"target": "https://hooks.example.com/x", "name": "b"}},
        "remoteTypes": ["ThermalPreconditioning"],
    }
    answer = httpx.post(f"{fleet}/remote/callbacks", json=subscribe, auth=auth, params={"client_id": "sandbox-client"})
    callback = answer.json()["callbackId"]
    vids: list[str] = []
    url: str | None = f"{fleet}/vehicles?pageSize=60&client_id=sandbox-client"
    while url and (pages is None or pages > 0):
        page = httpx.get(url, auth=auth).json()
        vids += [v["id"] for v in page["_embedded"]["vehicles"]]
        url = page["_links"].get("next", {}).get("href")
        pages = None if pages is None else pages - 1
    return [f"{fleet}/vehicles/{vid}/callbacks/{callback}/remotes?client_id=sandbox-client" for vid in vids]


def memory_mb(pid: int) -> tuple[float, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Connection:
    """A minimal HTTP/1.1 keep-alive client, so that the load generator costs little next to the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes, auth: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(urls: list[str], connections: int, seconds: float, post: bool) -> tuple[int, list[float], int]:
    parts = httpx.URL(urls[0])
    host, port = parts.host, parts.port or 80
    targets = [httpx.URL(url).raw_path.decode() for url in urls]
    auth = "Basic " + base64.b64encode(b"sandbox:sandbox-password").decode()
    body = json.dumps(BODY).encode() if post else b""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter, failures
        connection = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                counter += 1
                start = time.perf_counter()
                status = await connection.request(
                    "POST" if post else "GET", targets[counter % len(targets)], body, auth
                )
                latencies.append(time.perf_counter() - start)
                if status not in (200, 202):
                    failures += 1
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies, failures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    process, api = start_sandbox(args.vehicles)
    try:
        root = api.split("/connectedcar")[0]
        fleet = f"{api}/fleets/0a123bc5d1e873066454b4d9"
        rss, _ = memory_mb(process.pid)
        print(f"sandbox with {args.vehicles:,} vehicles: {rss:.1f} MB resident after start")
        remotes = remote_urls(api)
        results = {"baseline": [], "post": []}  # type: dict[str, list[tuple[float, float, float, int]]]
        for _ in range(args.runs):
            for mode, urls in (("baseline", [f"{fleet}?client_id=sandbox-client"]), ("post", remotes)):
                count, latencies, failures = asyncio.run(load(urls, args.connections, args.seconds, mode == "post"))
                results[mode].append(
                    (count / args.seconds, percentile(latencies, 0.5), percentile(latencies, 0.99), failures)
                )
        rss, peak = memory_mb(process.pid)
        print(f"{args.connections} connections, {args.seconds:g} s per run, median of {args.runs} runs")
        for mode, label in (("baseline", "GET fleet (baseline)"), ("post", "POST remote")):
            rows = results[mode]
            rate = statistics.median(r[0] for r in rows)
            p50 = statistics.median(r[1] for r in rows) * 1000
            p99 = statistics.median(r[2] for r in rows) * 1000
            failed = sum(r[3] for r in rows)
            print(f"  {label:32s} {rate:8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   non-2xx {failed}")
        ratio = statistics.median(r[0] for r in results["post"]) / statistics.median(r[0] for r in results["baseline"])
        print(f"  remote POSTs run at {ratio:.2f} x the baseline rate")
        stats = httpx.get(f"{root}/_sandbox/stats").json()
        print(f"sandbox memory: {rss:.1f} MB resident, peak {peak:.1f} MB, after {stats['remotes']:,} remotes")
    finally:
        process.terminate()
        process.wait(timeout=20)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
