"""plan, show and state as CI runs them: real subprocesses on a copy of examples/."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.state.backend import LockInfo
from tests.commands import SECRETS, record_converged, run

FLEET = "0a123bc5d1e873066454b4d9"


def test_first_plan_creates_everything_and_detailed_exitcode(repo: Path) -> None:
    plain = run("plan", cwd=repo, env=SECRETS)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().splitlines()[-1] == (
        "Plan: 1 callback to create, 0 to update, 0 to delete; 30 vehicles to update (84 slots set, 0 deleted) in 30 calls."
    )
    detailed = run("plan", "--detailed-exitcode", "--format", "json", cwd=repo, env=SECRETS)
    assert detailed.returncode == 2
    assert json.loads(detailed.stdout)["result"] == "changes"
    assert not (repo / ".reconciler").exists()  # plan writes nothing and takes no lock


def test_converged_fleet_has_no_changes(repo: Path) -> None:
    record_converged(repo)
    result = run("plan", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "No changes: the manifests match the recorded state (serial 1).\n"


def test_one_edited_slot_is_one_call(repo: Path) -> None:
    record_converged(repo)
    schedules = repo / "manifests" / "schedules.yaml"
    schedules.write_text(schedules.read_text().replace("start: PT8H30M", 'start: "08:15"'))
    result = run("plan", "--format", "json", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert result.returncode == 2
    plan = json.loads(result.stdout)
    assert plan["summary"]["slots_set"] == 24
    # one group: the 24 vehicles of the schedule, each getting one call carrying the one edited slot
    [group] = plan["groups"]
    assert group["vehicles"] == len(group["vins"]) == 24
    assert [(c["slot"], c["diffs"][0]["after"]) for c in group["slots"]] == [(3, "PT8H15M")]
    assert [(call["callback"], len(call["programs"])) for call in group["calls"]] == [("fleet-ops", 1)]
    text = run("plan", cwd=repo, env=SECRETS).stdout
    assert "~ slot 3: start 08:30 -> 08:15" in text
    assert "24 vehicles, the same change each (24 calls via fleet-ops)" in text


def test_saved_plan_is_shown_and_tampering_is_refused(repo: Path) -> None:
    assert run("plan", "--out", "plan.json", cwd=repo, env=SECRETS).returncode == 0
    shown = run("show", "plan.json", cwd=repo)
    assert shown.returncode == 0
    assert "Plan: 1 callback to create" in shown.stdout
    markdown = run("show", "plan.json", "--format", "markdown", cwd=repo)
    assert markdown.stdout.startswith(
        f"<!-- reconciler-plan fleet={FLEET} -->\n### reconciler plan for fleet `{FLEET}`"
    )
    data = json.loads((repo / "plan.json").read_text())
    data["groups"][0]["slots"][0]["after"]["start"] = "PT3H0M"
    (repo / "plan.json").write_text(json.dumps(data))
    tampered = run("show", "plan.json", cwd=repo)
    assert tampered.returncode == 1
    assert (
        tampered.stderr
        == "Error: plan.json was changed after it was made (its digest does not match); make a new plan\n"
    )
    assert run("show", cwd=repo).returncode == 64
    assert run("show", "nope.json", cwd=repo).stderr == "Error: nope.json: no such plan file\n"


def test_secrets_never_reach_outputs_plan_files_or_state(repo: Path) -> None:
    canary = "Basic canary-5e6f7a"
    env = {**SECRETS, "WEBHOOK_AUTH": canary}
    backend = record_converged(repo)
    outputs = [
        run("plan", *args, cwd=repo, env=env)
        for args in (["--out", "p.json"], ["--format", "json"], ["--format", "markdown"])
    ]
    outputs.append(run("show", "--state", "--format", "json", cwd=repo, env=env))
    outputs.append(run("validate", "--format", "json", cwd=repo, env=env))
    for output in outputs:
        assert output.returncode == 0, output.stderr
        assert canary not in output.stdout + output.stderr
    for path in (repo / "p.json", backend.path):
        assert canary not in path.read_text()
        assert "canary" not in path.read_text()


def test_rotated_webhook_secret_shows_as_sensitive_changed(repo: Path) -> None:
    record_converged(repo)
    result = run("plan", cwd=repo, env={**SECRETS, "WEBHOOK_AUTH": "Basic rotated"})
    assert "~ webhook.headers.Authorization: (sensitive, changed)" in result.stdout
    assert "rotated" not in result.stdout


def test_targeted_plan_says_what_it_leaves_out(repo: Path) -> None:
    result = run("plan", "--target", "group:depot-south", "--exclude", "vin:W0VVP2FH9RK000029", cwd=repo, env=SECRETS)
    assert (
        "Targeted plan: 74 other changes left out (targets: group:depot-south; excludes: vin:W0VVP2FH9RK000029)."
        in result.stdout
    )
    assert run("plan", "--target", "group:nowhere", cwd=repo, env=SECRETS).returncode == 64
    assert run("plan", "--target", "fleet:x", cwd=repo, env=SECRETS).returncode == 64


def test_plan_needs_webhook_secrets_and_says_where(repo: Path) -> None:
    result = run("plan", cwd=repo)
    assert result.returncode == 7
    assert result.stderr == (
        "manifests/callbacks.yaml:10:20: webhook.headers.Authorization: environment variable WEBHOOK_AUTH not set\n"
    )


def test_invalid_manifests_stop_plan_with_exit_7(repo: Path) -> None:
    (repo / "manifests" / "bad.yaml").write_text("kind: VehicleGroup\nname: bad\nvins: [NOTAVIN]\n")
    result = run("plan", cwd=repo, env=SECRETS)
    assert result.returncode == 7
    assert "manifests/bad.yaml:3:8: malformed VIN 'NOTAVIN'" in result.stderr


def test_state_belonging_to_another_fleet_is_refused(repo: Path) -> None:
    record_converged(repo)
    result = run("plan", cwd=repo, env={**SECRETS, "RECONCILER_FLEET": "other"})
    assert result.returncode == 1
    assert "belongs to fleet 0a123bc5d1e873066454b4d9, not other (fleet set at $RECONCILER_FLEET)" in result.stderr


def test_state_list_show_rm(repo: Path) -> None:
    backend = record_converged(repo)
    listed = run("state", "list", cwd=repo).stdout.splitlines()
    assert listed[0] == "callback.fleet-ops"
    assert len(listed) == 1 + 84
    vin = "VF3UHNKF5RL000005"
    shown = json.loads(run("state", "show", f"vehicle.{vin}.slot.3", cwd=repo).stdout)
    assert shown["slots"]["3"]["program"] == "PT8H30M/Sat,Sun/Daily/on"
    assert shown["slots"]["3"]["action"]["outcome"] == "Success"
    assert shown["result"] == "ok"
    removed = run("state", "rm", f"vehicle.{vin}", "callback.fleet-ops", cwd=repo)
    assert removed.returncode == 0
    assert removed.stdout == "Forgot 4 items; state serial 2.\n"
    assert len(run("state", "list", cwd=repo).stdout.splitlines()) == 84 - 3
    assert run("state", "rm", "vehicle.NOPE", cwd=repo).returncode == 1
    assert run("state", "rm", "slot.1", cwd=repo).returncode == 64
    assert backend.current_lock() is None
    summary = run("show", "--state", cwd=repo).stdout
    assert "serial 2" in summary
    assert "Vehicles: 29 with 81 slots" in summary


def test_writer_exits_5_while_locked_and_unlock_frees_it(repo: Path) -> None:
    backend = record_converged(repo)
    holder = LockInfo.for_this_process("apply")
    holder = LockInfo(holder.id, "ci-runner", "build-host-7", 4242, "apply", holder.started, holder.expires)
    backend.acquire_lock(holder)
    blocked = run("state", "rm", "callback.fleet-ops", cwd=repo)
    assert blocked.returncode == 5
    assert "held by ci-runner@build-host-7 (pid 4242) running 'apply'" in blocked.stderr
    assert f"reconciler state unlock {holder.id}" in blocked.stderr
    assert run("plan", cwd=repo, env=SECRETS).returncode == 0  # plan never takes the lock
    assert "Lock: held by ci-runner@build-host-7" in run("show", "--state", cwd=repo).stdout
    unlocked = run("state", "unlock", holder.id, cwd=repo)
    assert unlocked.returncode == 0
    assert run("state", "rm", "callback.fleet-ops", cwd=repo).returncode == 0
