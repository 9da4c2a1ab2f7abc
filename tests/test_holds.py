"""Holds: a vehicle out of wake-ups for the month, or whose remotes keep failing for a cause that may pass, is held
back (state.holds) until the month ends or its backoff runs out; plan sends nothing the hold covers."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reconciler.clock import isotime
from reconciler.errors import StateError
from reconciler.plan import Action, NoticeKind
from reconciler.render.text import render_text
from reconciler.state.events import fold_events
from reconciler.state.model import Hold, Outcome, SlotKind, SlotRecord, State
from reconciler.state.record import BACKOFF_CAP, next_month, record_outcome, record_remote
from tests.planning import NOW, VIN_A, VIN_B, desired, plan, program, state

PARIS = ZoneInfo("Europe/Paris")


def sent(recorded: State, vin: str, action_id: str, *programs: Any, at: datetime = NOW) -> None:
    record_remote(recorded, vin, "cb", [("Set", p, "s") for p in programs], action_id, isotime(at))


def failed(recorded: State, action_id: str, cause: str | None, at: datetime = NOW, **extra: Any) -> bool:
    return record_outcome(recorded, action_id, Outcome.FAILED, status="Failed", cause=cause, at=isotime(at), **extra)


# ---- setting and clearing holds ------------------------------------------------------------------------------


def test_out_of_wake_ups_holds_the_vehicle_until_the_next_month_in_the_fleets_time_zone() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    assert failed(recorded, "r1", "TooManyWakeUpsOverMonth", zone=PARIS)
    # 00:00 on 1 December in Paris (winter, UTC+1) is 23:00 UTC on 30 November
    assert recorded.holds == {VIN_A: Hold("2026-11-30T23:00:00Z", "TooManyWakeUpsOverMonth", 1)}


def test_a_month_ends_in_the_fleets_zone_not_in_utc() -> None:
    # 23:30 UTC on 31 October is already November in Paris: held until December, not November
    late = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert next_month(late, PARIS) == datetime(2026, 12, 1, tzinfo=PARIS)
    assert next_month(late, UTC) == datetime(2026, 11, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 15, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    # summer time: 00:00 on 1 August in Paris is 22:00 UTC on 31 July
    assert isotime(next_month(datetime(2026, 7, 10, tzinfo=UTC), PARIS)) == "2026-07-31T22:00:00Z"


def test_transient_failures_back_off_doubling_up_to_the_cap() -> None:
    recorded = state()
    waits = []
    for attempt in range(1, 10):
        at = NOW + timedelta(days=attempt)
        sent(recorded, VIN_A, f"r{attempt}", program(1), at=at)
        failed(recorded, f"r{attempt}", "VehicleBatteryChargeTooLow", at=at)
        hold = recorded.holds[VIN_A]
        assert (hold.cause, hold.attempts) == ("VehicleBatteryChargeTooLow", attempt)
        waits.append(datetime.fromisoformat(hold.until) - at)
    assert waits[:4] == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    assert waits[-1] == BACKOFF_CAP == timedelta(hours=6)


def test_success_clears_the_hold_and_the_count_starts_again() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    failed(recorded, "r1", "VehicleConnectionTimeout")
    sent(recorded, VIN_A, "r2", program(1))
    failed(recorded, "r2", "VehicleConnectionTimeout")
    assert recorded.holds[VIN_A].attempts == 2
    sent(recorded, VIN_A, "r3", program(1))
    assert record_outcome(recorded, "r3", Outcome.SUCCESS, status="Success", at=isotime(NOW))
    assert recorded.holds == {}
    sent(recorded, VIN_A, "r4", program(1))
    failed(recorded, "r4", "VehicleConnectionTimeout")
    assert recorded.holds[VIN_A].attempts == 1


def test_the_same_failure_told_twice_is_one_attempt() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    failed(recorded, "r1", "VehicleConnectionTimeout")
    # the same remote's failure again, with another status text (polling, then the notification)
    assert record_outcome(recorded, "r1", Outcome.FAILED, status="Failed2", cause="VehicleConnectionTimeout")
    assert recorded.holds[VIN_A].attempts == 1


def test_permanent_causes_and_replaced_remotes_set_no_hold() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    failed(recorded, "r1", "MissingRights")
    sent(recorded, VIN_B, "old", program(1))
    sent(recorded, VIN_B, "new", program(1, "PT8H"))  # the slot now points to the newer remote
    failed(recorded, "old", "TooManyWakeUpsOverMonth")
    assert recorded.holds == {}


def test_a_notification_folded_sets_the_hold() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    event = {
        "callbackId": "id-cb",
        "remoteActionId": "r1",
        "type": "Done",
        "status": "Failed",
        "failureCause": "TooManyWakeUpsOverMonth",
        "eventDate": "2026-11-25T09:00:00Z",
    }
    assert fold_events(recorded, [event], PARIS) == (1, [])
    assert recorded.holds[VIN_A].until == "2026-11-30T23:00:00Z"


# ---- the state document ----------------------------------------------------------------------------------------


def test_holds_round_trip_and_are_left_out_when_there_are_none() -> None:
    recorded = state()
    assert "holds" not in recorded.to_dict()
    recorded.holds[VIN_A] = Hold("2026-12-01T00:00:00Z", "TooManyWakeUpsOverMonth", 2)
    loaded = State.from_dict(json.loads(recorded.to_json()), "state")
    assert loaded.holds == recorded.holds


@pytest.mark.parametrize(
    ("hold", "message"),
    [
        ([1], "holds.V is not a mapping"),
        ({"until": "2026-12-01T00:00:00Z", "cause": "X"}, "is not {until, cause, attempts}"),
        ({"until": "2026-12-01T00:00:00Z", "cause": "X", "attempts": 0}, "attempts 0 is not a count"),
        ({"until": "2026-12-01T00:00:00Z", "cause": "X", "attempts": True}, "attempts True is not a count"),
        ({"until": "soon", "cause": "X", "attempts": 1}, "Invalid isoformat"),
        ({"until": "2026-12-01T00:00:00Z", "cause": "", "attempts": 1}, "wrong type"),
        ({"until": 3, "cause": "X", "attempts": 1}, "wrong type"),
    ],
)
def test_a_corrupt_hold_is_refused_with_its_vin(hold: Any, message: str) -> None:
    document = state().to_dict()
    document["holds"] = {"V": hold}
    with pytest.raises(StateError, match="state is corrupt") as raised:
        State.from_dict(document, "state")
    assert message in str(raised.value)


# ---- planning ------------------------------------------------------------------------------------------------


def _failed_vehicle(cause: str, until: datetime, attempts: int = 1) -> State:
    """VIN_A recorded with program(1) in slot 1 whose remote failed for `cause`, held until `until`."""
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    recorded.actions["r1"].outcome, recorded.actions["r1"].cause = Outcome.FAILED, cause
    recorded.holds[VIN_A] = Hold(isotime(until), cause, attempts)
    return recorded


def test_a_monthly_hold_holds_back_retries_and_new_changes() -> None:
    recorded = _failed_vehicle("TooManyWakeUpsOverMonth", datetime(2026, 12, 1, tzinfo=UTC))
    want = desired({VIN_A: [program(1), program(2)], VIN_B: [program(1)]})
    result = plan(want, recorded)
    assert {c.vin for c in result.changes if c.kind == "slot"} == {VIN_B}
    [held] = [n for n in result.notice_groups if n.kind == NoticeKind.HELD]
    assert (held.vins, held.slots, held.failure) == ((VIN_A,), (1, 2), "TooManyWakeUpsOverMonth")
    assert held.detail == "held until 2026-12-01T00:00 UTC (TooManyWakeUpsOverMonth)"
    lines = io.StringIO()
    render_text(result.to_dict(), lines)
    assert f"Held: {VIN_A} slots 1, 2: held until 2026-12-01T00:00 UTC (TooManyWakeUpsOverMonth)" in lines.getvalue()


def test_held_notices_give_the_time_in_the_fleets_zone() -> None:
    recorded = _failed_vehicle("TooManyWakeUpsOverMonth", datetime(2026, 12, 1, tzinfo=PARIS))
    result = plan(desired({VIN_A: [program(1)]}), recorded, zone=PARIS)
    [held] = result.notice_groups
    assert held.detail == "held until 2026-12-01T00:00 Europe/Paris (TooManyWakeUpsOverMonth)"


def test_a_backoff_hold_holds_back_the_retry_but_not_new_work() -> None:
    recorded = _failed_vehicle("VehicleBatteryChargeTooLow", NOW + timedelta(minutes=20), attempts=3)
    result = plan(desired({VIN_A: [program(1), program(2)]}), recorded)
    assert [(c.address.slot, c.action) for c in result.changes if c.kind == "slot"] == [(2, Action.CREATE)]
    [held] = result.notice_groups
    assert held.slots == (1,)
    assert held.detail == "retried after 2026-11-25T08:20 UTC (VehicleBatteryChargeTooLow, attempt 3)"


def test_a_hold_that_ended_lets_the_retry_through() -> None:
    recorded = _failed_vehicle("TooManyWakeUpsOverMonth", NOW - timedelta(seconds=1))
    result = plan(desired({VIN_A: [program(1)]}), recorded)
    assert [(c.address.slot, c.action) for c in result.changes if c.kind == "slot"] == [(1, Action.RETRY)]
    assert result.notice_groups == ()


def test_held_and_unheld_vehicles_alike_are_planned_apart() -> None:
    """The memo plans alike vehicles once: a hold must be part of what makes them alike."""
    recorded = _failed_vehicle("VehicleConnectionTimeout", NOW + timedelta(hours=1))
    record = recorded.slots[VIN_A][1]
    recorded.slots[VIN_B] = {1: SlotRecord(record.program, "cb", "r2", SlotKind.SET, "s")}
    recorded.actions["r2"] = recorded.actions["r1"].__class__(VIN_B, "cb", recorded.actions["r1"].posted_at)
    recorded.actions["r2"].outcome, recorded.actions["r2"].cause = Outcome.FAILED, "VehicleConnectionTimeout"
    base = desired({VIN_A: [program(1)]})
    shared = base.vehicles[VIN_A]  # one tuple for both, as the manifests give vehicles of one schedule
    want = dataclasses.replace(base, vehicles={VIN_A: shared, VIN_B: shared})
    result = plan(want, recorded)
    assert [c.vin for c in result.changes if c.kind == "slot"] == [VIN_B]
    assert [n.vins for n in result.notice_groups] == [(VIN_A,)]


def test_an_outcome_dated_at_the_end_of_the_calendar_holds_from_now() -> None:
    """An event's date is the sender's word: one far ahead would overflow next month's date, or hold the
    vehicle for ever; it counts from now instead."""
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    sent(recorded, VIN_B, "r2", program(1))
    events = [
        {"callbackId": "id-cb", "remoteActionId": rid, "type": "Done", "status": "Failed", "failureCause": cause}
        | {"eventDate": "9999-12-31T23:59:59Z"}
        for rid, cause in (("r1", "TooManyWakeUpsOverMonth"), ("r2", "VehicleConnectionTimeout"))
    ]
    before = datetime.now(UTC).replace(microsecond=0)
    assert fold_events(recorded, events, PARIS) == (2, [])
    assert recorded.holds[VIN_A].until == isotime(next_month(before, PARIS))
    backoff = datetime.fromisoformat(recorded.holds[VIN_B].until) - before
    assert timedelta(minutes=5) <= backoff <= timedelta(minutes=6)


def test_an_outcome_dated_before_its_remote_was_posted_counts_from_the_posting() -> None:
    recorded = state()
    sent(recorded, VIN_A, "r1", program(1))
    failed(recorded, "r1", "VehicleConnectionTimeout", at=NOW - timedelta(days=30))
    assert recorded.holds[VIN_A].until == isotime(NOW + timedelta(minutes=5))
