"""The journal folded back into a state; unknown callback creates resolved by their label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from reconciler.address import Address
from reconciler.api.client import ApiConfig, FleetClient
from reconciler.apply import ApplyReport, CallResult, changes_left
from reconciler.model import Program
from reconciler.plan import Action, Call, CallKind, Cause, CauseKind, ChangeGroup, Plan, SlotChange, SlotView
from reconciler.recovery import recover
from reconciler.render.progress import StreamProgress
from reconciler.state.file import FileBackend
from reconciler.state.journal import fold, intent, result
from reconciler.state.model import State
from tests.planning import program


def remote_intent(vin: str = "VIN1") -> dict[str, Any]:
    call = Call(
        f"vehicle.{vin}.cb",
        CallKind.REMOTE,
        "cb",
        vin,
        (("Set", program(1)), ("Delete", program(2))),
        (Address.of_slot(vin, 1), Address.of_slot(vin, 2)),
    )
    return intent("remote", call=call.to_dict(), views={f"vehicle.{vin}.slot.1": {"schedule": "s"}})


def test_fold_records_accepted_calls_and_returns_unknown_ones() -> None:
    state = State.new("f")
    accepted = remote_intent("VIN1")
    lost = remote_intent("VIN2")
    refused = intent("update-callback", name="cb", spec={}, secrets={}, status="Running")
    created = intent(
        "create-callback",
        name="cb",
        spec={"webhook": {}},
        secrets={"webhook.target": "hmac-sha256:x"},
        status="Running",
    )
    entries = [
        created,
        result(created, True, callback_id="cb-1"),
        accepted,
        result(accepted, True, action_id="r-1", posted_at="2026-11-25T08:00:00Z"),
        lost,
        refused,
        result(refused, False, error="HTTP 400"),
    ]
    unknown = fold(state, entries)
    assert [entry["id"] for entry in unknown] == [lost["id"]]
    assert state.callbacks["cb"].id == "cb-1"
    assert state.callbacks["cb"].secrets == {"webhook.target": "hmac-sha256:x"}
    slots = state.slots["VIN1"]
    assert (slots[1].kind, slots[1].action, slots[1].schedule) == ("Set", "r-1", "s")
    assert (slots[2].kind, slots[2].program) == ("Delete", program(2))
    assert state.actions["r-1"].outcome == "Pending"
    assert "VIN2" not in state.slots
    # folding twice changes nothing more
    before = state.to_dict()
    fold(state, entries)
    assert state.to_dict() == before


def test_recover_adopts_a_callback_created_by_a_run_whose_answer_was_lost(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "state.json")
    created = intent("create-callback", name="fleet-ops", spec={"webhook": {}}, secrets={}, status="Running")
    backend.append_journal([created])  # killed before the answer was journalled

    def api(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET" and request.url.path.endswith("/remote/callbacks")
        return httpx.Response(
            200,
            json={
                "_links": {},
                "_embedded": {
                    "callbacks": [
                        {"id": "other", "subscribe": {"label": "something-else"}},
                        {"id": "cb-9", "subscribe": {"label": "fleet-ops"}},
                    ]
                },
            },
        )

    state = State.new("f")
    with FleetClient(
        ApiConfig("https://api.example/v3", "c", "u", "p"), "f", transport=httpx.MockTransport(api)
    ) as client:
        assert recover(state, backend, client) == 1
    assert state.callbacks["fleet-ops"].id == "cb-9"
    without_api = State.new("f")
    assert recover(without_api, backend, None) == 1
    assert without_api.callbacks == {}


def test_changes_left_names_only_what_no_failure_explains() -> None:
    failed_call = Call("vehicle.B.cb", CallKind.REMOTE, "cb", "B", (), (Address.parse("vehicle.B.slot.1"),))
    report = ApplyReport(results=[CallResult(failed_call, False, "HTTP 400")])
    after = SlotView(Program(1, "PT1H0M", ("Mon",)), "cb", "s")
    retry = SlotChange(1, Action.RETRY, after, after, Cause(CauseKind.FAILED, "VehicleConnectionTimeout"))
    plan = Plan(
        "f",
        None,
        None,
        "m",
        groups=(
            ChangeGroup(("A", "B"), (SlotChange(1, Action.CREATE, None, after),)),
            ChangeGroup(("C",), (retry,)),
        ),
    )
    assert changes_left(plan, report) == ["vehicle.A.slot.1"]


def test_progress_on_a_terminal_and_in_a_ci_log(monkeypatch: Any) -> None:
    import io

    clock = [0.0]
    monkeypatch.setattr("reconciler.render.progress.time.monotonic", lambda: clock[0])
    tty, log = io.StringIO(), io.StringIO()
    for out, is_tty in ((tty, True), (log, False)):
        progress = StreamProgress(out, is_tty)
        progress.start(100)
        for done in range(1, 101):
            clock[0] += 0.1
            progress.advance(done, done // 10)
        progress.finish()
    assert tty.getvalue().count("\r\x1b[K") > 50
    assert tty.getvalue().endswith("applying: 100/100 calls, 10 failed, 10/s\n")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "applying: 51/100 calls, 5 failed, 10/s"  # once 5 s have passed
    assert len(lines) == 2  # and the last, at the end
    assert lines[-1] == "applying: 100/100 calls, 10 failed, 10/s"
