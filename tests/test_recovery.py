"""Recovery and state trust: what a killed run leaves is resolved on the API, statuses are recorded only when
confirmed, fingerprints survive a first run killed before its first save, a lost lock stops the writer."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api.client import ApiConfig, FleetClient
from reconciler.apply import Applier
from reconciler.callbacks import callback_spec, fingerprint
from reconciler.errors import LockLostError, RunInterrupted
from reconciler.operations import apply_changes, open_workspace
from reconciler.plan import Action
from reconciler.planner import PlanOptions, make_plan
from reconciler.recovery import recover
from reconciler.state.backend import LockInfo
from reconciler.state.file import FileBackend
from reconciler.state.lock import Lease
from reconciler.state.model import CallbackRecord, State
from tests.commands import SECRETS, apply, backend_of, desired_programs, environment, held_programs, run
from tests.planning import NOW, callback, desired, json_changes, json_notices, program
from tests.servers import sandbox

CONFIG = ApiConfig("https://api.example/v3", "c", "u", "p", rate_limit=1000)


class Killed(BaseException):
    """The process dies here: nothing after it runs, not even clean-up."""


def listing(*callbacks: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"_links": {}, "_embedded": {"callbacks": list(callbacks)}})


def killed_run(backend: FileBackend, want: Any, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply `want` to a new state and die where `api` raises Killed: the journal is what is left."""
    plan = make_plan(want, None, "f", PlanOptions(now=NOW))
    monkeypatch.setattr(Applier, "finish", lambda self: None)  # a SIGKILL runs no clean-up
    with FleetClient(CONFIG, "f", transport=httpx.MockTransport(api)) as client, pytest.raises(Killed):
        Applier(plan, want, State.new("f"), backend, client).run()
    monkeypatch.undo()


def next_writer(backend: FileBackend, *live: dict[str, Any]) -> State:
    state = backend.load() or State.new("f")
    with FleetClient(CONFIG, "f", transport=httpx.MockTransport(lambda request: listing(*live))) as client:
        recover(state, backend, client)
    return state


def test_a_run_killed_between_creating_and_pausing_a_callback_records_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FileBackend(tmp_path / "state.json")
    want = desired(callbacks=[callback("cb", status="Paused")])

    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return listing()
        if request.url.path.endswith("/status"):
            raise Killed
        return httpx.Response(200, json={"callbackId": "cb-1"})

    killed_run(backend, want, api, monkeypatch)
    state = next_writer(backend, {"id": "cb-1", "status": "Running", "subscribe": {"label": "cb"}})
    assert state.callbacks["cb"].status == "Running"  # as the API has it: the pause never arrived
    plan = make_plan(want, state, "f", PlanOptions(now=NOW))
    assert [(str(c.address), c.action) for c in plan.changes] == [("callback.cb", Action.STATUS)]


def test_a_first_run_killed_before_its_first_save_keeps_comparable_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FileBackend(tmp_path / "state.json")
    want = desired(callbacks=[callback("a", secret="s3cret"), callback("b", secret="s3cret")])

    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return listing()
        if json.loads(request.content)["label"] == "b":
            raise Killed
        return httpx.Response(200, json={"callbackId": "cb-a"})

    killed_run(backend, want, api, monkeypatch)
    assert not backend.path.exists()  # no save happened
    state = next_writer(backend)
    plan = make_plan(want, state, "f", PlanOptions(now=NOW))
    assert [(str(c.address), c.action) for c in plan.changes] == [("callback.b", Action.CREATE)]  # a: nothing to do
    assert "s3cret" not in backend.journal_path.read_text()


def test_unknown_remotes_left_by_a_killed_run_are_adopted_by_their_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FileBackend(tmp_path / "state.json")
    vin = "VF3UHNKF5RL000005"
    want = desired({vin: [program(1)]})
    state = State.new("f")
    state.callbacks["cb"] = CallbackRecord("cb-1", callback_spec(callback()), {}, "Running")
    state.vehicles_index[vin] = "v-1"
    backend.save(state, None)
    posted: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/remotes")
        posted.append(json.loads(request.content)["label"])
        raise Killed  # the POST reached the API; the process died before the answer

    plan = make_plan(want, state, "f", PlanOptions(now=NOW))
    monkeypatch.setattr(Applier, "finish", lambda self: None)
    with FleetClient(CONFIG, "f", transport=httpx.MockTransport(api)) as client, pytest.raises(Killed):
        Applier(plan, want, state, backend, client).run()
    monkeypatch.undo()
    assert posted[0].startswith("reconciler:")
    listed = {"_links": {}, "_embedded": {"remoteActions": [{"remoteActionId": "r-9", "remote": {"label": posted[0]}}]}}
    recovered = backend.load()
    assert recovered is not None
    with FleetClient(CONFIG, "f", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=listed))) as client:
        recover(recovered, backend, client)
    assert recovered.slots[vin][1].action == "r-9"
    assert make_plan(want, recovered, "f", PlanOptions(now=NOW)).changes == ()  # in flight, not sent again


