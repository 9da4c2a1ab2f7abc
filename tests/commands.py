"""The CLI as users and CI run it: a real subprocess, given the secrets tests use, pointed at a sandbox.

Also what the manifests want and what the sandbox holds, to compare after an apply.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from reconciler.manifests import load_desired
from reconciler.operations import open_workspace
from reconciler.planner import PlanOptions, make_plan
from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend
from reconciler.state.model import State
from tests.planning import record_success
from tests.servers import Sandbox

SECRETS = {
    "FLEET_API_CLIENT_ID": "client-canary-1",
    "FLEET_API_USERNAME": "user-canary-2",
    "FLEET_API_PASSWORD": "password-canary-3",
    "WEBHOOK_AUTH": "Basic webhook-canary-4",
}
EXAMPLES_FLEET = "0a123bc5d1e873066454b4d9"  # examples/reconciler.yaml
# what an apply that changes every vehicle, or deletes slots, needs past the examples' guards
ALLOW = ("--allow", "max_changed_vehicles", "--allow", "max_deleted_slots")
Programs = dict[str, dict[int, tuple[str, tuple[str, ...]]]]


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGS` with only `env` of the project's variables (none of the caller's own)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FLEET_API_", "WEBHOOK_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def backend_of(repo: Path) -> StateBackend:
    """The state backend a config repo names (a file, or PostgreSQL through $STATE_DSN)."""
    return open_workspace(repo / "reconciler.yaml", {**os.environ, **SECRETS}).backend


def measured(env: dict[str, str]) -> dict[str, str]:
    """`env` for a subprocess given only what it names, plus coverage's variables when the tests are measured:
    the subprocess (and the ones it starts) then count in the coverage report too."""
    return {**{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}, **env}


def environment(box: Sandbox) -> dict[str, str]:
    """The secrets and settings that point the CLI at `box`."""
    return {
        **SECRETS,
        "FLEET_API_CLIENT_ID": box.settings.client_id,
        "FLEET_API_USERNAME": box.settings.username,
        "FLEET_API_PASSWORD": box.settings.password,
        "RECONCILER_API_URL": box.api,
        "RECONCILER_API_RATE_LIMIT": "500",
    }


def apply(repo: Path, box: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return run("apply", "--auto-approve", *args, cwd=repo, env=environment(box))


def record_converged(repo: Path) -> FileBackend:
    """Record the examples as applied and successful, the way apply will, without an API."""
    desired, _ = load_desired([repo / "manifests"], SECRETS)
    state = State.new(EXAMPLES_FLEET)
    record_success(make_plan(desired, None, EXAMPLES_FLEET, PlanOptions(now=datetime.now(UTC))), state, desired)
    backend = FileBackend(repo / ".reconciler" / "state.json")
    backend.save(state, None)
    return backend


def desired_programs(repo: Path) -> Programs:
    """The programs the repo's manifests want, per VIN and slot."""
    desired, _ = load_desired([repo / "manifests"], SECRETS)
    return {
        vin: {a.program.slot: (a.program.start, a.program.days) for a in slots}
        for vin, slots in desired.vehicles.items()
        if slots
    }


def held_programs(box: Sandbox) -> Programs:
    """The programs the sandbox's vehicles hold, in the form of desired_programs."""
    return {
        v["vin"]: {p["slot"]: (p["start"], tuple(p["occurence"]["day"])) for p in v["programs"]}
        for v in box.inspect("vehicles")["vehicles"]
        if v["programs"]
    }


def calls(box: Sandbox) -> Counter[str]:
    """How many calls of each kind the sandbox has answered."""
    return Counter(box.inspect("stats")["calls"])


def labels(box: Sandbox) -> list[str]:
    """Labels of the fleet's callbacks (asked again while a fault knob answers 500 or 429)."""
    with box.client() as client:
        listed = box.wait(
            lambda: (r := client.get(f"{box.fleet_url}/remote/callbacks")).status_code == 200 and r.json()
        )
    return [c["subscribe"]["label"] for c in listed["_embedded"]["callbacks"]]
