"""A dead API, refused credentials or a spent quota stop a run in seconds with exit 1, as a real subprocess
against the sandbox; a signal ends every wait at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.state.file import FileBackend
from tests.commands import ALLOW, SECRETS, apply, backend_of, calls, environment, run
from tests.files import edit
from tests.servers import sandbox

pytestmark = pytest.mark.slow


def all_vehicles_change(repo: Path) -> None:
    edit(repo / "manifests" / "schedules.yaml", '"13:30"', '"13:45"')


def test_an_unreachable_api_stops_apply_with_exit_1_and_keeps_what_was_done(any_repo: Path) -> None:
    repo = any_repo
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        assert apply(repo, box, "--wait=30").returncode == 0
        env = environment(box)
    all_vehicles_change(repo)  # the sandbox is gone: its port refuses connections
    result = run("apply", "--auto-approve", *ALLOW, cwd=repo, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Error: stopped: the Fleet API at {env['RECONCILER_API_URL']} is not usable" in result.stderr
    assert "ConnectError" in result.stderr
    assert "not sent; the next plan holds what is left" in result.stderr
    backend = backend_of(repo)
    assert backend.load() is not None and backend.current_lock() is None  # saved, lock released


def test_a_wrong_password_sends_at_most_parallelism_calls(repo: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        assert apply(repo, box, "--wait=30").returncode == 0
        all_vehicles_change(repo)
        before = box.inspect("stats")["requests"]
        env = {**environment(box), "FLEET_API_PASSWORD": "wrong-password-canary"}
        result = run("apply", "--auto-approve", *ALLOW, cwd=repo, env=env)
        sent = box.inspect("stats")["requests"] - before
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused the credentials (HTTP 401" in result.stderr
    assert "check api.username, api.password and api.client_id" in result.stderr
    assert 1 <= sent <= 8  # api.parallelism of examples/reconciler.yaml
    assert "wrong-password-canary" not in result.stdout + result.stderr


def test_a_spent_daily_quota_stops_at_once_saying_when_it_resets(repo: Path) -> None:
    with sandbox(vehicles=40, daily_limit=3) as box:
        result = apply(repo, box)
        assert 1 <= box.inspect("stats")["rate_limited"] <= 8  # the calls in flight at most, none retried
    assert result.returncode == 1, result.stdout + result.stderr
    assert "asks to wait 86,400 s before the next request (HTTP 429: its quota resets at" in result.stderr
    assert "longer than api.max_retry_wait (60 s)" in result.stderr


def test_the_first_signal_ends_a_long_wait_within_seconds(repo: Path) -> None:
    with sandbox(vehicles=40, daily_limit=3) as box:
        env = {**os.environ, **environment(box), "RECONCILER_API_MAX_RETRY_WAIT": "86400"}
        env = {k: v for k, v in env.items() if k not in ("RECONCILER_CONFIG", "RECONCILER_CHDIR")}
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve"]
        with subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            box.wait(lambda: box.inspect("stats")["rate_limited"] >= 1, timeout=30)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=15)  # a day-long sleep would not end in time
    assert process.returncode == 130, out + err
    assert "Stopping" in err
    assert FileBackend(repo / ".reconciler" / "state.json").current_lock() is None


def test_refresh_and_import_stop_with_exit_1_on_a_dead_api(repo: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        assert apply(repo, box, "--wait=30").returncode == 0
        env = environment(box)
    for command in (("refresh",), ("import", "vehicles"), ("import", "callbacks")):
        result = run(*command, cwd=repo, env=env)
        assert result.returncode == 1, (command, result.stdout + result.stderr)
        assert f"the Fleet API at {env['RECONCILER_API_URL']}" in result.stderr, command
        assert "Traceback" not in result.stderr


def test_apply_wait_stops_when_the_api_goes_away(repo: Path) -> None:
    env = {**os.environ, **SECRETS}
    running = sandbox(vehicles=40, speed=0.05, asleep_rate=0.0)  # outcomes take minutes
    box = running.__enter__()
    try:
        env.update(environment(box))
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", "--wait=600"]
        process = subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        box.wait(lambda: calls(box)["post_remote"] >= 30, timeout=30)
    finally:
        running.__exit__(None, None, None)  # the sandbox stops; the apply goes on waiting without it
    with process:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    assert "is not usable" in err
    state = FileBackend(repo / ".reconciler" / "state.json").load()
    assert state is not None and len(state.actions) == 30  # every remote posted was recorded