@pytest.mark.slow
def test_lost_answers_are_looked_up_so_no_remote_fails_same_action_in_progress(repo: Path) -> None:
    with sandbox(vehicles=40, drop_rate=0.2, asleep_rate=0.0, offline_rate=0.0) as box:
        result = apply(repo, box, "--wait=60")
        assert result.returncode == 0, result.stdout + result.stderr
        remotes = box.inspect("remotes")["remotes"]
        assert box.inspect("stats")["dropped"] > 0
        per_vehicle = Counter(r["vin"] for r in remotes)
        assert set(per_vehicle.values()) == {1}  # one remote per vehicle: nothing was sent twice
        assert "SameActionInProgress" not in result.stdout
        assert held_programs(box) == desired_programs(repo)


@pytest.mark.slow
def test_fingerprints_use_the_configured_key_not_a_salt_kept_beside_them(repo: Path) -> None:
    config = repo / "reconciler.yaml"
    config.write_text(
        config.read_text().replace(
            "  path: .reconciler/state.json", "  path: .reconciler/state.json\n  fingerprint_key: ${env:FP_KEY}"
        )
    )
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "FP_KEY": "key-kept-in-the-ci-secrets"}
        missing = run("plan", cwd=repo, env=environment(box))
        assert missing.returncode == 7 and "FP_KEY not set" in missing.stderr
        assert run("apply", "--auto-approve", cwd=repo, env=env).returncode == 0
        state = FileBackend(repo / ".reconciler" / "state.json").load()
        assert state is not None
        path = "webhook.headers.Authorization"
        stored = state.callbacks["fleet-ops"].secrets[path]
        assert stored == fingerprint("key-kept-in-the-ci-secrets", path, SECRETS["WEBHOOK_AUTH"])
        assert stored != fingerprint(state.salt, path, SECRETS["WEBHOOK_AUTH"])
        assert run("plan", "--detailed-exitcode", cwd=repo, env=env).returncode == 0
        other = run("plan", cwd=repo, env={**env, "FP_KEY": "another-key"})
        assert "webhook.headers.Authorization: (sensitive, changed)" in other.stdout


