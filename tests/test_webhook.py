"""sandbox -> webhook receiver -> state: outcomes recorded from real notifications over HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.operations import open_workspace
from reconciler.state.backend import StateBackend
from reconciler.state.events import fold_events
from reconciler.state.record import record_callback
from reconciler.webhook.app import create_app, parse_envelope
from reconciler.webhook.serve import receiver
from tests.commands import SECRETS, backend_of, environment, run
from tests.planning import json_changes, json_notices
from tests.servers import Sandbox, sandbox, serve_app
from tests.webhooks import done_events, receiving, state_environment, wait_for


@pytest.fixture
def setup(any_repo: Path) -> Iterator[tuple[Path, Sandbox, str, StateBackend]]:
    """A receiver for a repo whose state is on each backend in turn."""
    with receiving(any_repo) as running:
        yield running


@pytest.mark.slow
def test_outcomes_of_an_apply_arrive_and_are_folded(setup: tuple[Path, Sandbox, str, StateBackend]) -> None:
    repo, box, _root, backend = setup
    env = environment(box)
    assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
    wait_for(lambda: len(done_events(backend)) == 30)
    events = backend.read_events()
    assert {e["status"] for e in events} >= {"Accepted", "CheckingVehicle", "SentToVehicle", "Success"}
    assert {e["callback"] for e in events} == {"fleet-ops"}
    plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
    assert json_changes(plan) == [] and json_notices(plan) == []  # every outcome known: nothing in flight
    again = run("apply", "--auto-approve", cwd=repo, env=env)  # a writer folds the events into the state
    assert again.stdout == f"No changes: the manifests match the recorded state (serial {backend.load().serial}).\n"  # type: ignore[union-attr]
    assert "Remote actions: 30 Success" in run("show", "--state", cwd=repo, env=env).stdout
    assert backend.read_events() == []


@pytest.mark.slow
def test_wrong_credentials_get_401_and_record_nothing(setup: tuple[Path, Sandbox, str, StateBackend]) -> None:
    repo, box, root, backend = setup
    assert run("apply", "--auto-approve", cwd=repo, env=environment(box)).returncode == 0
    wait_for(lambda: len(done_events(backend)) == 30)
    before = backend.read_events()
    callback_id = before[0]["callbackId"]
    envelope = {
        "callbackId": callback_id,
        "attributes": [],
        "events": [
            {
                "remoteActionId": before[0]["remoteActionId"],
                "vin": before[0]["vin"],
                "eventDate": "2030-01-01T00:00:00Z",
                "remoteType": "ThermalPreconditioning",
                "eventStatus": {"type": "Done", "status": "Failed", "failureCause": "VehicleError"},
            }
        ],
    }
    wrong = httpx.post(f"{root}/remote/webhook", json=envelope, headers={"Authorization": "Basic nope"})
    missing = httpx.post(f"{root}/remote/webhook", json=envelope)
    unknown = httpx.post(
        f"{root}/remote/webhook",
        json={**envelope, "callbackId": "not-ours"},
        headers={"Authorization": SECRETS["WEBHOOK_AUTH"]},
    )
    assert (wrong.status_code, missing.status_code, unknown.status_code) == (401, 401, 401)
    assert backend.read_events() == before
    right = httpx.post(f"{root}/remote/webhook", json=envelope, headers={"Authorization": SECRETS["WEBHOOK_AUTH"]})
    assert right.status_code == 200 and right.json() == {"received": 1}
    assert len(backend.read_events()) == len(before) + 1


@pytest.mark.slow
def test_malformed_and_oversized_bodies(setup: tuple[Path, Sandbox, str, StateBackend]) -> None:
    _repo, _box, root, backend = setup
    assert httpx.get(f"{root}/healthz").json()["status"] == "ok"
    assert httpx.post(f"{root}/remote/webhook", content=b"{nope").status_code == 400
    assert httpx.post(f"{root}/remote/webhook", json={"callbackId": "x", "events": []}).status_code == 400
    assert (
        httpx.post(f"{root}/remote/webhook", json={"callbackId": "x", "events": [{"remoteActionId": "r"}]}).status_code
        == 400
    )
    assert httpx.post(f"{root}/remote/webhook", content=b"x" * 1_000_001).status_code == 413
    assert backend.read_events() == []


def test_duplicates_and_out_of_order_deliveries_change_nothing() -> None:
    from reconciler.state.model import ActionRecord, State

    state = State.new("f")
    record_callback(state, "cb", "cb-id", {}, {}, "Running")
    state.actions["r1"] = ActionRecord("VIN", "cb", "2026-11-25T08:00:00Z")

    def event(kind: str, status: str, at: str, **extra: str) -> dict[str, Any]:
        return {"callbackId": "cb-id", "remoteActionId": "r1", "type": kind, "status": status, "eventDate": at, **extra}

    sent = event("Pending", "SentToVehicle", "2026-11-25T08:00:03Z")
    done = event("Done", "Failed", "2026-11-25T08:00:05Z", failureCause="VehicleConnectionTimeout")
    assert fold_events(state, [sent, done]) == (2, [])
    snapshot = state.to_dict()
    late = [
        event("Pending", "Accepted", "2026-11-25T08:00:01Z"),
        sent,
        done,
        event("Pending", "CheckingVehicle", "2026-11-25T08:00:02Z"),
    ]
    assert fold_events(state, late) == (0, [])
    assert state.to_dict() == snapshot
    assert fold_events(state, [{**done, "remoteActionId": "stranger"}]) == (0, ["stranger"])
    older = State.new("f")
    record_callback(older, "cb", "cb-id", {}, {}, "Running")
    older.actions["r1"] = ActionRecord("VIN", "cb", "2026-11-25T08:00:00Z")
    fold_events(older, [sent, event("Pending", "Accepted", "2026-11-25T08:00:01Z")])
    assert older.actions["r1"].status == "SentToVehicle"  # an older Pending does not go back in time
    assert fold_events(older, [event("Failed", "VehicleError", "2026-11-25T08:00:09Z")]) == (1, [])
    assert older.actions["r1"].outcome == "Failed"  # `type: Failed` is final too


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ("Success", "Success"),
        ({"RemoteDoneEventStatus": "Success"}, "Success"),
        ({"RemotePendingEventStatus": "Accepted"}, "Accepted"),
    ],
)
def test_status_as_string_or_object(status: Any, text: str) -> None:
    parsed = parse_envelope(
        {"callbackId": "c", "events": [{"remoteActionId": "r", "eventStatus": {"type": "Done", "status": status}}]}
    )
    assert not isinstance(parsed, str)
    assert parsed[1][0]["status"] == text


@pytest.mark.slow
def test_after_failures_the_next_plan_holds_then_retries_exactly_the_transient_ones(any_repo: Path) -> None:
    repo = any_repo
    with receiving(repo, failure_rate=0.5) as (_, box, _root, backend):
        env = environment(box)
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        wait_for(lambda: len(done_events(backend)) == 30)
        failed = {e["vin"]: e["failureCause"] for e in done_events(backend) if e["status"] == "Failed"}
        transient = {vin for vin, cause in failed.items() if cause != "MissingRights"}
        permanent = set(failed) - transient
        assert transient and len(failed) < 30
        # first the transient failures back off (5 minutes after a first failure): held, nothing sent
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert json_changes(plan) == []
        held = {n["address"].split(".")[1]: n["detail"] for n in json_notices(plan) if n["kind"] == "held"}
        assert held.keys() == transient
        assert all(
            re.fullmatch(rf"retried after \S+ UTC \({failed[vin]}, attempt 1\)", detail) for vin, detail in held.items()
        )
        status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
        assert (status["held"], status["converged"]) == (len(transient), 30 - len(failed))
        assert status["fleet_health"]["health"]["Held"] == len(transient)
        assert status["fleet_health"]["health"]["Degraded"] == len(permanent)
        assert f", {len(transient)} held back.\n" in run("status", cwd=repo, env=env).stdout
        # once the backoff is over, exactly the transient ones are retried
        state = backend.load()
        assert state is not None
        fold_events(state, backend.read_events())  # as a writer folds them
        assert state.holds.keys() == transient
        state.holds = {
            vin: dataclasses.replace(hold, until="2000-01-01T00:00:00Z") for vin, hold in state.holds.items()
        }
        backend.save(state, state.serial)
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        retried = {c["address"].split(".")[1] for c in json_changes(plan)}
        assert retried == transient
        assert all(
            c["action"] == "retry" and c["cause"] == f"Failed: {failed[c['address'].split('.')[1]]}"
            for c in json_changes(plan)
        )
        assert {n["address"].split(".")[1] for n in json_notices(plan) if n["kind"] == "failed"} == permanent
        status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
        assert (status["vehicles"], status["failed"], status["converged"]) == (30, len(failed), 30 - len(failed))
        assert sum(status["failed_by_cause"].values()) >= len(failed)
        text = run("status", cwd=repo, env=env).stdout
        assert text.startswith(f"Vehicles: 30: {30 - len(failed)} converged, 0 in flight")
        assert status["drifted"] == 0


@pytest.mark.slow
def test_a_receiver_down_for_a_while_loses_no_event(any_repo: Path) -> None:
    repo = any_repo
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    callbacks = repo / "manifests" / "callbacks.yaml"
    text = callbacks.read_text().replace("http://127.0.0.1:8081", f"http://127.0.0.1:{port}")
    callbacks.write_text(text.replace("retryNumber: 3, retryDelay: 120", "retryNumber: 40, retryDelay: 100"))
    with sandbox(vehicles=40, asleep_rate=0.0, speed=500.0) as box:
        env = {**state_environment(), **SECRETS, **environment(box)}
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0  # nobody listens yet
        box.wait(lambda: any(d["error"] for d in box.inspect("deliveries")["deliveries"]))
        backend = backend_of(repo)
        with serve_app(create_app(receiver(open_workspace(repo / "reconciler.yaml", env), env)), port=port):
            wait_for(lambda: len(done_events(backend)) == 30)
        deliveries = box.inspect("deliveries")["deliveries"]
        refused = [d for d in deliveries if d["error"]]
        accepted = [d for d in deliveries if d["status"] == 200]
        assert refused and max(d["attempt"] for d in accepted) > 1  # the sandbox retried until it got through
        assert len({e["remoteActionId"] for e in done_events(backend)}) == 30


@pytest.mark.slow
def test_events_for_unknown_remote_actions_are_kept_and_flagged(setup: tuple[Path, Sandbox, str, StateBackend]) -> None:
    repo, box, root, backend = setup
    env = environment(box)
    assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
    wait_for(lambda: len(done_events(backend)) == 30)
    callback_id = backend.read_events()[0]["callbackId"]
    stranger = {
        "callbackId": callback_id,
        "attributes": [],
        "events": [{"remoteActionId": "not-ours", "vin": "V", "eventStatus": {"type": "Done", "status": "Success"}}],
    }
    assert (
        httpx.post(
            f"{root}/remote/webhook", json=stranger, headers={"Authorization": SECRETS["WEBHOOK_AUTH"]}
        ).status_code
        == 200
    )
    assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0  # a writer folds the events
    assert [(e["remoteActionId"], e.get("unmatched")) for e in backend.read_events()] == [("not-ours", True)]
    serial = backend.load().serial  # type: ignore[union-attr]
    assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
    assert backend.load().serial == serial  # type: ignore[union-attr]  # a kept event does not churn the state
    status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
    assert status["unmatched_events"] == 1


@pytest.mark.slow
def test_receiver_serves_https_with_the_given_certificate(repo: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "reconciler",
        "webhook",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
    ]
    env = {**os.environ, **SECRETS}
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith(f"Receiving notifications on https://127.0.0.1:{port}/")
            health = wait_for(lambda: _get(f"https://127.0.0.1:{port}/healthz", trusted))
            assert health.json()["status"] == "ok"
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"https://127.0.0.1:{port}/healthz")  # not trusted without the CA: it is TLS for real
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def _get(url: str, context: ssl.SSLContext) -> httpx.Response | None:
    try:
        return httpx.get(url, verify=context)
    except httpx.ConnectError:
        return None


PARTNER = """---
kind: Callback
name: partner
webhook:
  target: http://127.0.0.1:8081/partner
  headers: {Authorization: "${env:PARTNER_AUTH}"}
