"""The planner: a pure function (Desired, State, options) -> Plan. No I/O, deterministic order.

Per slot, with the recorded outcome of the remote that last touched it (DESIGN.md 5):
- desired equals recorded and the outcome is Success or AlreadyDone (or the slot was observed on the vehicle):
  nothing to do;
- equal, still Pending and younger than the pending timeout: nothing to do, shown as in flight;
- equal, but Failed with a transient cause, Pending past the timeout, or of unknown outcome: retry;
- Failed with a permanent cause: shown as failed, retried only with retry_failed;
- different or new: set; recorded but no longer desired: delete (the Delete entry carries the recorded program).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.address import Address
from reconciler.callbacks import callback_spec, fingerprints
from reconciler.clock import parse_time
from reconciler.diff import diff_values
from reconciler.envsubst import SENSITIVE, SENSITIVE_CHANGED
from reconciler.model import Desired, Program, SlotAssignment
from reconciler.plan import (
    Action,
    Call,
    CallKind,
    Cause,
    CauseKind,
    Change,
    FieldDiff,
    GuardCheck,
    Limit,
    Notice,
    NoticeKind,
    Plan,
)
from reconciler.selectors import Selector, check_selectors, select
from reconciler.state.model import DONE, ActionRecord, Outcome, SlotKind, SlotRecord, State

# causes that retrying will not fix; every other failure cause is treated as transient
PERMANENT_CAUSES = frozenset(
    {
        "MissingRights",
        "WrongCommand",
        "NotPossibleDueToVehiclePrivacyLevel",
        "NotPossibleDueToVehicleStolenState",
        "CanceledByDriver",
    }
)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    now: datetime
    pending_timeout: float = 1800.0
    retry_failed: bool = False
    targets: tuple[Selector, ...] = ()
    excludes: tuple[Selector, ...] = ()
    guards: Mapping[str, Limit] = field(default_factory=dict)
    fingerprint_key: str | None = None
    takeover: bool = False  # replace programs reconciler did not set, whatever the schedules say


def make_plan(desired: Desired, state: State | None, fleet: str, options: PlanOptions) -> Plan:
    """Everything needed to move the recorded state to the desired one, as changes and calls."""
    check_selectors(desired, state, options.targets, options.excludes)
    recorded = state or State(lineage="", serial=0, fleet=fleet, salt="")
    changes = _callback_changes(desired, recorded, options)
    notices: list[Notice] = []
    slot_changes: list[Change] = []
    for vin in sorted(desired.vehicles.keys() | recorded.slots.keys()):
        if vin in recorded.not_in_fleet and vin in desired.vehicles:
            notices.append(
                Notice(
                    Address.of_vehicle(vin),
                    NoticeKind.NOT_IN_FLEET,
                    f"not in fleet {fleet}'s vehicle list (read {recorded.not_in_fleet[vin]}); "
                    "planned once the list holds it",
                )
            )
            continue
        _vehicle(
            vin,
            desired.vehicles.get(vin, ()),
            recorded.slots.get(vin, {}),
            recorded,
            desired,
            options,
            slot_changes,
            notices,
        )
    everything = changes + slot_changes
    kept = select(everything, desired, options.targets, options.excludes)
    calls, kept = _calls(kept)
    return Plan(
        fleet=fleet,
        lineage=state.lineage if state and state.serial else None,
        serial=state.serial if state and state.serial else None,
        manifests=desired.digest,
        changes=tuple(kept),
        calls=tuple(calls),
        notices=tuple(notices),
        guards=_guards(kept, recorded, options.guards),
        options={
            "targets": [str(s) for s in options.targets],
            "excludes": [str(s) for s in options.excludes],
            "retry_failed": options.retry_failed,
        },
        left_out=len(everything) - len(kept),
    )


# ---- callbacks ---------------------------------------------------------------------------------------------


def _callback_changes(desired: Desired, state: State, options: PlanOptions) -> list[Change]:
    key = options.fingerprint_key or state.salt
    changes = []
    for name in sorted(desired.callbacks.keys() | state.callbacks.keys()):
        wanted, record = desired.callbacks.get(name), state.callbacks.get(name)
        address = Address.of_callback(name)
        if wanted is None:
            assert record is not None
            before = {**record.spec, "status": record.status}
            changes.append(Change(address, Action.DELETE, before, None, (), tuple(sorted(record.secrets))))
            continue
        spec = callback_spec(wanted)
        secrets = fingerprints(wanted, key) if record is not None else {}
        sensitive = tuple(sorted(path for path, value in _masked(spec)))
        after = {**spec, "status": wanted.status}
        if record is None:
            changes.append(Change(address, Action.CREATE, None, after, diff_values(None, after), sensitive))
            continue
        before = {**record.spec, "status": record.status}
        diffs = list(diff_values(record.spec, spec))
        for path in sorted(record.secrets.keys() | secrets.keys()):
            if record.secrets.get(path) != secrets.get(path) and not any(d.path == path for d in diffs):
                diffs.append(FieldDiff(path, SENSITIVE if path in record.secrets else None, SENSITIVE_CHANGED))
        diffs = [FieldDiff(d.path, d.before, SENSITIVE_CHANGED) if d.after == SENSITIVE else d for d in diffs]
        if diffs:
            changes.append(
                Change(address, Action.UPDATE, before, after, tuple(sorted(diffs, key=lambda d: d.path)), sensitive)
            )
        if record.status != wanted.status:
            status_diff = (FieldDiff("status", record.status, wanted.status),)
            changes.append(
                Change(address, Action.STATUS, {"status": record.status}, {"status": wanted.status}, status_diff)
            )
    return changes


def _masked(spec: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in spec.items():
        if isinstance(value, Mapping):
            yield from _masked(value, f"{prefix}{key}.")
        elif value == SENSITIVE:
            yield f"{prefix}{key}", value


# ---- vehicles ----------------------------------------------------------------------------------------------

_VIEWS: dict[tuple[Program, str, str], dict[str, Any]] = {}


def slot_view(program: Program, callback: str, schedule: str) -> dict[str, Any]:
    """How a slot reads in a plan: what the vehicle holds and through which callback (shared, do not mutate)."""
    key = (program, callback, schedule)
    view = _VIEWS.get(key)
    if view is None:
        view = {
            "callback": callback,
            "schedule": schedule,
            "start": program.start,
            "days": list(program.days),
            "recurrence": program.recurrence,
            "enabled": program.enabled,
        }
        _VIEWS[key] = view
    return view


def _assignment_view(assignment: SlotAssignment) -> dict[str, Any]:
    return slot_view(assignment.program, assignment.callback, assignment.schedule)


def _record_view(record: SlotRecord) -> dict[str, Any]:
    return slot_view(record.program, record.callback, record.schedule)


_NOT_COMPARED = frozenset({"schedule"})  # bookkeeping: moving a program between schedules calls nothing
_FIELD_ORDER = {name: index for index, name in enumerate(("start", "days", "recurrence", "enabled", "callback"))}


def _slot_diffs(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[FieldDiff, ...]:
    diffs = diff_values(before, after, _NOT_COMPARED)
    return tuple(sorted(diffs, key=lambda d: _FIELD_ORDER.get(d.path, len(_FIELD_ORDER))))


def _vehicle(
    vin: str,
    wanted: tuple[SlotAssignment, ...],
    recorded: Mapping[int, SlotRecord],
    state: State,
    desired: Desired,
    options: PlanOptions,
    changes: list[Change],
    notices: list[Notice],
) -> None:
    if len(wanted) == len(recorded) and _all_settled(wanted, recorded, state.actions):
        return  # the common case on a converged fleet: nothing to look at
    by_slot = {a.program.slot: a for a in wanted}
    for slot in sorted(by_slot.keys() | recorded.keys()):
        address = Address.of_slot(vin, slot)
        assignment, record = by_slot.get(slot), recorded.get(slot)
        if record is not None and record.kind == SlotKind.FOREIGN:
            if assignment is None:
                continue  # a program of someone else's in a slot the manifests leave alone
            schedule = desired.schedules.get(assignment.schedule)
            if not (options.takeover or (schedule is not None and schedule.takeover)):
                notices.append(
                    Notice(
                        address,
                        NoticeKind.FOREIGN,
                        f"holds a program reconciler did not set; `takeover: true` on schedule "
                        f"'{assignment.schedule}' (or --takeover) replaces it",
                    )
                )
                continue
            after = _assignment_view(assignment)
            before = _record_view(record)
            takeover = Cause(CauseKind.TAKEOVER)
            changes.append(Change(address, Action.UPDATE, before, after, _slot_diffs(before, after), cause=takeover))
        elif assignment is not None:
            after = _assignment_view(assignment)
            if record is None or record.kind == SlotKind.DELETE:
                changes.append(Change(address, Action.CREATE, None, after, _slot_diffs(None, after)))
            elif record.program != assignment.program or record.callback != assignment.callback:
                before = _record_view(record)
                changes.append(Change(address, Action.UPDATE, before, after, _slot_diffs(before, after)))
            else:
                _outcome(address, record, _record_view(record), after, state, options, changes, notices)
        elif record is not None:
            before = _record_view(record)
            if record.kind == SlotKind.SET:
                changes.append(Change(address, Action.DELETE, before, None, _slot_diffs(before, None)))
            else:
                _outcome(address, record, before, None, state, options, changes, notices)


def _all_settled(
    wanted: tuple[SlotAssignment, ...], recorded: Mapping[int, SlotRecord], actions: Mapping[str, ActionRecord]
) -> bool:
    """Every desired slot recorded as the same program through the same callback, and done (the hot path)."""
    for assignment in wanted:
        record = recorded.get(assignment.program.slot)
        if record is None or record.kind != SlotKind.SET or record.callback != assignment.callback:
            return False
        if record.program != assignment.program:
            return False
        if record.action is not None:
            action = actions.get(record.action)
            if action is None or action.outcome not in DONE:
                return False
    return True


def _outcome(
    address: Address,
    record: SlotRecord,
    before: Mapping[str, Any],
    after: Mapping[str, Any] | None,
    state: State,
    options: PlanOptions,
    changes: list[Change],
    notices: list[Notice],
) -> None:
    """Equal program (or a delete already asked for): decide from the outcome of the remote that carried it."""
    if record.action is None:
        return  # observed on the vehicle (refresh, import)
    action = state.actions.get(record.action)
    if action is None:
        changes.append(Change(address, Action.RETRY, before, after, (), (), Cause(CauseKind.UNKNOWN)))
        return
    if action.outcome in DONE:
        return
    if action.outcome == Outcome.FAILED:
        cause = action.cause or "unknown cause"
        if cause in PERMANENT_CAUSES and not options.retry_failed:
            notices.append(Notice(address, NoticeKind.FAILED, f"{cause} (retried only with --retry-failed)", cause))
        else:
            changes.append(Change(address, Action.RETRY, before, after, (), (), Cause(CauseKind.FAILED, cause)))
        return
    age = (options.now - parse_time(action.posted_at)).total_seconds()
    status = f", {action.status}" if action.status else ""
    if age < options.pending_timeout:
        notices.append(Notice(address, NoticeKind.IN_FLIGHT, f"Pending since {action.posted_at}{status}"))
    else:
        waited = f"Pending for {_duration(age)}{status}, past the {_duration(options.pending_timeout)} timeout"
        changes.append(Change(address, Action.RETRY, before, after, (), (), Cause(CauseKind.PENDING, None, waited)))


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 120:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes}m" if minutes else f"{int(seconds)}s"


# ---- calls, guards ------------------------------------------------------------------------------


def _calls(changes: list[Change]) -> tuple[list[Call], list[Change]]:
    """Group changes into calls (callbacks first, vehicles by VIN, callback deletions last); tag each change."""
    first: list[Call] = []
    last: list[Call] = []
    remote: dict[tuple[str, str], list[tuple[Change, str, Program]]] = defaultdict(list)
    tagged: list[Change] = []
    kinds = {
        Action.CREATE: CallKind.CREATE_CALLBACK,
        Action.UPDATE: CallKind.UPDATE_CALLBACK,
        Action.STATUS: CallKind.CALLBACK_STATUS,
        Action.DELETE: CallKind.DELETE_CALLBACK,
    }
    for change in changes:
        if change.address.is_callback:
            name = change.address.key
            call = Call(
                f"{change.address}.{change.action.value}", kinds[change.action], name, changes=(change.address,)
            )
            (last if change.action is Action.DELETE else first).append(call)
            tagged.append(_tag(change, call.id))
            continue
        vin = change.address.key
        view = change.after if change.after is not None else change.before
        assert view is not None
        verb = "Set" if change.after is not None else "Delete"
        program = Program(
            change.address.slot or 0,
            view["start"],
            tuple(view["days"]),
            view["recurrence"],
            view["enabled"],
        )
        call_id = f"vehicle.{vin}.{view['callback']}"
        remote[(vin, view["callback"])].append((change, verb, program))
        tagged.append(_tag(change, call_id))
    calls = list(first)
    for (vin, callback), entries in sorted(remote.items()):
        calls.append(
            Call(
                f"vehicle.{vin}.{callback}",
                CallKind.REMOTE,
                callback,
                vin,
                tuple((verb, program) for _, verb, program in entries),
                tuple(change.address for change, _, _ in entries),
            )
        )
    return calls + last, tagged


def _tag(change: Change, call: str) -> Change:
    return Change(
        change.address, change.action, change.before, change.after, change.diffs, change.sensitive, change.cause, call
    )


def _guards(changes: list[Change], state: State, limits: Mapping[str, Limit]) -> tuple[GuardCheck, ...]:
    checks = []
    for name, limit in sorted(limits.items()):
        if name == "max_deleted_slots":
            count = sum(1 for c in changes if c.kind == "slot" and c.action is Action.DELETE)
            total = state.slot_count
        elif name == "max_changed_vehicles":
            count = len({c.vin for c in changes if c.kind == "slot" and c.vin in state.slots})
            total = len(state.slots)
        else:  # pragma: no cover - the config schema admits no other guard
            continue
        maximum = limit.allowed(total)
        checks.append(GuardCheck(name, limit.text, count, total, maximum, count > maximum))
    return tuple(checks)
