"""apply end to end: the CLI as a subprocess, against the sandbox over real HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.clock import isotime, utcnow
from reconciler.state.backend import LockInfo
from reconciler.state.record import record_outcome
from reconciler.vin import make_vin
from tests.commands import (
    ALLOW,
    SECRETS,
    apply,
    backend_of,
    calls,
    desired_programs,
    environment,
    held_programs,
    labels,
    run,
)
from tests.files import edit
from tests.planning import json_changes, json_notices
from tests.servers import Sandbox, sandbox

pytestmark = pytest.mark.slow


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with sandbox(vehicles=40) as running:
        yield running


def test_apply_examples_converges_and_a_second_apply_writes_nothing(any_repo: Path, box: Sandbox) -> None:
    repo = any_repo
    first = apply(repo, box, "--wait=30")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Apply: 31 calls done, 0 failed, 0 skipped" in first.stdout
    assert "Outcomes: 30 Success." in first.stdout
    assert held_programs(box) == desired_programs(repo)
    assert labels(box) == ["fleet-ops"]
    before = calls(box)
    second = apply(repo, box)
    assert second.returncode == 0
    assert re.fullmatch(r"No changes: the manifests match the recorded state \(serial \d+\)\.\n", second.stdout)
    after = calls(box)
    for write in ("create_callback", "update_callback", "set_callback_status", "post_remote", "delete_callback"):
        assert after[write] == before[write], write
    backend = backend_of(repo)
    state = backend.load()
    assert state is not None and state.slot_count == 84
    assert backend.read_journal() == []
    assert backend.current_lock() is None


def test_one_edited_slot_is_one_post_carrying_only_that_slot(repo: Path, box: Sandbox) -> None:
    assert apply(repo, box, "--wait=30").returncode == 0
    known = {r["remoteActionId"] for r in box.inspect("remotes")["remotes"]}
    edit(repo / "manifests" / "schedules.yaml", "start: PT8H30M", 'start: "08:10"')
    vin = make_vin(5)
    result = apply(repo, box, "--wait=30", "--target", f"vin:{vin}")
    assert result.returncode == 0, result.stdout + result.stderr
    new = [r for r in box.inspect("remotes")["remotes"] if r["remoteActionId"] not in known]
    assert [(r["vin"], r["programs"]) for r in new] == [(vin, [{"actionsType": "Set", "slot": 3, "start": "PT8H10M"}])]
    everyone = apply(repo, box, "--wait=30", "--allow", "max_changed_vehicles")  # 23 of 30 vehicles change
    assert everyone.returncode == 0, everyone.stderr
    rest = [r for r in box.inspect("remotes")["remotes"] if r["remoteActionId"] not in known]
    assert len(rest) == 24  # one per vehicle of depot-north, each with slot 3 only
    assert {json.dumps(r["programs"]) for r in rest} == {
        json.dumps([{"actionsType": "Set", "slot": 3, "start": "PT8H10M"}])
    }
    assert held_programs(box) == desired_programs(repo)


def test_a_removed_slot_is_a_delete(repo: Path, box: Sandbox) -> None:
    assert apply(repo, box, "--wait=30").returncode == 0
    known = {r["remoteActionId"] for r in box.inspect("remotes")["remotes"]}
    edit(
        repo / "manifests" / "schedules.yaml",
        '  - slot: 2\n    start: "13:30"\n    days: [Mon, Tue, Wed, Thu, Fri]\n',
        "",
    )
    result = apply(repo, box, "--wait=30", "--allow", "max_changed_vehicles", "--allow", "max_deleted_slots")
    assert result.returncode == 0, result.stdout + result.stderr
    new = [r for r in box.inspect("remotes")["remotes"] if r["remoteActionId"] not in known]
    assert len(new) == 30
    assert {json.dumps(r["programs"]) for r in new} == {
        json.dumps([{"actionsType": "Delete", "slot": 2, "start": "PT13H30M"}])  # Delete carries the recorded program
    }
    assert held_programs(box) == desired_programs(repo)
    assert all(2 not in slots for slots in held_programs(box).values())


def test_a_changed_callback_setting_is_one_put(repo: Path, box: Sandbox) -> None:
    assert apply(repo, box).returncode == 0
    before = calls(box)
    edit(repo / "manifests" / "callbacks.yaml", "retryDelay: 120", "retryDelay: 60")
    result = apply(repo, box)
    assert result.returncode == 0, result.stdout + result.stderr
    delta = calls(box) - before
    assert delta["update_callback"] == 1
    assert delta["create_callback"] == delta["post_remote"] == 0
    with box.client() as client:
        listed = client.get(f"{box.fleet_url}/remote/callbacks").json()["_embedded"]["callbacks"]
    assert listed[0]["subscribe"]["retryPolicy"]["retryDelay"] == 60
    assert listed[0]["subscribe"]["callback"]["webhook"]["attributes"][0]["value"] == SECRETS["WEBHOOK_AUTH"]


def test_a_stale_saved_plan_is_refused_with_no_writes(repo: Path, box: Sandbox) -> None:
    env = environment(box)
    assert run("plan", "--out", "plan.json", cwd=repo, env=env).returncode == 0
    fresh = run("apply", "--auto-approve", "plan.json", cwd=repo, env=env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    edit(repo / "manifests" / "callbacks.yaml", "retryDelay: 120", "retryDelay: 90")
    assert run("plan", "--out", "second.json", cwd=repo, env=env).returncode == 0
    assert run("state", "rm", f"vehicle.{make_vin(1)}.slot.1", cwd=repo, env=env).returncode == 0
    before = calls(box)
    stale = run("apply", "--auto-approve", "second.json", cwd=repo, env=env)
    assert stale.returncode == 1
    assert "the saved plan second.json is stale: the state moved from serial" in stale.stderr
    assert "nothing was applied" in stale.stderr
    delta = calls(box) - before
    assert sum(delta[k] for k in ("create_callback", "update_callback", "post_remote", "delete_callback")) == 0


def record_outcomes(
    repo: Path, outcome: str, cause: str | None = None, count: int | None = None, backoff_over: bool = False
) -> int:
    """What a receiver does meanwhile: record outcomes of remotes still pending (the state's serial moves).
    `backoff_over`: the holds the failures set have ended, as if the failures were a while ago."""
    backend = backend_of(repo)
    state = backend.load()
    assert state is not None
    pending = [rid for rid, action in sorted(state.actions.items()) if action.outcome == "Pending"][:count]
    for rid in pending:
        record_outcome(state, rid, outcome, status=outcome, cause=cause, at=isotime(utcnow()))
    if backoff_over:
        ended = isotime(utcnow() - timedelta(seconds=1))
        state.holds = {vin: dataclasses.replace(hold, until=ended) for vin, hold in state.holds.items()}
    return backend.save(state, state.serial)


def test_a_saved_plan_applies_after_outcomes_are_recorded_unless_they_change_it(repo: Path, box: Sandbox) -> None:
    env = environment(box)
    assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0  # outcomes not waited for
    edit(repo / "manifests" / "callbacks.yaml", "retryDelay: 120", "retryDelay: 90")
    assert run("plan", "--out", "plan.json", cwd=repo, env=env).returncode == 0
    # a failure whose backoff (5 minutes after a first failure) is over: now a retry to plan
    moved = record_outcomes(repo, "Failed", "VehicleConnectionTimeout", count=1, backoff_over=True)
    before = calls(box)
    refused = run("apply", "--auto-approve", "plan.json", cwd=repo, env=env)
    assert refused.returncode == 1
    assert (
        f"the saved plan plan.json is stale: the state moved from serial {moved - 1} (when the plan was made) to "
        f"{moved}, and a plan made now differs from plan.json. Make a new plan; nothing was applied"
    ) in refused.stderr
    assert run("plan", "--out", "again.json", cwd=repo, env=env).returncode == 0
    assert record_outcomes(repo, "Success") == moved + 1  # the other 29: nothing to do for them either way
    applied = run("apply", "--auto-approve", "again.json", cwd=repo, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.startswith(
        f"The state moved from serial {moved} (when the plan was made) to {moved + 1}, but a plan made now makes "
        "exactly the changes of again.json.\n"
    )
    delta = calls(box) - before
    assert (delta["update_callback"], delta["post_remote"]) == (1, 1)  # the callback, and the retried vehicle


def test_a_vin_not_in_the_fleet_is_a_notice_not_a_failure(repo: Path, box: Sandbox) -> None:
    stranger = make_vin(900)
    edit(repo / "manifests" / "groups.yaml", f"  - {make_vin(30)}\n", f"  - {make_vin(30)}\n  - {stranger}\n")
    result = apply(repo, box, "--wait=30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Apply: 31 calls done, 0 failed" in result.stdout
    assert f"Not in the fleet: {stranger}: not in fleet {box.settings.fleet}'s vehicle list" in result.stdout
    left = json.loads(run("plan", "--format", "json", cwd=repo, env=environment(box)).stdout)
    assert json_changes(left) == []
    assert [(n["address"], n["kind"]) for n in json_notices(left)] == [(f"vehicle.{stranger}", "not-in-fleet")]


def test_guards_block_apply_unless_allowed(repo: Path, box: Sandbox) -> None:
    assert apply(repo, box, "--wait=30").returncode == 0
    edit(repo / "reconciler.yaml", "max_deleted_slots: 25%", "max_deleted_slots: 10%")
    edit(
        repo / "manifests" / "schedules.yaml",
        '  - slot: 2\n    start: "13:30"\n    days: [Mon, Tue, Wed, Thu, Fri]\n',
        "",
    )
    before = calls(box)
    blocked = apply(repo, box)
    assert blocked.returncode == 4
    assert "max_deleted_slots: 30 slots to delete > 10% (at most 8 of 84)" in blocked.stderr
    assert blocked.stderr.startswith("Error: blocked by guard: ")
    assert (calls(box) - before)["post_remote"] == 0
    allowed = apply(repo, box, "--allow", "max_deleted_slots", "--allow", "max_changed_vehicles")
    assert allowed.returncode == 0, allowed.stderr


def test_a_second_writer_exits_5(any_repo: Path, box: Sandbox) -> None:
    repo = any_repo
    backend = backend_of(repo)
    holder = LockInfo.for_this_process("refresh")
    backend.acquire_lock(LockInfo(holder.id, "ops", "other-host", 1, "refresh", holder.started, holder.expires))
    result = apply(repo, box)
    assert result.returncode == 5
    assert "running 'refresh'" in result.stderr


def test_apply_without_a_terminal_needs_auto_approve(repo: Path, box: Sandbox) -> None:
    result = run("apply", cwd=repo, env=environment(box))
    assert result.returncode == 64
    assert "apply needs --auto-approve when it cannot ask" in result.stderr


def test_missing_api_credentials_are_named(repo: Path, box: Sandbox) -> None:
    env = environment(box)
    del env["FLEET_API_PASSWORD"]
    result = run("apply", "--auto-approve", cwd=repo, env=env)
    assert result.returncode == 7
    assert result.stderr.strip().endswith(
        "reconciler.yaml:9:13: api.password: environment variable FLEET_API_PASSWORD not set"
    )


def converge(repo: Path, box: Sandbox, attempts: int = 8, *args: str) -> list[subprocess.CompletedProcess[str]]:
    runs = []
    for _ in range(attempts):
        result = apply(repo, box, "--wait=30", *args)
        runs.append(result)
        if result.returncode == 0 and held_programs(box) == desired_programs(repo):
            return runs
    raise AssertionError("no convergence: " + "\n".join(r.stdout[-400:] + r.stderr[-400:] for r in runs))


def test_converges_through_errors_rate_limits_and_dropped_connections(any_repo: Path) -> None:
    repo = any_repo
    with sandbox(vehicles=40, error_rate=0.2, drop_rate=0.05, rate_limit=40.0) as box:
        env_rate = {"RECONCILER_API_RATE_LIMIT": "60"}  # faster than the sandbox allows: 429s happen
        os.environ.update(env_rate)
        try:
            runs = converge(repo, box)
        finally:
            for key in env_rate:
                os.environ.pop(key, None)
        stats = box.inspect("stats")
        assert stats["errors_injected"] > 0 and stats["dropped"] >= 0
        assert labels(box) == ["fleet-ops"]  # never two callbacks with one label
        assert held_programs(box) == desired_programs(repo)
        assert runs[-1].returncode == 0


def test_sigterm_stops_cleanly_and_the_next_run_finishes(any_repo: Path) -> None:
    repo = any_repo
    with sandbox(vehicles=40, latency_ms=150) as box:
        env = {**os.environ, **environment(box)}
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", "--parallelism", "2"]
        with subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            box.wait(lambda: calls(box)["post_remote"] >= 4, timeout=30)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
        assert process.returncode == 130, out + err
        assert "Stopping: finishing the calls in flight" in err
        assert "skipped" in out
        backend = backend_of(repo)
        state = backend.load()
        assert state is not None and 0 < len(state.slots) < 30
        assert backend.current_lock() is None
        assert backend.read_journal() == []
        converge(repo, box)
        assert labels(box) == ["fleet-ops"]


def test_killed_at_random_moments_then_rerun_converges(any_repo: Path) -> None:
    repo = any_repo
    rng = random.Random(20261125)
    with sandbox(vehicles=40, latency_ms=15) as box:
        env = {**os.environ, **environment(box), "RECONCILER_API_PARALLELISM": "3"}
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", *ALLOW]
        backend = backend_of(repo)
        for round_ in range(12):
            if round_ % 4 == 3:  # now and then a change, so later runs have work to interrupt
                edit(
                    repo / "manifests" / "schedules.yaml",
                    *(("06:45", "06:50") if round_ % 8 == 3 else ("06:50", "06:45")),
                )
            with subprocess.Popen(
                command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ) as process:
                time.sleep(rng.uniform(0.3, 2.0))
                process.kill()
                process.wait(timeout=30)
            backend.load()  # valid (or absent) whatever the moment of the kill
        converge(repo, box, 8, *ALLOW)
        assert labels(box) == ["fleet-ops"]
        state = backend.load()
        assert state is not None and state.slot_count == 84
        assert held_programs(box) == desired_programs(repo)
