"""Benchmark: how fast a run stops on a systemic failure, and how much it sends before it does.

On a converged fleet of N vehicles whose every vehicle then changes (so apply has N calls to make):
1. the API unreachable (the sandbox stopped): time for `apply` to exit, and its exit code;
2. a wrong password: time to exit, and the requests the sandbox received;
3. the daily quota spent (the sandbox answers 429 with Retry-After 86,400): time to exit;
4. the same with api.max_retry_wait raised to a day, and SIGINT once the 429 came: time from signal to exit.
The baseline in the same run is `reconciler plan` on the same repo and state (the fixed cost of a command).
Each figure is the median of several fresh processes; a run still going after --cap seconds is stopped and
reported as such.

    python tests/perf/bench_failfast.py [--vehicles 200] [--runs 3] [--python PATH] [--cap 300]

--python runs another installation's reconciler (e.g. an older checkout's virtual environment), for figures
before and after a change on the same machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.perf.bench_sandbox import start_sandbox
from tests.perf.fleetgen import write_fleet

FLEET = "0a123bc5d1e873066454b4d9"


def environment(api: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "WEBHOOK_AUTH": "Basic bench",
        "RECONCILER_API_URL": api,
        "RECONCILER_API_CLIENT_ID": "sandbox-client",
        "RECONCILER_API_USERNAME": "sandbox",
        "RECONCILER_API_PASSWORD": "sandbox-password",
        "RECONCILER_API_RATE_LIMIT": "1000",
        **extra,
    }


def timed(python: str, args: list[str], root: Path, env: dict[str, str], cap: float) -> tuple[float, int | None]:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [python, "-m", "reconciler", *args], cwd=root, env=env, capture_output=True, text=True, timeout=cap
        )
    except subprocess.TimeoutExpired:
        return cap, None
    return time.perf_counter() - start, done.returncode


def converged(python: str, vehicles: int, folder: Path, extra: list[str]) -> tuple[subprocess.Popen[str], str, Path]:
    """A sandbox, a repo applied to it, then every vehicle changed: apply has N calls to make."""
    process, api = start_sandbox(vehicles, extra=["--rate-limit", "1000000", "--daily-limit", "100000000"])
    root = write_fleet(folder, vehicles, first=1, fleet=FLEET)
    done = subprocess.run(
        [python, "-m", "reconciler", "apply", "--auto-approve"], cwd=root, env=environment(api), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    schedules = root / "manifests" / "schedules.yaml"
    schedules.write_text(schedules.read_text().replace(":30", ":40"))
    if extra:  # the quota scenarios need a sandbox with a spent quota: start another one on the same fleet
        process.terminate()
        process.wait(timeout=20)
        process, api = start_sandbox(vehicles, extra=extra)
    return process, api, root


def scenario(
    python: str, vehicles: int, cap: float, extra: list[str], run: Callable[[str, Path], tuple[float, int | None]]
) -> tuple[float, int | None, float]:
    with tempfile.TemporaryDirectory() as folder:
        process, api, root = converged(python, vehicles, Path(folder), extra)
        try:
            baseline, _ = timed(python, ["plan"], root, environment(api), cap)
            seconds, code = run(api, root)
        finally:
            process.terminate()
            process.wait(timeout=20)
    return seconds, code, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cap", type=float, default=300.0)
    args = parser.parse_args()
    python, cap = args.python, args.cap
    apply = ["apply", "--auto-approve"]
    sent: list[int] = []

    def unreachable(api: str, root: Path) -> tuple[float, int | None]:
        dead = api.replace(api.split(":")[2].split("/")[0], "9")  # port 9 (discard): nothing listens
        return timed(python, apply, root, environment(dead), cap)

    def wrong_password(api: str, root: Path) -> tuple[float, int | None]:
        stats = api.split("/connectedcar")[0] + "/_sandbox/stats"
        before = httpx.get(stats).json()["requests"]
        result = timed(python, apply, root, environment(api, RECONCILER_API_PASSWORD="wrong"), cap)
        sent.append(httpx.get(stats).json()["requests"] - before)
        return result

    def quota(api: str, root: Path) -> tuple[float, int | None]:
        return timed(python, apply, root, environment(api), cap)

    def signal_in_wait(api: str, root: Path) -> tuple[float, int | None]:
        stats = api.split("/connectedcar")[0] + "/_sandbox/stats"
        env = environment(api, RECONCILER_API_MAX_RETRY_WAIT="86400")
        command = [python, "-m", "reconciler", *apply]
        with subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as p:
            deadline = time.monotonic() + cap
            while httpx.get(stats).json()["rate_limited"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # well into the wait
            signalled = time.perf_counter()
            p.send_signal(signal.SIGINT)
            try:
                code = p.wait(timeout=cap)
            except subprocess.TimeoutExpired:
                p.kill()
                return cap, None
            return time.perf_counter() - signalled, code

    spent = ["--rate-limit", "1000000", "--daily-limit", "1"]
    print(f"{args.vehicles:,} vehicles, every one to change; median of {args.runs} fresh processes; {python}")
    for title, extra, run in (
        ("API unreachable: apply exits after", [], unreachable),
        ("wrong password: apply exits after", [], wrong_password),
        ("daily quota spent: apply exits after", spent, quota),
        ("SIGINT during a day-long quota wait: exits after", spent, signal_in_wait),
    ):
        results = [scenario(python, args.vehicles, cap, extra, run) for _ in range(args.runs)]
        seconds = statistics.median(r[0] for r in results)
        baseline = statistics.median(r[2] for r in results)
        codes = sorted({str(r[1]) if r[1] is not None else f"still running at {cap:g} s" for r in results})
        print(
            f"  {title} {seconds:.2f} s ({seconds / baseline:.1f} x baseline `plan` {baseline:.2f} s), "
            f"exit {', '.join(codes)}"
        )
        if run is wrong_password:
            print(f"    requests the API received: {statistics.median(sent):.0f} (median)")


if __name__ == "__main__":
    main()
