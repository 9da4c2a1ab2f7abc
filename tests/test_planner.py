"""Every planner rule, on constructed desired models and states."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.envsubst import SENSITIVE_CHANGED
from reconciler.errors import ExitCode, GuardError, UsageError
from reconciler.plan import Action, CallKind, FieldDiff, Limit
from reconciler.selectors import Selector
from reconciler.state.model import SlotRecord
from tests.planning import VIN_A, VIN_B, VIN_C, action, callback, desired, plan, program, state

P1 = program(1)


def settled(outcome: str | None, **kwargs: object) -> object:
    return state({VIN_A: {1: SlotRecord(P1, "cb", "a1", "Set", "s")}}, {"a1": action(VIN_A, outcome, **kwargs)})  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome", ["Success", "AlreadyDone"])
def test_equal_and_done_is_nothing(outcome: str) -> None:
    result = plan(desired({VIN_A: [P1]}), settled(outcome))  # type: ignore[arg-type]
    assert result.changes == ()
    assert result.notices == ()
    assert result.summary().line(result.serial) == "No changes: the manifests match the recorded state (serial 3)."


def test_observed_on_vehicle_is_nothing() -> None:
    result = plan(desired({VIN_A: [P1]}), state({VIN_A: {1: SlotRecord(P1, "cb", None, "Set", "s")}}))
    assert result.changes == ()


def test_pending_young_is_in_flight() -> None:
    result = plan(desired({VIN_A: [P1]}), settled("Pending", status="SentToVehicle"))  # type: ignore[arg-type]
    assert result.changes == ()
    assert [(str(n.address), n.kind, n.detail) for n in result.notices] == [
        (f"vehicle.{VIN_A}.slot.1", "in-flight", "Pending since 2026-11-25T07:55:00Z, SentToVehicle")
    ]


def test_pending_past_timeout_is_retried() -> None:
    result = plan(desired({VIN_A: [P1]}), settled("Pending", age=timedelta(minutes=45)))  # type: ignore[arg-type]
    (change,) = result.changes
    assert change.action is Action.RETRY
    assert str(change.cause) == "Pending for 45m, past the 30m timeout"
    assert result.calls[0].programs == (("Set", P1),)


def test_pending_timeout_is_a_setting() -> None:
    young = plan(desired({VIN_A: [P1]}), settled("Pending", age=timedelta(minutes=45)), pending_timeout=3600)  # type: ignore[arg-type]
    assert young.changes == ()


@pytest.mark.parametrize(
    "cause",
    [
        "VehicleConnectionTimeout",
        "TooManyRequestInShortTime",
        "SameActionInProgress",
        "NotPossibleDueToVehicleBatteryLevel",
        "TooManyWakeUpsOverMonth",
        None,
    ],
)
def test_transient_failure_is_retried(cause: str | None) -> None:
    result = plan(desired({VIN_A: [P1]}), settled("Failed", cause=cause))  # type: ignore[arg-type]
    (change,) = result.changes
    assert change.action is Action.RETRY
    assert str(change.cause) == f"Failed: {cause or 'unknown cause'}"


@pytest.mark.parametrize("cause", ["MissingRights", "WrongCommand", "CanceledByDriver"])
def test_permanent_failure_is_shown_and_retried_only_on_request(cause: str) -> None:
    shown = plan(desired({VIN_A: [P1]}), settled("Failed", cause=cause))  # type: ignore[arg-type]
    assert shown.changes == ()
    assert [(n.kind, n.detail) for n in shown.notices] == [("failed", f"{cause} (retried only with --retry-failed)")]
    retried = plan(desired({VIN_A: [P1]}), settled("Failed", cause=cause), retry_failed=True)  # type: ignore[arg-type]
    assert [(c.action, str(c.cause)) for c in retried.changes] == [(Action.RETRY, f"Failed: {cause}")]


def test_unknown_action_is_retried() -> None:
    recorded = state({VIN_A: {1: SlotRecord(P1, "cb", "lost", "Set", "s")}})
    assert [(c.action, str(c.cause)) for c in plan(desired({VIN_A: [P1]}), recorded).changes] == [
        (Action.RETRY, "outcome unknown")
    ]


def test_new_changed_and_removed_slots_go_in_one_call() -> None:
    recorded = state(
        {
            VIN_A: {
                1: SlotRecord(P1, "cb", "a1", "Set", "s"),
                2: SlotRecord(program(2, "PT18H"), "cb", "a1", "Set", "s"),
            }
        },
        {"a1": action(VIN_A, "Success")},
    )
    want = desired({VIN_A: [program(1, "PT7H15M"), program(3, "PT9H", ("Sat", "Sun"))]})
    result = plan(want, recorded)
    assert [(str(c.address), c.action) for c in result.changes] == [
        (f"vehicle.{VIN_A}.slot.1", Action.UPDATE),
        (f"vehicle.{VIN_A}.slot.2", Action.DELETE),
        (f"vehicle.{VIN_A}.slot.3", Action.CREATE),
    ]
    assert result.changes[0].diffs == (FieldDiff("start", "PT7H30M", "PT7H15M"),)
    (call,) = result.calls
    assert call.kind is CallKind.REMOTE
    assert call.id == f"vehicle.{VIN_A}.cb"
    assert call.programs == (
        ("Set", program(1, "PT7H15M")),
        ("Delete", program(2, "PT18H")),
        ("Set", program(3, "PT9H", ("Sat", "Sun"))),
    )
    assert all(c.call == call.id for c in result.changes)
    assert result.summary().line(result.serial) == (
        "Plan: 0 callbacks to create, 0 to update, 0 to delete; 1 vehicle to update (2 slots set, 1 deleted) in 1 call."
    )


def test_moving_a_slot_to_another_callback_is_an_update_through_the_new_one() -> None:
    recorded = state(
        {VIN_A: {1: SlotRecord(P1, "old", "a1", "Set", "s")}},
        {"a1": action(VIN_A, "Success")},
        callbacks=[callback("cb"), callback("old")],
    )
    want = desired({VIN_A: [P1]}, callbacks=[callback("cb"), callback("old")])
    (change,) = plan(want, recorded).changes
    assert change.diffs == (FieldDiff("callback", "old", "cb"),)
    assert change.call == f"vehicle.{VIN_A}.cb"


def test_a_new_schedule_name_alone_calls_nothing() -> None:
    result = plan(desired({VIN_A: [P1]}, schedule="renamed"), settled("Success"))  # type: ignore[arg-type]
    assert result.changes == ()


def test_recorded_deletes_follow_their_outcome() -> None:
    def deleting(outcome: str, **kwargs: object) -> object:
        return state(
            {VIN_A: {2: SlotRecord(program(2), "cb", "d1", "Delete", "s")}}, {"d1": action(VIN_A, outcome, **kwargs)}
        )  # type: ignore[arg-type]

    assert plan(desired({}), deleting("Success")).changes == ()  # type: ignore[arg-type]
    pending = plan(desired({}), deleting("Pending"))  # type: ignore[arg-type]
    assert [n.kind for n in pending.notices] == ["in-flight"]
    failed = plan(desired({}), deleting("Failed", cause="VehicleConnectionTimeout"))  # type: ignore[arg-type]
    (change,) = failed.changes
    assert (change.action, change.after, str(change.cause)) == (Action.RETRY, None, "Failed: VehicleConnectionTimeout")
    assert failed.calls[0].programs == (("Delete", program(2)),)
    wanted_again = plan(desired({VIN_A: [program(2)]}), deleting("Pending"))  # type: ignore[arg-type]
    assert [c.action for c in wanted_again.changes] == [Action.CREATE]


def test_callbacks_created_updated_paused_and_deleted_in_call_order() -> None:
    recorded = state(
        {VIN_B: {1: SlotRecord(P1, "gone", "a1", "Set", "s")}},
        {"a1": action(VIN_B, "Success")},
        callbacks=[callback("cb", secret="old-secret"), callback("gone"), callback("paused")],
    )
    want = desired(
        {VIN_A: [P1]},
        callbacks=[
            callback("cb", secret="new-secret", retry_policy={"policy": "Bounded", "retryNumber": 3, "retryDelay": 60}),
            callback("fresh"),
            callback("paused", status="Paused"),
        ],
    )
    result = plan(want, recorded)
    assert [(str(c.address), c.action) for c in result.changes] == [
        ("callback.cb", Action.UPDATE),
        ("callback.fresh", Action.CREATE),
        ("callback.gone", Action.DELETE),
        ("callback.paused", Action.STATUS),
        (f"vehicle.{VIN_A}.slot.1", Action.CREATE),
        (f"vehicle.{VIN_B}.slot.1", Action.DELETE),
    ]
    update = result.changes[0]
    assert update.diffs == (
        FieldDiff("retryPolicy.policy", None, "Bounded"),
        FieldDiff("retryPolicy.retryDelay", None, 60),
        FieldDiff("retryPolicy.retryNumber", None, 3),
        FieldDiff("webhook.headers.Authorization", "(sensitive)", SENSITIVE_CHANGED),
    )
    assert update.sensitive == ("webhook.headers.Authorization",)
    assert [c.kind for c in result.calls] == [
        CallKind.UPDATE_CALLBACK,
        CallKind.CREATE_CALLBACK,
        CallKind.CALLBACK_STATUS,
        CallKind.REMOTE,
        CallKind.REMOTE,
        CallKind.DELETE_CALLBACK,
    ]
    assert result.summary().line(result.serial) == (
        "Plan: 1 callback to create, 2 to update, 1 to delete; 2 vehicles to update (1 slot set, 1 deleted) in 2 calls."
    )


def test_unchanged_secret_is_not_a_change() -> None:
    recorded = state(callbacks=[callback("cb", secret="same")])
    assert plan(desired(callbacks=[callback("cb", secret="same")]), recorded).changes == ()


def test_selectors_keep_matching_changes_and_count_the_rest() -> None:
    want = desired(
        {VIN_A: [P1], VIN_B: [P1], VIN_C: [P1]}, callbacks=[callback("cb")], groups={"north": (VIN_A, VIN_B)}
    )
    everything = plan(want, state(callbacks=[]))
    assert len(everything.changes) == 4
    by_vin = plan(want, state(callbacks=[]), targets=(Selector.parse("vin:" + VIN_C.lower()),))
    assert [str(c.address) for c in by_vin.changes] == [
        "callback.cb",
        f"vehicle.{VIN_C}.slot.1",
    ]  # the callback it needs
    assert by_vin.left_out == 2
    by_group = plan(
        want, state(callbacks=[]), targets=(Selector.parse("group:north"),), excludes=(Selector.parse(f"vin:{VIN_B}"),)
    )
    assert [str(c.address) for c in by_group.changes] == ["callback.cb", f"vehicle.{VIN_A}.slot.1"]
    by_schedule = plan(want, state(), targets=(Selector.parse("schedule:s"),))
    assert len(by_schedule.changes) == 3
    only_callbacks = plan(want, state(callbacks=[]), targets=(Selector.parse("callback:cb"),))
    assert len(only_callbacks.changes) == 4  # every slot goes through cb
    excluded = plan(want, state(), excludes=(Selector.parse("callback:cb"),))
    assert excluded.changes == ()
    assert excluded.options == {"targets": [], "excludes": ["callback:cb"], "retry_failed": False, "takeover": False}


@pytest.mark.parametrize("text", ["vim:X", "group:", "nothing", "schedule"])
def test_bad_selectors_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        Selector.parse(text)
    assert raised.value.exit_code is ExitCode.USAGE


def test_unknown_group_in_selector() -> None:
    with pytest.raises(UsageError, match="unknown group 'south'"):
        plan(desired({VIN_A: [P1]}), None, targets=(Selector.parse("group:south"),))


@pytest.mark.parametrize("option", ["targets", "excludes"])
def test_a_vin_nothing_knows_is_a_usage_error(option: str) -> None:
    selector = (Selector.parse(f"vin:{VIN_C}"),)
    with pytest.raises(UsageError) as raised:
        plan(desired({VIN_A: [P1]}), state({VIN_B: {1: SlotRecord(P1, "cb", "a1", "Set", "s")}}), **{option: selector})
    assert str(raised.value) == (
        f"unknown vehicle '{VIN_C}' in selector vin:{VIN_C}: no schedule selects it and the state records nothing for it"
    )
    assert raised.value.exit_code is ExitCode.USAGE


def test_selectors_known_only_to_the_state_still_select() -> None:
    """A vehicle, schedule or callback removed from the manifests is still recorded: its deletion can be targeted."""
    recorded = state({VIN_B: {1: SlotRecord(P1, "cb", "a1", "Set", "old")}}, {"a1": action(VIN_B, "Success")})
    want = desired({VIN_A: [P1]}, callbacks=[callback("new")], via="new")
    for text in (f"vin:{VIN_B}", "schedule:old", "callback:cb"):
        targeted = plan(want, recorded, targets=(Selector.parse(text),))
        assert f"vehicle.{VIN_B}.slot.1" in [str(c.address) for c in targeted.changes], text
    for text in ("schedule:gone", "callback:gone"):
        with pytest.raises(UsageError, match=f"unknown {text.split(':')[0]} 'gone'"):
            plan(want, recorded, targets=(Selector.parse(text),))


def _fleet(n: int) -> tuple[object, object]:
    vins = [f"VF3UHNKF5RL{i:06d}" for i in range(n)]
    recorded = state(
        {vin: {s: SlotRecord(program(s), "cb", "a", "Set", "s") for s in (1, 2)} for vin in vins},
        {"a": action(vins[0], "Success")},
    )
    return vins, recorded


@pytest.mark.parametrize(("deleted", "exceeded"), [(5, False), (6, True)])
def test_max_deleted_slots_at_n_and_n_plus_one(deleted: int, exceeded: bool) -> None:
    vins, recorded = _fleet(10)  # 20 managed slots; 25% allows 5
    keep = {vin: [program(1), program(2)] for vin in vins}
    for vin in vins[:deleted]:
        keep[vin] = [program(1)]
    result = plan(desired(keep), recorded, guards={"max_deleted_slots": Limit.parse("25%")})  # type: ignore[arg-type]
    (guard,) = result.guards
    assert (guard.count, guard.total, guard.maximum, guard.exceeded) == (deleted, 20, 5.0, exceeded)
    if exceeded:
        with pytest.raises(GuardError) as raised:
            result.check_guards()
        assert raised.value.exit_code is ExitCode.GUARD
        assert "max_deleted_slots: 6 slots to delete > 25% (at most 5 of 20)" in str(raised.value)
        result.check_guards(allow=["max_deleted_slots"])
    else:
        result.check_guards()


@pytest.mark.parametrize(("changed", "exceeded"), [(3, False), (4, True)])
def test_max_changed_vehicles_at_n_and_n_plus_one(changed: int, exceeded: bool) -> None:
    vins, recorded = _fleet(10)
    want = {vin: [program(1), program(2, "PT20H" if index < changed else "PT7H30M")] for index, vin in enumerate(vins)}
    want["VW0NEWVEHICLE0001"] = [program(1)]  # a new vehicle is not a risk to existing ones
    result = plan(desired(want), recorded, guards={"max_changed_vehicles": Limit.parse(3)})  # type: ignore[arg-type]
    (guard,) = result.guards
    assert (guard.count, guard.total, guard.exceeded) == (changed, 10, exceeded)
    assert result.summary().vehicles == changed + 1


@pytest.mark.parametrize(
    ("changed", "text"),
    [
        (5, "max_changed_vehicles: 5 recorded vehicles to change <= 50% (at most 5 of 11)"),
        (6, "max_changed_vehicles: 6 recorded vehicles to change > 50% (at most 5 of 11)"),
        (1, "max_changed_vehicles: 1 recorded vehicle to change <= 50% (at most 5 of 11)"),
    ],
)
def test_guard_text_shows_the_whole_number_allowed(changed: int, text: str) -> None:
    vins, recorded = _fleet(11)  # 50% of 11 is 5.5: five vehicles may change, six may not
    want = {vin: [program(1), program(2, "PT20H" if index < changed else "PT7H30M")] for index, vin in enumerate(vins)}
    result = plan(desired(want), recorded, guards={"max_changed_vehicles": Limit.parse("50%")})  # type: ignore[arg-type]
    (guard,) = result.guards
    assert (guard.maximum, guard.exceeded) == (5, changed > 5)
    assert guard.describe() == text


@pytest.mark.parametrize(("changed", "exceeded"), [(323, False), (324, True)])
def test_guard_percentage_is_exact_at_the_boundary(changed: int, exceeded: bool) -> None:
    vins, recorded = _fleet(1000)  # 32.3% of 1,000 is 323 exactly; in floating point it is 322.99999999999994
    want = {vin: [program(1), program(2, "PT20H" if index < changed else "PT7H30M")] for index, vin in enumerate(vins)}
    result = plan(desired(want), recorded, guards={"max_changed_vehicles": Limit.parse("32.3%")})  # type: ignore[arg-type]
    (guard,) = result.guards
    assert (guard.maximum, guard.exceeded) == (323, exceeded)
    relation = ">" if exceeded else "<="
    assert (
        guard.describe()
        == f"max_changed_vehicles: {changed} recorded vehicles to change {relation} 32.3% (at most 323 of 1,000)"
    )