@pytest.mark.slow
def test_refresh_that_finds_nothing_new_writes_nothing(repo: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        assert run("plan", "--out", "plan.json", cwd=repo, env=env).returncode == 0
        state_file = repo / ".reconciler" / "state.json"
        before = (state_file.read_bytes(), state_file.stat().st_mtime_ns)
        result = run("refresh", "--detailed-exitcode", cwd=repo, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (state_file.read_bytes(), state_file.stat().st_mtime_ns) == before
        applied = run("apply", "plan.json", "--auto-approve", cwd=repo, env=env)
        assert applied.returncode == 0, applied.stderr  # the saved plan is still good


@pytest.mark.slow
def test_refresh_lists_vehicles_it_could_not_read_and_never_says_no_drift(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reconciler.cli import main

    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        state = FileBackend(repo / ".reconciler" / "state.json").load()
        assert state is not None
        unreadable = sorted(state.slots)[:2]
        ids = {state.vehicles_index[vin] for vin in unreadable}
        real = httpx.HTTPTransport.handle_request

        def flaky(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/status") and request.url.path.split("/")[-2] in ids:
                return httpx.Response(404, json={"code": 40404, "message": "no status for this vehicle"})
            return real(self, request)

        monkeypatch.setattr(httpx.HTTPTransport, "handle_request", flaky)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(repo)
        code = main(["refresh", "--detailed-exitcode"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "No drift" not in out
    assert "Could not read 2 vehicle(s); drift on them is unknown:" in out
    for vin in unreadable:
        assert f"  {vin}: HTTP 404" in out


@pytest.mark.slow
def test_a_writer_whose_lock_was_taken_over_stops_and_saves_nothing(
    any_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0, latency_ms=40) as box:
        env = {**os.environ, **environment(box), "RECONCILER_API_PARALLELISM": "1"}
        project = open_workspace(any_repo / "reconciler.yaml", env)
        backend = project.backend
        monkeypatch.setattr(
            "reconciler.operations.Lease",
            lambda backend, command, stop=None: Lease(backend, command, timedelta(seconds=0.6), stop=stop),
        )
        taken: dict[str, Any] = {}

        def take_over() -> None:
            time.sleep(0.5)
            holder = backend.current_lock()
            assert holder is not None
            backend.force_unlock(holder.id)  # the other runner found the lock expired and took it
            backend.acquire_lock(LockInfo.for_this_process("apply (another runner)"))
            taken["state"] = backend_of(any_repo).history(1)

        threading.Thread(target=take_over, daemon=True).start()
        with pytest.raises(LockLostError) as raised:
            apply_changes(project, env, allow=("max_changed_vehicles",))
        assert raised.value.exit_code == 5
        assert backend_of(any_repo).history(1) == taken["state"]  # not one save after the takeover
        assert box.inspect("stats")["calls"].get("post_remote", 0) < 30  # it stopped sending


@pytest.mark.slow
def test_vins_not_in_the_fleet_are_notices_and_the_list_is_read_once_per_run(repo: Path) -> None:
    with sandbox(vehicles=26, asleep_rate=0.0) as box:  # examples name 30 vehicles, not all in this fleet
        env = environment(box)
        listed = {vehicle["vin"] for vehicle in box.inspect("vehicles")["vehicles"]}
        wanted = set(desired_programs(repo))
        absent = sorted(wanted - listed)
        assert len(absent) == 4
        first = run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        # one line for the four: the first three named, the rest counted
        assert f"Not in the fleet: 4 vehicles ({', '.join(absent[:3])} and 1 more): not in fleet " in first.stdout
        assert box.inspect("stats")["calls"]["list_vehicles"] == 1
        again = run("apply", "--auto-approve", cwd=repo, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        stats = box.inspect("stats")["calls"]
        assert stats["list_vehicles"] == 2  # once per run
        assert stats["post_remote"] == len(wanted) - len(absent)  # nothing sent for the absent ones
        plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert sorted(n["address"] for n in json_notices(plan) if n["kind"] == "not-in-fleet") == [
            f"vehicle.{vin}" for vin in absent
        ]
        assert json_changes(plan) == []
        status = run("status", cwd=repo, env=env).stdout
        assert "Not in the fleet: 4 vehicles" in status


@pytest.mark.parametrize("moment", ["after its intent", "waiting to retry a connection refused"])
def test_a_run_stopped_before_a_remote_went_out_leaves_nothing_for_recovery(tmp_path: Path, moment: str) -> None:
    """Stopped before any request of the call reached the API, the API surely did nothing: the journal says so,
    and the next writer has nothing to look up."""
    vin = "VF3UHNKF5RL000005"
    want = desired({vin: [program(1)]})
    state = State.new("f")
    state.callbacks["cb"] = CallbackRecord("cb-1", callback_spec(callback()), {}, "Running")
    state.vehicles_index[vin] = "v-1"
    FileBackend(tmp_path / "state.json").save(state, None)
    stop = threading.Event()
    attempts: list[httpx.Request] = []

    class SignalledAtIntent(FileBackend):
        def append_journal(self, entries: Any, wait: bool = True) -> None:
            super().append_journal(entries, wait)
            if moment == "after its intent" and any(entry.get("op") == "remote" for entry in entries):
                stop.set()  # the signal lands once the intent is durable, before the request is sent

    def api(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        stop.set()  # the signal lands while the client waits to try again
        raise httpx.ConnectError("connection refused")

    backend = SignalledAtIntent(tmp_path / "state.json")
    plan = make_plan(want, state, "f", PlanOptions(now=NOW))
    with FleetClient(CONFIG, "f", transport=httpx.MockTransport(api), stop=stop) as client:
        report = Applier(plan, want, state, backend, client).run()
    assert [call.vin for call in report.skipped] == [vin]
    assert len(attempts) == (0 if moment == "after its intent" else 1)
    assert backend.read_journal() == []


def test_a_call_stopped_after_an_attempt_that_may_have_arrived_is_of_unknown_outcome() -> None:
    stop = threading.Event()

    def api(request: httpx.Request) -> httpx.Response:
        stop.set()  # the signal lands while the client waits to try the PUT again
        return httpx.Response(503, json={"code": 50300, "uuid": "u", "message": "busy", "timestamp": "t"})

    with (
        FleetClient(CONFIG, "f", transport=httpx.MockTransport(api), stop=stop) as client,
        pytest.raises(RunInterrupted) as stopped,
    ):
        client.update_callback("cb-1", {"subscribe": {}})
    assert stopped.value.call_sent  # a 503 may come after the work was done
