"""A CI pipeline rehearsed end to end on this machine, as a config repository's pipelines run it.

A bare git repository plays the code host. Every job is a fresh clone (a CI runner keeps nothing between jobs);
the state lives in PostgreSQL; a receiver deployed on its own records outcomes into the same database; the
sandbox plays the Fleet API.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from reconciler.operations import open_workspace
from reconciler.vin import make_vin
from tests.commands import SECRETS, desired_programs, environment, held_programs, run
from tests.files import copy_examples, edit
from tests.planning import json_changes, json_notices
from tests.postgres import Cluster, use_postgres
from tests.servers import sandbox
from tests.serving import git
from tests.webhooks import clean_environment, done_events, serving, wait_for

pytestmark = pytest.mark.slow


class Host:
    """The code host: a bare repository, and a fresh clone for each job."""

    def __init__(self, root: Path, seed: Path) -> None:
        self.root, self.bare = root, root / "config.git"
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(seed, "init", "--quiet", "--initial-branch=main")
        self.push(seed, "The fleet's first manifests")
        self.jobs = 0

    def push(self, clone: Path, message: str) -> None:
        """Commit everything in `clone` and push it to main (a pull request merged)."""
        git(clone, "add", "--all")
        git(clone, "commit", "--quiet", "-m", message)
        if not git(clone, "remote").strip():
            git(clone, "remote", "add", "origin", str(self.bare))
        git(clone, "push", "--quiet", "origin", "main")

    def job(self, name: str) -> Path:
        """A fresh clone of main, as a CI runner checks it out."""
        self.jobs += 1
        clone = self.root / f"{self.jobs:02d}-{name}"
        git(self.root, "clone", "--quiet", str(self.bare), str(clone))
        return clone


def join(clone: Path, numbers: Iterable[int]) -> None:
    """Vehicles of the sandbox's fleet join a group of the example manifests."""
    last = f"  - {make_vin(30)}\n"
    edit(clone / "manifests" / "groups.yaml", last, last + "".join(f"  - {make_vin(n)}\n" for n in numbers))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_plan_on_pull_request_apply_on_merge(
    tmp_path: Path, pg_cluster: Cluster, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DSN", pg_cluster.dsn)
    seed = copy_examples(tmp_path / "seed")
    use_postgres(seed, pg_schema)
    (seed / ".gitignore").write_text(".reconciler/\n")
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "STATE_DSN": pg_cluster.dsn}
        # the receiver, deployed on its own beside the pipelines, on the same database
        with serving(seed, env) as receiver:
            edit(seed / "manifests" / "callbacks.yaml", "http://127.0.0.1:8081", receiver.url)
            host = Host(tmp_path, seed)

            # a pull request: validate, plan to a file, render it for the comment and the merge-request widget
            pr = host.job("pull-request")
            assert run("validate", "--format", "github", cwd=pr, env=env).returncode == 0
            planned = run("plan", "--out", "plan.json", "--detailed-exitcode", cwd=pr, env=env)
            assert planned.returncode == 2, planned.stdout + planned.stderr
            comment = run("show", "plan.json", "--format", "markdown", cwd=pr, env=env)
            assert comment.returncode == 0 and "30 vehicles change, in 30 calls." in comment.stdout
            # the marker a pipeline finds its one comment by, naming the fleet of the config repo
            fleet = open_workspace(pr / "reconciler.yaml", {**SECRETS, **env}).fleet
            assert comment.stdout.splitlines()[0] == f"<!-- reconciler-plan fleet={fleet} -->"
            widget = run("show", "plan.json", "--format", "gitlab", cwd=pr, env=env)
            actions = Counter(row["action"] for row in json_changes(json.loads((pr / "plan.json").read_text())))
            assert json.loads(widget.stdout) == {"create": actions["create"], "update": 0, "delete": 0}
            assert actions["create"] > 30  # every callback and every slot of the 30 vehicles is new
            assert SECRETS["WEBHOOK_AUTH"] not in comment.stdout + (pr / "plan.json").read_text()

            # merged: the merge job applies; the receiver records the outcomes in the shared database
            merge = host.job("merge")
            applied = run("apply", "--auto-approve", cwd=merge, env=env)
            assert applied.returncode == 0, applied.stdout + applied.stderr
            backend = open_workspace(merge / "reconciler.yaml", {**SECRETS, **env}).backend
            wait_for(lambda: len(done_events(backend)) == 30, timeout=60)

            # the next pull request's jobs see those outcomes: nothing in flight, nothing to do
            pr = host.job("pull-request")
            status = json.loads(run("status", "--format", "json", cwd=pr, env=env).stdout)
            assert (status["vehicles"], status["converged"], status["in_flight"]) == (30, 30, 0)
            plan = json.loads(run("plan", "--format", "json", cwd=pr, env=env).stdout)
            assert json_changes(plan) == [] and json_notices(plan) == []

            # two merge jobs at once: the second finds the lock (exit 5) and succeeds when re-run
            change = host.job("edit")
            join(change, range(31, 39))
            host.push(change, "Eight vehicles join the fleet's schedules")
            first, second = host.job("merge"), host.job("merge")
            slow = {**env, "RECONCILER_API_RATE_LIMIT": "2"}
            started = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "apply", "--auto-approve"],
                cwd=first,
                env=clean_environment(slow),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_for(lambda: backend.current_lock() is not None or started.poll() is not None, timeout=30)
                assert started.poll() is None, started.communicate()
                locked = run("apply", "--auto-approve", cwd=second, env=env)
                assert locked.returncode == 5, locked.stdout + locked.stderr
                assert "is locked: held by" in locked.stderr
            finally:
                out, err = started.communicate(timeout=120)
            assert started.returncode == 0, out + err
            again = run("apply", "--auto-approve", cwd=second, env=env)
            assert again.returncode == 0, again.stdout + again.stderr

            # a saved plan gone stale: the manifests moved on before it was applied; the recipe converges
            proposal = host.job("pull-request")
            join(proposal, [39])
            assert run("plan", "--out", "saved.json", cwd=proposal, env=env).returncode == 0
            other = host.job("edit")
            edit(other / "manifests" / "groups.yaml", f"  - {make_vin(38)}\n", "")
            host.push(other, "Another change merged first: a vehicle leaves")
            merge = host.job("merge")
            (merge / "saved.json").write_bytes((proposal / "saved.json").read_bytes())  # the plan artifact
            stale = run("apply", "--auto-approve", "saved.json", cwd=merge, env=env)
            assert stale.returncode == 1
            assert "is stale: the manifests changed since the plan was made" in stale.stderr
            assert run("plan", "--out", "fresh.json", cwd=merge, env=env).returncode == 0  # re-plan, then apply
            fresh = run("apply", "--auto-approve", "fresh.json", "--wait=60", cwd=merge, env=env)
            assert fresh.returncode == 0, fresh.stdout + fresh.stderr
            assert held_programs(box) == desired_programs(merge)

            # the API down during a merge job: it stops within seconds, with exit 1
            outage = host.job("edit")
            join(outage, [40])
            host.push(outage, "A vehicle joins while the API is down")
            merge = host.job("merge")
            dead = {**env, "RECONCILER_API_URL": f"http://127.0.0.1:{free_port()}/connectedcar/v3"}
            began = time.monotonic()
            down = run("apply", "--auto-approve", cwd=merge, env=dead)
            took = time.monotonic() - began
            assert down.returncode == 1, down.stdout + down.stderr
            assert took < 15, f"apply against a dead API took {took:.1f} s"
            assert "Traceback" not in down.stderr
            assert receiver.stop() == 0
