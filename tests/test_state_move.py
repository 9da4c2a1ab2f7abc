"""A state moves between backends with `state pull` and `state push` (Terraform's rules), and `state history`
lists its versions: tried as a user would, with the CLI against the sandbox and a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.state.model import ActionRecord, State
from reconciler.state.postgres import PostgresBackend
from reconciler.state.record import record_callback
from tests.commands import EXAMPLES_FLEET, SECRETS, environment, run
from tests.postgres import use_postgres
from tests.servers import sandbox

pytestmark = pytest.mark.slow


def test_a_file_state_moves_to_postgres_and_back(repo: Path, pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "STATE_DSN": pg_dsn}
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        pulled = run("state", "pull", cwd=repo, env=env)
        assert pulled.returncode == 0
        saved = tmp_path / "state.json"
        saved.write_text(pulled.stdout)
        serial = json.loads(pulled.stdout)["serial"]
        use_postgres(repo, pg_schema)
        assert run("state", "pull", cwd=repo, env=env).returncode == 1  # nothing there yet
        pushed = run("state", "push", str(saved), cwd=repo, env=env)
        assert pushed.returncode == 0, pushed.stderr
        assert f"state serial {serial}." in pushed.stdout
        assert pg_dsn.split("@")[0].split(":")[2] not in pushed.stdout + pushed.stderr  # the password
        again = run("state", "push", str(saved), cwd=repo, env=env)
        assert again.returncode == 0 and "nothing pushed" in again.stdout
        plan = run("plan", "--detailed-exitcode", cwd=repo, env=env)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        history = run("state", "history", cwd=repo, env=env).stdout
        assert f"serial {serial:>6}" in history and "state push by" in history
        back = run("state", "pull", cwd=repo, env=env)
        assert json.loads(back.stdout) == json.loads(pulled.stdout)


def test_push_refuses_another_lineage_an_older_serial_and_another_fleet(repo: Path, tmp_path: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        current = json.loads(run("state", "pull", cwd=repo, env=env).stdout)
        older = tmp_path / "older.json"
        older.write_text(json.dumps({**current, "serial": current["serial"] - 1, "vehicles_index": {}}))
        refused = run("state", "push", str(older), cwd=repo, env=env)
        assert refused.returncode == 1 and "is not newer. Push it with --force" in refused.stderr
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**current, "lineage": "another-lineage", "serial": current["serial"] + 5}))
        assert "it is another state" in run("state", "push", str(other), cwd=repo, env=env).stderr
        forced = run("state", "push", "--force", str(other), cwd=repo, env=env)
        assert forced.returncode == 0, forced.stderr
        assert json.loads(run("state", "pull", cwd=repo, env=env).stdout)["lineage"] == "another-lineage"
        foreign = tmp_path / "foreign.json"
        foreign.write_text(json.dumps({**current, "fleet": "someone-else"}))
        assert (
            "is the state of fleet someone-else"
            in run("state", "push", "--force", str(foreign), cwd=repo, env=env).stderr
        )
        history = json.loads(run("state", "history", "--format", "json", cwd=repo, env=env).stdout)
        assert history["result"] == "ok" and len(history["versions"]) == 2  # a file keeps the state and its backup


def test_two_clones_of_a_config_repo_share_one_state_in_postgres(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    from tests.files import copy_examples

    runner_a, runner_b = copy_examples(tmp_path / "a"), copy_examples(tmp_path / "b")
    for clone in (runner_a, runner_b):
        use_postgres(clone, pg_schema)
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "STATE_DSN": pg_dsn}
        assert run("plan", "--detailed-exitcode", cwd=runner_b, env=env).returncode == 2
        assert run("apply", "--auto-approve", cwd=runner_a, env=env).returncode == 0
        plan = run("plan", "--detailed-exitcode", cwd=runner_b, env=env)
        assert plan.returncode == 0, plan.stdout  # the other runner sees what the first one did
        assert "No changes: the manifests match the recorded state" in plan.stdout
        assert not (runner_b / ".reconciler").exists()  # nothing on the runner's disk


def test_pull_holds_the_outcomes_the_receiver_recorded_since_the_last_writer(
    repo: Path, pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    use_postgres(repo, pg_schema)
    env = {**SECRETS, "STATE_DSN": pg_dsn}
    backend = PostgresBackend(pg_dsn, EXAMPLES_FLEET, pg_schema)
    state = State.new(EXAMPLES_FLEET)
    record_callback(state, "fleet-ops", "cb-ops", {}, {}, "Running")
    state.actions["r1"] = ActionRecord("VF3UHNKF5RL000005", "fleet-ops", "2026-11-25T08:00:00Z")
    backend.save(state, None)
    outcome = {
        "callbackId": "cb-ops",
        "callback": "fleet-ops",
        "remoteActionId": "r1",
        "vin": "VF3UHNKF5RL000005",
        "eventDate": "2026-11-25T08:00:09Z",
        "remoteType": "ThermalPreconditioning",
        "type": "Done",
        "status": "Success",
        "received_at": "2026-11-25T08:00:10Z",
    }
    backend.append_events([outcome])  # as the receiver records it; no writer ran since
    pulled = run("state", "pull", cwd=repo, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr == ""
    assert json.loads(pulled.stdout)["actions"]["r1"][3] == "Success"
    stored = backend.load()
    assert stored is not None and stored.actions["r1"].outcome == "Pending"  # nothing written by a pull
    assert len(backend.read_events()) == 1
    backend.append_journal([{"kind": "intent", "id": "i1", "op": "delete-callback", "name": "fleet-ops"}])
    unfinished = run("state", "pull", cwd=repo, env=env)
    assert unfinished.returncode == 0 and "Warning: the journal of postgres " in unfinished.stderr
    assert "holds 1 entry of a run in progress or one that did not finish" in unfinished.stderr
    backend.close()
