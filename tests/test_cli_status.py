"""show --state and status as users read them: the same counts, one program format, no stale times, no colour
on a dumb terminal, and JSON even when the input is invalid."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.state.backend import LockInfo
from reconciler.state.model import ActionRecord
from tests.commands import SECRETS, environment, record_converged, run
from tests.files import REPO
from tests.webhooks import done_events, receiving, wait_for


@pytest.mark.slow
def test_show_state_and_status_count_the_same_outcomes_received_as_events(repo: Path) -> None:
    with receiving(repo) as (_, box, _root, backend):
        env = environment(box)
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        wait_for(lambda: len(done_events(backend)) == 30)
        saved = backend.load()
        assert saved is not None
        assert {a.outcome for a in saved.actions.values()} == {"Pending"}  # the outcomes are only events so far
        status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
        shown = json.loads(run("show", "--state", "--format", "json", cwd=repo, env=env).stdout)
        status_text = run("status", cwd=repo, env=env).stdout
        shown_text = run("show", "--state", cwd=repo, env=env).stdout
    assert (status["vehicles"], status["converged"], status["in_flight"]) == (30, 30, 0)
    assert shown["summary"]["outcomes"] == {"Success": 30}
    assert shown["summary"]["vehicles"] == status["vehicles"]
    assert status_text.startswith("Vehicles: 30: 30 converged, 0 in flight, 0 to change (0 drifted), 0 failed.\n")
    assert "Remote actions: 30 Success\n" in shown_text
    assert "Nothing in flight." in status_text
    assert backend.load().actions == saved.actions  # type: ignore[union-attr]  # readers folded in memory only


def test_show_state_writes_programs_as_the_plan_does(repo: Path) -> None:
    record_converged(repo)
    text = run("show", "--state", cwd=repo).stdout
    assert "Callbacks: 1\n  callback.fleet-ops: id id-0, Running\n" in text
    assert "Vehicles: 30 with 84 slots; 0 ids known\n" in text
    assert (
        "Programs:\n"
        "  slot 1: 06:45 Mon-Fri on 30 vehicles\n"
        "  slot 2: 13:30 Mon-Fri on 30 vehicles\n"
        "  slot 3: 08:30 Sat,Sun on 24 vehicles\n"
    ) in text
    assert "PT" not in text
    assert "Remote actions: 30 Success\n" in text


def test_show_state_counts_of_one_are_singular(repo: Path) -> None:
    backend = record_converged(repo)
    state = backend.load()
    assert state is not None
    vin = "VF3UHNKF5RL000005"
    state.slots = {vin: {1: state.slots[vin][1]}}
    state.vehicles_index = {vin: "vid-1"}
    state.actions = {state.slots[vin][1].action: state.actions[state.slots[vin][1].action]}  # type: ignore[index]
    backend.save(state, state.serial)
    text = run("show", "--state", cwd=repo).stdout
    assert "Vehicles: 1 with 1 slot; 1 id known\n" in text
    assert "  slot 1: 06:45 Mon-Fri on 1 vehicle\n" in text


def test_show_state_markdown_is_a_summary_table(repo: Path) -> None:
    record_converged(repo)
    result = run("show", "--state", "--format", "markdown", cwd=repo)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "### reconciler state for fleet `0a123bc5d1e873066454b4d9`"
    assert "| | count |" in lines
    for row in ("| callbacks | 1 |", "| vehicles | 30 |", "| slots | 84 |", "| remote actions Success | 30 |"):
        assert row in lines
    assert "| 1 | 06:45 Mon-Fri | 30 |" in lines
    assert lines[-1] == "Lock: none"
    empty = run("show", "--state", "--format", "markdown", cwd=repo.parent / "repo", env={"RECONCILER_STATE_PATH": "x"})
    assert "No state at `" in empty.stdout


def test_show_state_json_names_the_lock_a_run_holds(repo: Path) -> None:
    backend = record_converged(repo)
    info = LockInfo.for_this_process("apply")
    backend.acquire_lock(info)
    result = run("show", "--state", "--format", "json", cwd=repo)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["lock"] == json.loads(info.to_json())
    assert shown["summary"]["vehicles"] == 30
    backend.force_unlock(info.id)
    assert json.loads(run("show", "--state", "--format", "json", cwd=repo).stdout)["lock"] is None


def test_status_names_no_oldest_pending_when_nothing_is_in_flight(repo: Path) -> None:
    """A remote replaced by a later one can stay Pending in the state forever; it is not waited for."""
    backend = record_converged(repo)
    state = backend.load()
    assert state is not None
    state.actions["replaced"] = ActionRecord("VF3UHNKF5RL000005", "fleet-ops", "2020-01-01T00:00:00Z")
    backend.save(state, state.serial)
    report = json.loads(run("status", "--format", "json", cwd=repo, env=SECRETS).stdout)
    assert (report["in_flight"], report["oldest_pending"]) == (0, None)
    text = run("status", cwd=repo, env=SECRETS).stdout
    assert "2020-01-01" not in text
    assert "Nothing in flight.\n" in text


def test_status_names_the_oldest_remote_in_flight(repo: Path) -> None:
    backend = record_converged(repo)
    state = backend.load()
    assert state is not None
    vin = "VF3UHNKF5RL000005"
    action = state.actions[state.slots[vin][1].action]  # type: ignore[index]
    action.outcome, action.posted_at = "Pending", "2999-01-01T00:00:00Z"  # posted "now" for the pending timeout
    backend.save(state, state.serial)
    report = json.loads(run("status", "--format", "json", cwd=repo, env=SECRETS).stdout)
    assert (report["in_flight"], report["oldest_pending"]) == (1, "2999-01-01T00:00:00Z")
    assert "Oldest remote in flight: posted 2999-01-01T00:00:00Z\n" in run("status", cwd=repo, env=SECRETS).stdout


@pytest.mark.parametrize(
    "args",
    [["plan", "--format", "json"], ["status", "--format", "json"]],  # show --state reads no manifests
)
def test_invalid_manifests_answer_json_on_stdout(repo: Path, args: list[str]) -> None:
    (repo / "manifests" / "bad.yaml").write_text("kind: VehicleGroup\nname: bad\nvins: [NOTAVIN]\n")
    result = run(*args, cwd=repo, env=SECRETS)
    assert result.returncode == 7
    report = json.loads(result.stdout)
    assert report["result"] == "invalid"
    assert report["exit_code"] == 7
    assert report["diagnostics"] == [
        {
            "file": "manifests/bad.yaml",
            "line": 3,
            "column": 8,
            "severity": "error",
            "rule": "vin-format",
            "message": "malformed VIN 'NOTAVIN': a VIN is 17 letters and digits, without I, O or Q",
        }
    ]
    assert "manifests/bad.yaml:3:8: malformed VIN 'NOTAVIN'" in result.stderr  # people read stderr


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--format", "json"],
        ["status", "--format", "json"],
        ["show", "--state", "--format", "json"],
        ["validate", "--format", "json"],
    ],
)
def test_invalid_settings_answer_json_on_stdout(repo: Path, args: list[str]) -> None:
    config = repo / "reconciler.yaml"
    config.write_text(config.read_text().replace("parallelism: 8", "parallelism: many"))
    result = run(*args, cwd=repo, env=SECRETS)
    assert result.returncode == 7
    report = json.loads(result.stdout)
    assert report["result"] == "invalid"
    assert [(d["file"], d["line"], d["rule"]) for d in report["diagnostics"]] == [("reconciler.yaml", 11, "type")]


def test_other_errors_answer_json_too(repo: Path) -> None:
    result = run("plan", "--format", "json", "--target", "vin:VF3UHNKF5RL999999", cwd=repo, env=SECRETS)
    assert result.returncode == 64
    report = json.loads(result.stdout)
    assert (report["result"], report["exit_code"], report["diagnostics"]) == ("usage", 64, [])
    assert report["message"].startswith("unknown vehicle 'VF3UHNKF5RL999999'")


def test_selectors_for_vehicles_nothing_knows_are_usage_errors(repo: Path) -> None:
    for option in ("--target", "--exclude"):
        result = run("plan", option, "vin:VF3UHNKF5RL999999", cwd=repo, env=SECRETS)
        assert result.returncode == 64
        assert result.stderr == (
            "Error: unknown vehicle 'VF3UHNKF5RL999999' in selector vin:VF3UHNKF5RL999999: no schedule selects it "
            "and the state records nothing for it\n"
        )
    assert run("plan", "--target", "vin:vf3uhnkf5rl000005", cwd=repo, env=SECRETS).returncode == 0


def _on_a_terminal(args: list[str], cwd: Path, term: str, extra: dict[str, str] | None = None) -> str:
    """What a command writes to a terminal (a pseudo-terminal, so it sees isatty() true)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "NO_COLOR"))}
    environ.update({**SECRETS, "TERM": term, "PYTHONPATH": str(REPO), **(extra or {})})
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, env=environ, stdout=follower, stderr=follower
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode()


