"""What apply, status, refresh, import and show --state print, rendered to a StringIO (the commands' own CLI
tests run them end to end)."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from reconciler.address import Address
from reconciler.apply import ApplyReport, CallResult
from reconciler.live import Drift, DriftKind
from reconciler.plan import Call, CallKind
from reconciler.render.apply import render_apply
from reconciler.render.imports import render_adopted, render_lines
from reconciler.render.json import render_json, write_json
from reconciler.render.refresh import render_refresh, render_refresh_json
from reconciler.render.state import render_state_json
from reconciler.render.status import render_status
from reconciler.state.backend import LockInfo
from reconciler.state.model import State

VIN_A, VIN_B = "VF3UHNKF5RL000005", "VF3UHNKF5RL000013"


def remote(number: int, vin: str) -> Call:
    return Call(f"c{number}", CallKind.REMOTE, "ops", vin, changes=(Address.of_slot(vin, 1),))


def report(**kwargs: Any) -> ApplyReport:
    return ApplyReport(
        results=[
            CallResult(remote(1, VIN_A), ok=True),
            CallResult(remote(2, VIN_B), ok=False, cause="offline", detail="vehicle offline"),
            CallResult(remote(3, VIN_B), ok=False, cause="offline", detail="still offline"),
            CallResult(remote(4, VIN_A), ok=False, cause="http-400", detail="bad program"),
        ],
        skipped=[remote(5, VIN_B)],
        elapsed=2.345,
        **kwargs,
    )


class Log:
    """One log that two streams write to, as a CI log gets both stdout and stderr: what reaches it, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []


class Buffered(io.StringIO):
    """A stream that reaches the log only when flushed, as stdout into a pipe does."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def flush(self) -> None:
        self.log.lines += self.getvalue().splitlines()
        self.seek(0)
        self.truncate()


class Unbuffered(io.StringIO):
    """A stream that reaches the log at once, as stderr does."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def write(self, text: str) -> int:
        self.log.lines += text.splitlines()
        return len(text)


def test_apply_summary_counts_calls_and_groups_failures_by_cause() -> None:
    out, err = io.StringIO(), io.StringIO()
    render_apply(report(), out, err)
    assert out.getvalue() == (
        "Apply: 1 call done, 3 failed, 1 skipped in 2.3 s.\n"
        "  failed (http-400): 1, e.g. c4: bad program\n"
        "  failed (offline): 2, e.g. c2: vehicle offline\n"
        "Run plan or apply again: the next plan holds only what is left.\n"
    )
    assert err.getvalue() == ""


def test_apply_summary_with_outcomes_waited_for() -> None:
    done = ApplyReport(
        results=[CallResult(remote(1, VIN_A), ok=True), CallResult(remote(2, VIN_B), ok=True)],
        outcomes=Counter({"Done": 1, "Failed": 1}),
        causes=Counter({"VehicleAsleep": 1}),
        elapsed=10.0,
    )
    out = io.StringIO()
    render_apply(done, out, io.StringIO(), waited=True)
    assert out.getvalue() == (
        "Apply: 2 calls done, 0 failed, 0 skipped in 10.0 s.\n"
        "Outcomes: 1 Done, 1 Failed.\n"
        "  Failed VehicleAsleep: 1\n"
        "Run plan or apply again: the next plan holds only what is left.\n"
    )
    quiet = io.StringIO()
    render_apply(ApplyReport(results=[CallResult(remote(1, VIN_A), ok=True)]), quiet, io.StringIO(), waited=True)
    assert quiet.getvalue() == "Apply: 1 call done, 0 failed, 0 skipped in 0.0 s.\nOutcomes: none.\n"


def test_apply_without_a_run_says_only_what_it_recovered() -> None:
    out, err = io.StringIO(), io.StringIO()
    render_apply(None, out, err, recovered=3)
    assert out.getvalue() == ""
    assert err.getvalue() == "Folded 3 journal entries left by an earlier run into the state.\n"
    render_apply(None, out, err)
    assert err.getvalue() == "Folded 3 journal entries left by an earlier run into the state.\n"


def test_apply_leftovers_go_to_stderr_between_the_summary_and_the_advice() -> None:
    log = Log()
    leftovers = [f"vehicle.{VIN_A}.slot.{n}" for n in range(1, 5)] * 3
    out = Buffered(log)
    render_apply(report(), out, Unbuffered(log), leftovers=leftovers)
    out.flush()
    assert log.lines[0] == "Apply: 1 call done, 3 failed, 1 skipped in 2.3 s."
    assert log.lines[3].startswith("Convergence check: a new plan still changes 12 addresses no call failed for (")
    assert log.lines[3].count("vehicle.") == 10  # the first ten named
    assert log.lines[3].endswith("). This is a reconciler bug; please report it.")
    assert log.lines[4:] == ["Run plan or apply again: the next plan holds only what is left."]


