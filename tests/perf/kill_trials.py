"""Trials: apply killed with SIGKILL at a random moment, then run again until the fleet converges.

Each trial: a fresh sandbox and copy of examples/ (state in a file, or in a PostgreSQL schema of its own), an
apply killed after a random 0.3 to 2 s (the sandbox answers after 15 ms, 3 vehicles at a time, so the kill
lands in the middle of the calls), the state read back (it must be valid), then apply until the sandbox holds
what the manifests ask (at most 6 runs). Counted: trials that converged, callbacks the sandbox holds more than
once under one label, states that did not read back.

    python tests/perf/kill_trials.py [--backend file|postgres] [--trials 20] [--seed 20261125]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reconciler.errors import StateError
from tests.commands import ALLOW, backend_of, desired_programs, environment, held_programs, labels, run
from tests.files import copy_examples
from tests.postgres import Cluster, start_cluster, use_postgres
from tests.servers import sandbox


def trial(rng: random.Random, number: int, cluster: Cluster | None) -> tuple[bool, int, bool]:
    """(converged, duplicate callbacks, state read back)."""
    with tempfile.TemporaryDirectory() as folder, sandbox(vehicles=40, latency_ms=15, asleep_rate=0.0) as box:
        repo = copy_examples(Path(folder) / "repo")
        extra = {}
        if cluster is not None:
            use_postgres(repo, f"kill_{os.getpid()}_{number}")
            extra["STATE_DSN"] = cluster.dsn
            os.environ["STATE_DSN"] = cluster.dsn
        env = {**os.environ, **environment(box), **extra, "RECONCILER_API_PARALLELISM": "3"}
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", *ALLOW]
        with subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as p:
            time.sleep(rng.uniform(0.3, 2.0))
            p.kill()
            p.wait(timeout=30)
        try:
            backend_of(repo).load()
            valid = True
        except StateError:
            valid = False
        converged = False
        for _ in range(6):
            done = run("apply", "--auto-approve", "--wait=30", *ALLOW, cwd=repo, env={**environment(box), **extra})
            if done.returncode == 0 and held_programs(box) == desired_programs(repo):
                converged = True
                break
        twice = sum(count - 1 for count in Counter(labels(box)).values() if count > 1)
        return converged, twice, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["file", "postgres"], default="postgres")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cluster = start_cluster(durable=True) if args.backend == "postgres" else None
    try:
        results = [trial(rng, number, cluster) for number in range(args.trials)]
    finally:
        if cluster is not None:
            cluster.stop()
    converged = sum(1 for r in results if r[0])
    print(
        f"{args.trials} SIGKILL trials during apply, state on {args.backend}: {converged} converged on rerun, "
        f"{sum(r[1] for r in results)} duplicate callbacks, {sum(1 for r in results if not r[2])} invalid states"
    )


if __name__ == "__main__":
    main()
