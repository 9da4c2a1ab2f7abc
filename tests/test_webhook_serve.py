"""`reconciler webhook serve` as users run it: a real subprocess, its log on stderr, its exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.errors import ReconcilerError
from reconciler.operations import open_workspace
from reconciler.state.file import FileBackend
from reconciler.state.model import State
from reconciler.state.postgres import PostgresBackend
from reconciler.state.record import record_callback
from reconciler.webhook.credentials import ChildLoader, credentials
from reconciler.webhook.serve import receiver
from tests.commands import SECRETS, backend_of, environment, run
from tests.planning import json_changes, json_notices
from tests.postgres import Cluster, use_postgres
from tests.servers import sandbox
from tests.webhooks import done_events, serving, wait_for

FLEET = "0a123bc5d1e873066454b4d9"  # examples/reconciler.yaml
AUTH = SECRETS["WEBHOOK_AUTH"]
OPEN_CALLBACK = """---
kind: Callback
name: open-door
webhook:
  target: http://127.0.0.1:8081/open
remoteTypes: [Horn]
"""


@pytest.mark.slow
def test_the_first_apply_of_a_new_project_gets_its_notifications_accepted(any_repo: Path) -> None:
    """No state exists while the first apply runs: the callback it created is known from its journal. The
    receiver is a process of its own, on each state backend in turn."""
    repo = any_repo
    callbacks = repo / "manifests" / "callbacks.yaml"
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        # slow enough that the first notifications arrive before the apply saves its first state
        env = {**environment(box), "RECONCILER_API_RATE_LIMIT": "20"}
        with serving(repo, env) as served:
            callbacks.write_text(callbacks.read_text().replace("http://127.0.0.1:8081", served.url))
            backend = backend_of(repo)
            assert backend.load() is None
            assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
            wait_for(lambda: len(done_events(backend)) == 30)
            status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
            assert (status["vehicles"], status["converged"], status["in_flight"]) == (30, 30, 0)
            plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
            assert json_changes(plan) == [] and json_notices(plan) == []
            assert served.stop() == 0
            deliveries = box.inspect("deliveries")["deliveries"]
    assert {(d["status"], d["attempt"]) for d in deliveries} == {(200, 1)}  # none refused, none retried
    accepted = [line for line in served.stderr.splitlines() if " 127.0.0.1 accepted " in line]
    assert len(accepted) == len(deliveries)
    assert all(re.search(r" INFO 127\.0\.0\.1 accepted \d+ events for callback fleet-ops$", line) for line in accepted)
    total = sum(int(re.search(r"accepted (\d+) events", line).group(1)) for line in accepted)  # type: ignore[union-attr]
    assert total == len(backend.read_events())
    assert f"stopped: requests: {len(deliveries)} received, {len(deliveries)} accepted, 0 refused" in served.stderr
    assert f"; events: {total} recorded, 0 not recorded " in served.stderr


def recorded_project(repo: Path, with_open: bool = True) -> None:
    """A state that knows the repo's callback fleet-ops and, `with_open`, open-door: a callback without
    credentials."""
    state = State.new(FLEET)
    record_callback(state, "fleet-ops", "cb-logs", {}, {}, "Running")
    if with_open:
        callbacks = repo / "manifests" / "callbacks.yaml"
        callbacks.write_text(callbacks.read_text() + OPEN_CALLBACK)
        record_callback(state, "open-door", "cb-open", {}, {}, "Running")
    FileBackend(repo / ".reconciler" / "state.json").save(state, None)


def notification(callback_id: str = "cb-logs", **status: Any) -> dict[str, Any]:
    return {
        "callbackId": callback_id,
        "attributes": [],
        "events": [
            {
                "remoteActionId": "r-1",
                "vin": "VF3UHNKF5RL000005",
                "eventDate": "2026-11-25T08:00:05Z",
                "remoteType": "ThermalPreconditioning",
                "eventStatus": {"type": "Done", "status": "Success", **status},
            }
        ],
    }


def send_one_of_each(url: str) -> None:
    target = f"{url}/remote/webhook"
    assert httpx.post(target, json=notification(), headers={"Authorization": AUTH}).status_code == 200
    assert httpx.post(target, json=notification("cb-open")).status_code == 200
    assert httpx.post(target, json=notification(), headers={"Authorization": "Basic guess"}).status_code == 401
    assert httpx.post(target, json=notification()).status_code == 401
    assert httpx.post(target, json=notification("cb-nobody"), headers={"Authorization": AUTH}).status_code == 401
    bad = notification(failureCause={"code": 1})
    answer = httpx.post(target, json=bad, headers={"Authorization": AUTH})
    assert answer.status_code == 400
    assert answer.json()["message"] == "events[0].eventStatus.failureCause: must be a string"
    assert httpx.post(target, content=b"x" * 1_000_001, headers={"Authorization": AUTH}).status_code == 413


@pytest.mark.slow
def test_one_text_line_per_request_on_stderr_and_a_summary_on_shutdown(repo: Path) -> None:
    recorded_project(repo)
    with serving(repo, SECRETS) as served:
        send_one_of_each(served.url)
        assert served.stop() == 0
    assert served.stdout.startswith("Receiving notifications on http://127.0.0.1:")
    assert served.stdout.count("\n") == 1  # stdout says where; the log is on stderr
    lines = served.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert all(re.match(stamp + r" (INFO|WARNING|ERROR) ", line) for line in lines), lines
    messages = [line.split(" ", 2)[2] for line in lines]
    assert messages == [
        "callback open-door has no Header or Query attribute: accepting unauthenticated notifications for it",
        "127.0.0.1 accepted 1 events for callback fleet-ops",
        "127.0.0.1 accepted 1 events for callback open-door",
        "127.0.0.1 401 refused 1 events: wrong header Authorization for callback fleet-ops",
        "127.0.0.1 401 refused 1 events: missing header Authorization for callback fleet-ops",
        "127.0.0.1 401 refused 1 events: unknown callbackId 'cb-nobody'",
        "127.0.0.1 400 malformed notification: events[0].eventStatus.failureCause: must be a string",
        "127.0.0.1 413 the body is larger than 1000000 bytes (Content-Length 1000001)",
        "stopped: requests: 7 received, 2 accepted, 3 refused (401), 1 malformed (400), 1 too large (413), "
        "0 unavailable (503), 0 failed (500); events: 2 recorded, 3 not recorded (sent in requests refused, "
        "unavailable or failed)",
    ]
    assert AUTH not in served.stdout + served.stderr and "webhook-canary" not in served.stderr


@pytest.mark.slow
def test_json_log_lines_are_one_object_each(repo: Path) -> None:
    recorded_project(repo)
    with serving(repo, SECRETS, "--log-format", "json") as served:
        send_one_of_each(served.url)
        assert served.stop() == 0
    lines = [json.loads(line) for line in served.stderr.splitlines()]
    assert [(line["level"], line.get("status")) for line in lines] == [
        ("warning", None),
        ("info", 200),
        ("info", 200),
        ("warning", 401),
        ("warning", 401),
        ("warning", 401),
        ("warning", 400),
        ("warning", 413),
        ("info", None),
    ]
    assert lines[1]["callback"] == "fleet-ops" and lines[1]["events"] == 1 and lines[1]["client"] == "127.0.0.1"
    assert lines[3]["reason"] == "wrong header Authorization for callback fleet-ops"
    assert lines[6]["reason"] == "events[0].eventStatus.failureCause: must be a string"
    assert lines[-1]["message"].startswith("stopped: requests: 7 received, 2 accepted, 3 refused (401),")
    assert (lines[-1]["http_200"], lines[-1]["http_401"], lines[-1]["events"], lines[-1]["not_recorded"]) == (
        2,
        3,
        2,
        3,
    )
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"]) for line in lines)
    assert AUTH not in served.stderr


@pytest.mark.slow
def test_ctrl_c_stops_it_cleanly_too(repo: Path) -> None:
    recorded_project(repo)
    with serving(repo, SECRETS) as served:
        assert served.stop(signal.SIGINT) == 0
    assert "stopped: requests: 0 received," in served.stderr
    assert "Traceback" not in served.stderr


@pytest.mark.slow
def test_the_receiver_rides_out_a_database_restart_and_answers_503_while_it_is_down(
    repo: Path, pg_cluster: Cluster, pg_dsn: str, pg_schema: str
) -> None:
    use_postgres(repo, pg_schema)
    state = State.new(FLEET)
    record_callback(state, "fleet-ops", "cb-logs", {}, {}, "Running")
    backend = PostgresBackend(pg_dsn, FLEET, pg_schema)
    backend.save(state, None)
    right, wrong = {"Authorization": AUTH}, {"Authorization": "Basic guess"}

    def send(action: str, headers: dict[str, str]) -> httpx.Response:
        body = notification()
        body["events"][0]["remoteActionId"] = action
        return httpx.post(f"{served.url}/remote/webhook", json=body, headers=headers, timeout=30)

    def health() -> httpx.Response:
        return httpx.get(f"{served.url}/healthz", timeout=30)

    with serving(repo, {**SECRETS, "STATE_DSN": pg_dsn}, "--log-format", "json") as served:
        assert send("r-1", right).status_code == 200  # the receiver's connections are open now
        assert send("r-1", wrong).status_code == 401
        assert health().json() == {"status": "ok", "received": 1, "state": "ok"}
        pg_cluster.kill()
        pg_cluster.start()  # a restart between two notifications: the connections kept are dead
        assert send("r-2", right).status_code == 200
        assert send("r-2", wrong).status_code == 401
        pg_cluster.kill()
        try:
            for headers in (right, wrong):  # recorded, or checked against the state: neither can be done now
                down = send("r-3", headers)
                assert down.status_code == 503, down.text
                assert down.headers["Retry-After"] == "10"
            unhealthy = wait_for(lambda: (answer := health()).status_code == 503 and answer, timeout=10)
            assert unhealthy.json()["status"] == "unavailable"
            assert "the state database 127.0.0.1:" in unhealthy.json()["state"]
        finally:
            pg_cluster.start()
        assert send("r-3", right).status_code == 200  # the API's retry
        wait_for(lambda: health().status_code == 200, timeout=10)
        assert served.stop() == 0
    assert sorted(event["remoteActionId"] for event in backend.read_events()) == ["r-1", "r-2", "r-3"]
    backend.close()
    lines = [json.loads(line) for line in served.stderr.splitlines()]  # a traceback would not parse
    unavailable = [line for line in lines if line.get("status") == 503]
    assert len(unavailable) == 2 and all(line["level"] == "error" for line in unavailable)
    assert "could not record 1 events for callback fleet-ops: the state database" in unavailable[0]["message"]
    assert "could not check the credentials of 1 events: the state database" in unavailable[1]["message"]
    assert [line["status"] for line in lines if line.get("status")] == [200, 401, 200, 401, 503, 503, 200]
    assert any(line["message"].startswith("the state backend cannot be reached: ") for line in lines)
    assert any(line["message"] == "the state backend can be reached again" for line in lines)
    assert lines[-1]["message"] == (
        "stopped: requests: 7 received, 3 accepted, 2 refused (401), 0 malformed (400), 0 too large (413), "
        "2 unavailable (503), 0 failed (500); events: 3 recorded, 4 not recorded (sent in requests refused, "
        "unavailable or failed)"
    )
    assert pg_cluster.password not in served.stderr


@contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def test_a_busy_port_is_one_clear_line_and_exit_1(repo: Path) -> None:
    recorded_project(repo, with_open=False)
    with busy_port() as port:
        result = run("webhook", "serve", "--listen", f"127.0.0.1:{port}", cwd=repo, env=SECRETS)
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert result.stdout == ""


def test_the_sandbox_on_a_busy_port_is_one_clear_line_and_exit_1() -> None:
    with busy_port() as port:
        result = run("sandbox", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert result.stdout == ""


def test_an_unusable_certificate_is_one_clear_line_and_exit_1(repo: Path, tmp_path: Path) -> None:
    recorded_project(repo, with_open=False)
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    result = run(
        "webhook",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
        cwd=repo,
        env=SECRETS,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: cannot serve https with {tmp_path / 'cert.pem'} and ")
    assert "not a PEM certificate and its private key" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_an_empty_credential_stops_the_receiver_with_exit_7(repo: Path) -> None:
    recorded_project(repo, with_open=False)
    result = run("webhook", "serve", "--listen", "127.0.0.1:0", cwd=repo, env={**SECRETS, "WEBHOOK_AUTH": ""})
    assert result.returncode == 7
    assert (
        "manifests/callbacks.yaml:10:20: webhook.headers.Authorization: ${env:WEBHOOK_AUTH} is set to an empty value"
        in result.stderr
    )


def test_the_receiver_says_which_callbacks_it_accepts_without_credentials(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_project(repo)
    made = receiver(open_workspace(repo / "reconciler.yaml", SECRETS), SECRETS)
    assert made.credentials.by_id["cb-open"] == ("open-door", [])
    assert (
        "callback open-door has no Header or Query attribute: accepting unauthenticated notifications for it"
        in caplog.text
    )


def test_credentials_reload_in_a_separate_process_and_its_errors_come_back_as_text(repo: Path) -> None:
    recorded_project(repo, with_open=False)
    loader = ChildLoader(repo / "reconciler.yaml", SECRETS)
    try:
        loader.start()
        assert loader.pool is not None
        [pid] = [process.pid for process in loader.pool._processes.values()]
        assert pid != os.getpid()
        assert loader().by_id == {"cb-logs": ("fleet-ops", [("Header", "Authorization", AUTH)])}
        callbacks = repo / "manifests" / "callbacks.yaml"
        callbacks.write_text(callbacks.read_text().replace("${env:WEBHOOK_AUTH}", '""'))
        with pytest.raises(
            ReconcilerError, match=r"callbacks\.yaml:10:\d+: webhook\.headers\.Authorization: the value"
        ):
            loader()
        os.kill(pid, signal.SIGKILL)  # a loader process that dies is replaced at the next reload
        with pytest.raises(ReconcilerError, match="the process loading the credentials stopped"):
            loader()
        callbacks.write_text(callbacks.read_text().replace('""', "${env:WEBHOOK_AUTH}"))
        assert "cb-logs" in loader().by_id
    finally:
        loader.close()


def test_a_reload_sees_every_change_to_the_manifests_state_and_journal(repo: Path) -> None:
    """Reloads keep what they read while its files are unchanged: each kind of change must still be seen."""
    recorded_project(repo, with_open=False)
    env = {**SECRETS, "ROTATED_AUTH": "Basic rotated-canary-6"}
    project = open_workspace(repo / "reconciler.yaml", env)
    assert credentials(project, env).by_id == {"cb-logs": ("fleet-ops", [("Header", "Authorization", AUTH)])}
    callbacks = repo / "manifests" / "callbacks.yaml"
    callbacks.write_text(callbacks.read_text().replace("${env:WEBHOOK_AUTH}", "${env:ROTATED_AUTH}"))
    rotated = [("Header", "Authorization", env["ROTATED_AUTH"])]
    assert credentials(project, env).by_id == {"cb-logs": ("fleet-ops", rotated)}
    backend = FileBackend(repo / ".reconciler" / "state.json")
    state = backend.load()
    assert state is not None
    record_callback(state, "fleet-ops", "cb-recreated", {}, {}, "Running")
    backend.save(state, state.serial)
    assert credentials(project, env).by_id == {"cb-recreated": ("fleet-ops", rotated)}
    intent = {"kind": "intent", "id": "i1", "op": "delete-callback", "name": "fleet-ops"}
    backend.append_journal([intent, {"kind": "result", "id": "i1", "ok": True}])
    assert credentials(project, env).by_id == {}
    backend.clear_journal()
    assert credentials(project, env).by_id == {"cb-recreated": ("fleet-ops", rotated)}