STATUS: dict[str, Any] = {
    "vehicles": 1200,
    "converged": 1100,
    "in_flight": 40,
    "to_change": 50,
    "drifted": 1,
    "failed": 10,
    "not_in_fleet": 2,
    "failed_by_cause": {"VehicleAsleep": 1, "VehicleOffline": 9},
    "oldest_pending": "2024-05-01T07:00:00Z",
    "last_event": "2024-05-01T07:05:00Z",
    "unmatched_events": 1,
    "other_callback_events": 2,
    "malformed_events": 3,
    "held": 3,
    "fleet_health": {
        "vehicles": 1200,
        "health": {"Healthy": 1090, "Progressing": 40, "Degraded": 10, "Held": 3, "Unknown": 57},
        "sync": {"Synced": 1140, "OutOfSync": 60},
        "groups": {
            "paris": {
                "vehicles": 200,
                "health": {"Healthy": 197, "Progressing": 0, "Degraded": 0, "Held": 3, "Unknown": 0},
                "sync": {"Synced": 200, "OutOfSync": 0},
            }
        },
        "held": [
            {"vin": VIN_A, "until": "2024-06-01T00:00:00Z", "cause": "TooManyWakeUpsOverMonth", "attempts": 1},
            {"vin": VIN_B, "until": "2024-05-01T07:20:00Z", "cause": "VehicleBatteryChargeTooLow", "attempts": 3},
        ],
    },
}


def test_status_text_says_every_figure() -> None:
    out = io.StringIO()
    render_status(STATUS, out)
    assert out.getvalue() == (
        "Vehicles: 1,200: 1,100 converged, 40 in flight, 50 to change (1 drifted), 10 failed, 3 held back.\n"
        "Health: 1,090 Healthy, 40 Progressing, 10 Degraded, 3 Held, 57 Unknown. Sync: 1,140 Synced, 60 OutOfSync.\n"
        "  group paris (200 vehicles): 197 Healthy, 3 Held; 200 Synced\n"
        f"Held: {VIN_A} until 2024-06-01T00:00:00Z (TooManyWakeUpsOverMonth, 1 failure)\n"
        f"Held: {VIN_B} until 2024-05-01T07:20:00Z (VehicleBatteryChargeTooLow, 3 failures)\n"
        "Not in the fleet: 2 vehicles the manifests name (run apply to recheck)\n"
        "  failed VehicleAsleep: 1 slot\n"
        "  failed VehicleOffline: 9 slots\n"
        "Oldest remote in flight: posted 2024-05-01T07:00:00Z\n"
        "Last outcome received: 2024-05-01T07:05:00Z\n"
        "Events for remote actions reconciler did not send: 1 event kept\n"
        "Events from another callback than their remote action's: 2 events ignored\n"
        "Malformed events in the events file: 3 events ignored\n"
    )


def test_status_text_of_a_quiet_fleet() -> None:
    quiet = {
        **STATUS,
        "not_in_fleet": 0,
        "failed_by_cause": {},
        "oldest_pending": None,
        "last_event": None,
        "unmatched_events": 0,
        "other_callback_events": 0,
        "malformed_events": 0,
        "held": 0,
        "fleet_health": {**STATUS["fleet_health"], "groups": {}, "held": []},
    }
    out = io.StringIO()
    render_status(quiet, out)
    assert out.getvalue().splitlines()[0].endswith(" 10 failed.")
    assert out.getvalue().splitlines()[2:] == ["Nothing in flight.", "Last outcome received: none yet"]


DRIFT = [
    Drift(DriftKind.CHANGED, Address.of_slot(VIN_A, 1), "holds 08:00 Mon-Fri, recorded 07:30 Mon-Fri"),
    Drift(DriftKind.DELETED, Address.of_slot(VIN_A, 2), "gone"),
    Drift(DriftKind.CHANGED, Address.of_slot(VIN_B, 1), "holds 09:00 Sat"),
    Drift(DriftKind.CALLBACK_STATUS, Address.of_callback("ops"), "Paused, recorded Running"),
]