remoteTypes: [Horn]
"""


@pytest.mark.slow
def test_an_outcome_from_another_callback_is_ignored_and_shown(repo: Path) -> None:
    """Whoever holds one callback's credentials cannot write the outcome of a remote posted with another."""
    callbacks = repo / "manifests" / "callbacks.yaml"
    callbacks.write_text(callbacks.read_text() + PARTNER)
    partner = {"PARTNER_AUTH": "Basic partner-canary-5"}
    with receiving(repo, partner) as (_, box, root, backend):
        env = {**environment(box), **partner}
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        wait_for(lambda: len(done_events(backend)) == 30)
        recorded = backend.load()
        assert recorded is not None
        action_id, action = sorted(recorded.actions.items())[0]
        forged = {
            "callbackId": recorded.callbacks["partner"].id,
            "attributes": [],
            "events": [
                {
                    "remoteActionId": action_id,
                    "vin": action.vin,
                    "eventDate": "2030-01-01T00:00:00Z",
                    "remoteType": "ThermalPreconditioning",
                    "eventStatus": {"type": "Done", "status": "Failed", "failureCause": "MissingRights"},
                }
            ],
        }
        answer = httpx.post(f"{root}/remote/webhook", json=forged, headers={"Authorization": partner["PARTNER_AUTH"]})
        assert answer.status_code == 200  # authentic for partner: recorded, as the receiver cannot know better
        assert backend.read_events()[-1]["callback"] == "partner"
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert json_changes(plan) == [] and json_notices(plan) == []
        status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
        assert (status["failed"], status["converged"], status["other_callback_events"]) == (0, 30, 1)
        text = run("status", cwd=repo, env=env).stdout
        assert "Events from another callback than their remote action's: 1 event ignored" in text
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0  # a writer folds the rest
        saved = backend.load()
        assert saved is not None and saved.actions[action_id].outcome == "Success"
        assert saved.actions[action_id].cause is None


