"""refresh against the sandbox: drift made out of band is reported by class and repaired by the next apply."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from reconciler.vin import make_vin
from tests.commands import desired_programs, environment, held_programs, labels, run
from tests.planning import json_changes, json_notices
from tests.servers import sandbox

pytestmark = pytest.mark.slow


def test_drift_is_reported_and_repaired(any_repo: Path) -> None:
    repo = any_repo
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        clean = run("refresh", "--detailed-exitcode", cwd=repo, env=env)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert clean.stdout == "No drift: the fleet holds what was recorded.\n"
        changed, emptied = make_vin(1), make_vin(2)
        moved = {"slot": 1, "enabled": True, "recurrence": "Daily", "start": "PT5H0M", "occurence": {"day": ["Mon"]}}
        httpx.put(f"{box.root}/_sandbox/vehicles/{changed}", json={"programs": [moved]})
        httpx.put(f"{box.root}/_sandbox/vehicles/{emptied}", json={"programs": []})
        with box.client() as client:
            callbacks = client.get(f"{box.fleet_url}/remote/callbacks").json()["_embedded"]["callbacks"]
            client.put(f"{box.fleet_url}/remote/callbacks/{callbacks[0]['id']}/status", json={"status": "Paused"})
        found = run("refresh", "--detailed-exitcode", "--format", "json", cwd=repo, env=env)
        assert found.returncode == 2, found.stdout + found.stderr
        details = {(d["kind"], d["address"]): d["detail"] for d in json.loads(found.stdout)["drift"]}
        drift = set(details)
        assert details[("changed", f"vehicle.{changed}.slot.1")] == (
            "the vehicle holds 05:00 Mon instead of 06:45 Mon-Fri; the next plan sets it back"
        )
        assert ("callback-status", "callback.fleet-ops") in drift
        assert ("changed", f"vehicle.{changed}.slot.1") in drift
        assert ("deleted", f"vehicle.{emptied}.slot.1") in drift
        assert {kind for kind, address in drift if changed in address} == {"changed", "deleted"}  # slots 2, 3 gone too
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert {c["address"] for c in json_changes(plan) if c["address"].startswith("vehicle.")} == {
            f"vehicle.{changed}.slot.1",
            f"vehicle.{changed}.slot.2",
            f"vehicle.{changed}.slot.3",
            f"vehicle.{emptied}.slot.1",
            f"vehicle.{emptied}.slot.2",
            f"vehicle.{emptied}.slot.3",
        }
        assert any(c["action"] == "status" for c in json_changes(plan))
        repaired = run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert held_programs(box) == desired_programs(repo)
        assert labels(box) == ["fleet-ops"]
        assert run("refresh", "--detailed-exitcode", cwd=repo, env=env).returncode == 0


def test_foreign_program_in_a_managed_slot_is_reported(repo: Path) -> None:
    schedules = repo / "manifests" / "schedules.yaml"
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        foreign = {"slot": 4, "enabled": True, "recurrence": "Daily", "start": "PT22H0M", "occurence": {"day": ["Sun"]}}
        vin = make_vin(3)
        current = httpx.get(f"{box.root}/_sandbox/vehicles/{vin}").json()["programs"]
        httpx.put(f"{box.root}/_sandbox/vehicles/{vin}", json={"programs": [*current, foreign]})
        schedules.write_text(schedules.read_text() + """  - slot: 4\n    start: "21:00"\n    days: [Sun]\n""")
        found = json.loads(run("refresh", "--format", "json", cwd=repo, env=env).stdout)
        assert {(d["kind"], d["address"]) for d in found["drift"]} == {("foreign", f"vehicle.{vin}.slot.4")}
        assert found["drift"][0]["detail"] == (
            "holds 22:00 Sun, a program reconciler did not set; the next plan leaves it alone unless schedule "
            "'weekend-shift' has `takeover: true` (or plan and apply run with --takeover)"
        )
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert f"vehicle.{vin}.slot.4" not in {c["address"] for c in json_changes(plan)}  # not clobbered
        assert [n["kind"] for n in json_notices(plan) if n["address"] == f"vehicle.{vin}.slot.4"] == ["foreign"]
        text = run("plan", cwd=repo, env=env).stdout
        assert f"Left alone: {vin} slot 4: holds a program reconciler did not set" in text
        forced = run("plan", "--takeover", cwd=repo, env=env).stdout
        assert "~ slot 4: take over 22:00 Sun (not set by reconciler) -> 21:00 Sun" in forced
        allow = ("--allow", "max_changed_vehicles")
        assert run("apply", "--auto-approve", "--wait=30", *allow, cwd=repo, env=env).returncode == 0
        assert {p["slot"]: p["start"] for p in httpx.get(f"{box.root}/_sandbox/vehicles/{vin}").json()["programs"]}[
            4
        ] == "PT22H0M"
        schedules.write_text(schedules.read_text() + "takeover: true\n")
        taken = run("apply", "--auto-approve", "--wait=30", *allow, cwd=repo, env=env)
        assert taken.returncode == 0, taken.stdout + taken.stderr
        held = {p["slot"]: p["start"] for p in httpx.get(f"{box.root}/_sandbox/vehicles/{vin}").json()["programs"]}
        assert held[4] == "PT21H0M"
        assert run("plan", "--detailed-exitcode", cwd=repo, env=env).returncode == 0


def test_callback_settings_changed_out_of_band_are_named_by_path(repo: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--target", "callback:fleet-ops", cwd=repo, env=env).returncode == 0
        with box.client() as client:
            live = client.get(f"{box.fleet_url}/remote/callbacks").json()["_embedded"]["callbacks"][0]
            body = {**live["subscribe"], "retryPolicy": {"policy": "Bounded", "retryNumber": 3, "retryDelay": 999}}
            assert client.put(f"{box.fleet_url}/remote/callbacks/{live['id']}", json=body).status_code == 202
        found = json.loads(run("refresh", "--format", "json", cwd=repo, env=env).stdout)
        assert [(d["kind"], d["detail"]) for d in found["drift"]] == [
            ("callback-changed", "changed outside reconciler: retryPolicy.retryDelay; the next plan sets them back")
        ]
        plan = run("plan", cwd=repo, env=env).stdout
        assert "callback.fleet-ops will be updated" in plan


def test_list_order_in_a_live_callback_is_no_drift() -> None:
    from reconciler.live import spec_differences

    recorded = {"remoteTypes": ["ThermalPreconditioning", "Horn"], "webhook": {"name": "a", "headers": {}}}
    assert spec_differences(recorded, {**recorded, "remoteTypes": ["Horn", "ThermalPreconditioning"]}) == []
    moved = {**recorded, "webhook": {"name": "b", "headers": {"X": "1"}}}
    assert spec_differences(recorded, moved) == ["webhook.headers.X", "webhook.name"]