def test_no_colour_on_a_dumb_terminal(repo: Path) -> None:
    assert "\x1b[" in _on_a_terminal(["plan"], repo, "xterm-256color")  # a capable terminal gets colour
    dumb = _on_a_terminal(["plan"], repo, "dumb")
    assert "Plan: 1 callback to create" in dumb
    assert "\x1b" not in dumb


@pytest.mark.slow
def test_apply_progress_on_a_dumb_terminal_has_no_terminal_controls(repo: Path) -> None:
    from tests.servers import sandbox

    with sandbox(vehicles=40) as box:
        dumb = _on_a_terminal(["apply", "--auto-approve"], repo, "dumb", environment(box))
    assert "Apply: 31 calls done, 0 failed" in dumb
    assert "\x1b" not in dumb


def test_status_counts_of_one_are_singular(repo: Path) -> None:
    backend = record_converged(repo)
    state = backend.load()
    assert state is not None
    vin = "VF3UHNKF0RL000025"  # depot-south: slots 1 and 2, carried by one remote
    record = state.slots[vin][1]
    state.slots[vin][1] = record._replace(action="refused")
    state.actions["refused"] = ActionRecord(vin, "fleet-ops", "2026-01-01T00:00:00Z", "Failed", cause="MissingRights")
    backend.save(state, state.serial)
    text = run("status", cwd=repo, env=SECRETS).stdout
    assert "Vehicles: 30: 29 converged, 0 in flight, 0 to change (0 drifted), 1 failed.\n" in text
    assert "  failed MissingRights: 1 slot\n" in text