@pytest.mark.slow
def test_a_wrong_typed_field_is_refused_and_nothing_in_the_events_file_can_break_a_command(repo: Path) -> None:
    with receiving(repo) as (_, box, root, backend):
        env = environment(box)
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        wait_for(lambda: len(done_events(backend)) == 30)
        events = backend.read_events()
        sample = done_events(backend)[0]
        bad = {
            "callbackId": sample["callbackId"],
            "attributes": [],
            "events": [
                {"remoteActionId": sample["remoteActionId"], "eventStatus": {"type": "Pending", "status": "Accepted"}},
                {"remoteActionId": sample["remoteActionId"], "eventStatus": {"type": "Done", "status": "Failed"}},
                {
                    "remoteActionId": sample["remoteActionId"],
                    "eventStatus": {"type": "Done", "status": "Failed", "failureCause": {"code": 1}},
                },
            ],
        }
        answer = httpx.post(f"{root}/remote/webhook", json=bad, headers={"Authorization": SECRETS["WEBHOOK_AUTH"]})
        assert answer.status_code == 400
        assert answer.json()["message"] == "events[2].eventStatus.failureCause: must be a string"
        assert backend.read_events() == events  # nothing of it recorded
        # what an older receiver, another program or a hand edit may have left there
        poisoned = [
            {**sample, "eventDate": "2030-01-01T00:00:00Z", "status": "Failed", "failureCause": {"code": 1}},
            {**sample, "eventDate": 1893456000, "status": "Failed", "failureCause": "MissingRights"},
            {**sample, "vin": ["V"], "status": "Failed"},
            {key: value for key, value in sample.items() if key != "status"},
            {**sample, "remoteActionId": [sample["remoteActionId"]]},
        ]
        with open(backend.events_path, "a") as handle:
            handle.writelines(json.dumps(entry) + "\n" for entry in poisoned)
            handle.write('[1, 2]\n"text"\n7\nnull\n')
        for command in (("plan", "--format", "json"), ("status", "--format", "json")):
            result = run(*command, cwd=repo, env=env)
            assert result.returncode == 0, result.stderr
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert json_changes(plan) == [] and json_notices(plan) == []
        status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
        assert (status["failed"], status["converged"], status["malformed_events"]) == (0, 30, 9)
        assert "Malformed events in the events file: 9 events ignored" in run("status", cwd=repo, env=env).stdout
        # a writer folds what is sound and saves a state every command still reads
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        saved = backend.load()
        assert saved is not None
        assert {a.outcome for a in saved.actions.values()} == {"Success"}
        assert all(a.cause is None and isinstance(a.updated_at, str) for a in saved.actions.values())
        for command in (("plan",), ("status",), ("show", "--state")):
            assert run(*command, cwd=repo, env=env).returncode == 0