def test_refresh_text_lists_drift_and_counts_it_by_class() -> None:
    out = io.StringIO()
    render_refresh(DRIFT, {}, out)
    assert out.getvalue() == (
        f"  changed          vehicle.{VIN_A}.slot.1: holds 08:00 Mon-Fri, recorded 07:30 Mon-Fri\n"
        f"  deleted          vehicle.{VIN_A}.slot.2: gone\n"
        f"  changed          vehicle.{VIN_B}.slot.1: holds 09:00 Sat\n"
        "  callback-status  callback.ops: Paused, recorded Running\n"
        "Drift: 1 callback-status, 2 changed, 1 deleted. The next plan repairs it.\n"
    )


def test_refresh_never_says_no_drift_when_vehicles_went_unread() -> None:
    unread = {f"VIN{n:02d}": f"error {n}" for n in range(12)}
    out = io.StringIO()
    render_refresh([], unread, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Could not read 12 vehicle(s); drift on them is unknown:"
    assert lines[1:11] == [f"  VIN{n:02d}: error {n}" for n in range(10)]
    assert lines[11:] == ["  ... and 2 more (--format json lists them all)"]
    assert "No drift" not in out.getvalue()
    clean = io.StringIO()
    render_refresh([], {}, clean)
    assert clean.getvalue() == "No drift: the fleet holds what was recorded.\n"


def test_refresh_json_lists_everything_with_the_result() -> None:
    unread = {f"VIN{n:02d}": f"error {n}" for n in range(12)}
    out = io.StringIO()
    render_refresh_json(DRIFT, unread, out, result="partial")
    found = json.loads(out.getvalue())
    assert found["result"] == "partial"
    assert found["drift"][0] == {
        "kind": "changed",
        "address": f"vehicle.{VIN_A}.slot.1",
        "detail": "holds 08:00 Mon-Fri, recorded 07:30 Mon-Fri",
    }
    assert [d["kind"] for d in found["drift"]] == ["changed", "deleted", "changed", "callback-status"]
    assert found["unread"] == [{"vin": vin, "error": error} for vin, error in sorted(unread.items())]


def test_import_lines_then_the_count() -> None:
    out = io.StringIO()
    render_adopted(["callback.ops: adopted cb-1", f"vehicle.{VIN_A}: 2 slots recorded"], out)
    assert out.getvalue() == (
        f"callback.ops: adopted cb-1\nvehicle.{VIN_A}: 2 slots recorded\n"
        "Imported 2 items; run plan to see what still differs.\n"
    )
    one = io.StringIO()
    render_adopted(["callback.ops: adopted"], one)
    assert one.getvalue().endswith("Imported 1 item; run plan to see what still differs.\n")
    written = io.StringIO()
    render_lines(["Wrote manifests/callbacks.yaml", "Set WEBHOOK_AUTH"], written)
    assert written.getvalue() == "Wrote manifests/callbacks.yaml\nSet WEBHOOK_AUTH\n"


def test_every_json_document_is_sorted_indented_and_carries_its_result() -> None:
    out = io.StringIO()
    write_json({"b": 1, "a": {"d": "é", "c": None}}, out, result="changes")
    assert out.getvalue() == (
        '{\n  "a": {\n    "c": null,\n    "d": "\\u00e9"\n  },\n  "b": 1,\n  "result": "changes"\n}\n'
    )
    record = io.StringIO()
    write_json({"address": "callback.ops"}, record, result="ok")
    assert json.loads(record.getvalue()) == {"address": "callback.ops", "result": "ok"}
    plan = io.StringIO()
    render_json({"fleet": "flotte-é"}, plan, result="ok")
    assert plan.getvalue() == '{\n  "fleet": "flotte-é",\n  "result": "ok"\n}\n'


def test_state_json_names_the_lock_and_its_holder() -> None:
    lock = LockInfo.for_this_process("apply")
    out = io.StringIO()
    render_state_json(State.new("f1"), lock, out)
    shown = json.loads(out.getvalue())
    assert shown["result"] == "ok"
    assert shown["lock"] == {
        "id": lock.id,
        "holder": lock.holder,
        "host": lock.host,
        "pid": lock.pid,
        "command": "apply",
        "started": lock.started,
        "expires": lock.expires,
    }
    assert shown["state"]["fleet"] == "f1"
    assert shown["summary"]["vehicles"] == 0
    empty = io.StringIO()
    render_state_json(None, None, empty)
    assert json.loads(empty.getvalue()) == {"result": "ok", "state": None, "summary": None, "lock": None}
