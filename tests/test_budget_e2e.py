"""api.daily_budget end to end: the CLI against a sandbox with a small daily quota stops sending at the budget."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.clock import utcnow
from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.metrics import Metrics
from reconciler.operations import open_workspace
from tests.commands import apply, backend_of, calls, environment, run
from tests.servers import Sandbox, sandbox

pytestmark = pytest.mark.slow


def api_calls(box: Sandbox) -> int:
    """Requests the sandbox answered on the Fleet API (not on /_sandbox, which tests use to look)."""
    return sum(count for kind, count in calls(box).items() if not kind.startswith("sandbox_"))


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with sandbox(vehicles=40, daily_limit=40, asleep_rate=0.0, offline_rate=0.0) as running:
        yield running


def spend_half_the_daily_quota(repo: Path) -> None:
    edit = (
        (repo / "reconciler.yaml").read_text().replace("  parallelism: 8\n", "  parallelism: 1\n  daily_budget: 50%\n")
    )
    (repo / "reconciler.yaml").write_text(edit)


def test_apply_stops_at_the_daily_budget_and_says_when_the_quota_frees_up(any_repo: Path, box: Sandbox) -> None:
    repo = any_repo
    spend_half_the_daily_quota(repo)
    stopped = apply(repo, box)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert (
        "api.daily_budget is spent: 20 of the Fleet API's 40 requests a day used, and the budget (50%) allows 20"
        in (stopped.stderr)
    )
    assert re.search(
        r"nothing more is sent until the day's requests age out of the API's 24-hour window: by \S+Z", stopped.stderr
    )
    assert "Traceback" not in stopped.stderr
    assert api_calls(box) == 20  # the budget, not one request more
    # what was done is recorded; the next plan holds the rest, and a run with the budget spent sends nothing
    state = backend_of(repo).load()
    assert state is not None and 0 < len(state.actions) < 30
    left = json.loads(run("plan", "--format", "json", cwd=repo, env=environment(box)).stdout)
    assert left["summary"]["vehicles"] == 30 - len(state.actions)
    again = apply(repo, box)
    assert again.returncode == 1 and "api.daily_budget is spent: 21 of" in again.stderr
    assert api_calls(box) == 21  # one request to learn the quota is spent


def test_serve_waits_for_the_quota_to_free_up_sending_nothing_meanwhile(repo: Path, box: Sandbox) -> None:
    spend_half_the_daily_quota(repo)
    now = [utcnow()]
    env = {**os.environ, **environment(box)}
    workspace = open_workspace(repo / "reconciler.yaml", env)
    controller = Controller(workspace, env, Leadership(workspace.backend, 30), Metrics(), now=lambda: now[0])
    stopped = controller.run_once()
    assert stopped.result == "quota" and "api.daily_budget is spent" in stopped.message
    assert api_calls(box) == 20
    assert controller.quota_until is not None and controller.quota_until > now[0]
    waiting = controller.run_once()  # a run before the quota frees up plans, and sends nothing at all
    assert waiting.result == "quota" and "calls held: the API's daily quota lets requests go again" in waiting.message
    assert api_calls(box) == 20
    now[0] = controller.quota_until + timedelta(seconds=1)  # the day's requests have aged out
    again = controller.run_once()
    assert again.result == "quota", again
    assert api_calls(box) == 21  # it tries again (this sandbox's counter never ages: one request learns it)
