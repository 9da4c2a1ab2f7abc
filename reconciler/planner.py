"""The planner: a pure function (Desired, State, options) -> Plan. No I/O, deterministic order.

Per slot, with the recorded outcome of the remote that last touched it (DESIGN.md 5):
- desired equals recorded and the outcome is Success or AlreadyDone (or the slot was observed on the vehicle):
  nothing to do;
- equal, still Pending and younger than the pending timeout: nothing to do, shown as in flight;
- equal, but Failed with a transient cause, Pending past the timeout, or of unknown outcome: retry;
- Failed with a permanent cause: shown as failed, retried only with retry_failed;
- different or new: set; recorded but no longer desired: delete (the Delete entry carries the recorded program).

A vehicle held back (`State.holds`, until its hold ends) gets a `held` notice instead of the changes its hold
covers: every change under a monthly hold (the API refuses any wake-up before the month ends), only retries under
a backoff hold (a program the manifests newly ask for is new work, planned at once).

About 400 lines, on purpose: the rules above are one decision per slot and read best together; the memo that
plans each distinct vehicle once sits beside them because its key must hold everything those rules read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, NamedTuple, TypeVar

from reconciler.address import Address
from reconciler.callbacks import callback_spec, fingerprints
from reconciler.clock import parse_time
from reconciler.diff import diff_values
from reconciler.envsubst import SENSITIVE, SENSITIVE_CHANGED
from reconciler.model import Desired, Program, SlotAssignment
from reconciler.plan import (
    Action,
    Cause,
    CauseKind,
    Change,
    ChangeGroup,
    FieldDiff,
    GuardCheck,
    Limit,
    NoticeGroup,
    NoticeKind,
    Plan,
    SlotChange,
    SlotView,
    callback_call,
)
from reconciler.selectors import Selection, Selector, check_selectors
from reconciler.state.model import (
    DONE,
    PERMANENT_CAUSES,
    UNKNOWN_CAUSE,
    ActionRecord,
    Hold,
    Outcome,
    SlotKind,
    SlotRecord,
    State,
)

T = TypeVar("T")


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
    zone: tzinfo = UTC  # the fleet's time zone, in which held notices give their times


def make_plan(desired: Desired, state: State | None, fleet: str, options: PlanOptions) -> Plan:
    """Everything needed to move the recorded state to the desired one: callback changes, and vehicles grouped
    by identical change. The work done per vehicle is a lookup: each distinct vehicle (what it should hold, what
    is recorded for it) is planned once, so a fleet-wide edit costs what one vehicle's does."""
    check_selectors(desired, state, options.targets, options.excludes)
    recorded = state or State(lineage="", serial=0, fleet=fleet, salt="")
    selection = Selection(desired, options.targets, options.excludes)
    vehicles = _Vehicles(recorded, desired, options)
    changed: dict[int, tuple[tuple[SlotChange, ...], list[str]]] = {}
    noticed: dict[int, tuple[_NoticeKey, list[str]]] = {}
    left_out = 0
    # holds in force: few vehicles at a time, and part of what their plan depends on (the memo's key)
    holds = {vin: hold for vin, hold in recorded.holds.items() if parse_time(hold.until) > options.now}
    for vin in sorted(desired.vehicles.keys() | recorded.slots.keys()):
        if vin in recorded.not_in_fleet and vin in desired.vehicles:
            key = vehicles.absent(recorded.not_in_fleet[vin])
            noticed.setdefault(id(key), (key, []))[1].append(vin)
            continue
        planned = vehicles.plan(
            desired.vehicles.get(vin, ()), recorded.slots.get(vin), holds.get(vin) if holds else None
        )
        if planned is None:
            continue
        slot_changes, notices = planned
        if slot_changes and selection.active:
            kept = vehicles.intern(tuple(change for change in slot_changes if selection.keeps_slot(vin, change)))
            left_out += len(slot_changes) - len(kept)
            slot_changes = kept
        if slot_changes:
            changed.setdefault(id(slot_changes), (slot_changes, []))[1].append(vin)
        for key in notices:
            noticed.setdefault(id(key), (key, []))[1].append(vin)
    groups = sorted(
        (ChangeGroup(tuple(vins), slot_changes) for slot_changes, vins in changed.values()),
        key=lambda group: (-len(group.vins), group.vins[0]),
    )
    notice_groups = sorted(
        (NoticeGroup(key.kind, key.detail, key.slots, tuple(vins), key.failure) for key, vins in noticed.values()),
        key=lambda group: (_NOTICE_ORDER[group.kind], -len(group.vins), group.vins[0], group.slots),
    )
    callback_changes = _callback_changes(desired, recorded, options)
    needed = {change.after.callback for group in groups for change in group.slots if change.after is not None}
    kept_callbacks = [
        change
        for change in callback_changes
        if selection.keeps_callback(change.address.key)
        or (selection.active and change.action is Action.CREATE and change.address.key in needed)
    ]
    left_out += len(callback_changes) - len(kept_callbacks)
    return Plan(
        fleet=fleet,
        lineage=state.lineage if state and state.serial else None,
        serial=state.serial if state and state.serial else None,
        manifests=desired.digest,
        callbacks=tuple(_tag(change, callback_call(change).id) for change in kept_callbacks),
        groups=tuple(groups),
        notice_groups=tuple(notice_groups),
        guards=_guards(groups, recorded, options.guards),
        options={
            "targets": [str(s) for s in options.targets],
            "excludes": [str(s) for s in options.excludes],
            "retry_failed": options.retry_failed,
            "takeover": options.takeover,
        },
        left_out=left_out,
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


class _NoticeKey(NamedTuple):
    """A notice as one vehicle has it, naming no vehicle: the same key on many vehicles is one notice group."""

    kind: NoticeKind
    detail: str
    slots: tuple[int, ...]
    failure: str | None = None


_NOTICE_ORDER = {kind: index for index, kind in enumerate(NoticeKind)}
_NOT_COMPARED = frozenset({"schedule"})  # bookkeeping: moving a program between schedules calls nothing
_FIELD_ORDER = {name: index for index, name in enumerate(("start", "days", "recurrence", "enabled", "callback"))}

# one vehicle's plan: its slot changes and its notices, both naming no vehicle
_Planned = tuple[tuple[SlotChange, ...], tuple[_NoticeKey, ...]]


class _Vehicles:
    """Plans vehicles, each distinct one once. A vehicle is known by what the manifests give it (one shared
    tuple per set of schedules) and, when recorded, by what each slot holds and how its last remote ended; two
    vehicles alike in those get the same plan, and the same objects, so grouping them costs a dict lookup."""

    def __init__(self, state: State, desired: Desired, options: PlanOptions) -> None:
        self.state, self.desired, self.options = state, desired, options
        self.memo: dict[Any, _Planned] = {}
        self.interned: dict[Any, Any] = {}

    def intern(self, value: T) -> T:
        """The one object equal to `value`: equal changes and notices are grouped by identity."""
        return self.interned.setdefault(value, value)  # type: ignore[no-any-return]

    def absent(self, read_at: str) -> _NoticeKey:
        detail = (
            f"not in fleet {self.state.fleet or 'this fleet'}'s vehicle list (read {read_at}); "
            "planned once the list holds it"
        )
        return self.intern(_NoticeKey(NoticeKind.NOT_IN_FLEET, detail, ()))

    def plan(
        self, wanted: tuple[SlotAssignment, ...], recorded: Mapping[int, SlotRecord] | None, hold: Hold | None = None
    ) -> _Planned | None:
        """One vehicle's changes and notices; None when it is settled (the common case on a converged fleet).
        `hold`: the vehicle's hold in force, if any."""
        if recorded is None:
            key: Any = id(wanted)  # the desired tuples live as long as the plan is made
        else:
            if len(wanted) == len(recorded) and _all_settled(wanted, recorded, self.state.actions):
                return None
            key = (id(wanted), *(self._record_key(slot, record) for slot, record in recorded.items()))
        if hold is not None:
            key = (key, hold)  # a Hold is never a memo key's part otherwise: no clash with an unheld vehicle
        planned = self.memo.get(key)
        if planned is None:
            changes, notices = self._vehicle(wanted, recorded or {})
            if hold is not None:
                changes = self._hold_back(hold, changes, notices)
            planned = self.memo[key] = (self.intern(tuple(changes)), tuple(map(self.intern, notices)))
        return planned

    def _hold_back(self, hold: Hold, changes: list[SlotChange], notices: list[_NoticeKey]) -> list[SlotChange]:
        """The changes a hold lets through; a `held` notice names the slots of those it holds back."""
        held = [change for change in changes if hold.monthly or change.action is Action.RETRY]
        if not held:
            return changes
        until = _local(hold.until, self.options.zone)
        if hold.monthly:
            detail = f"held until {until} ({hold.cause})"
        else:
            detail = f"retried after {until} ({hold.cause}, attempt {hold.attempts})"
        notices.append(_NoticeKey(NoticeKind.HELD, detail, tuple(change.slot for change in held), hold.cause))
        return [change for change in changes if change not in held]

    def _record_key(self, slot: int, record: SlotRecord) -> tuple[Any, ...]:
        """What the plan of a recorded slot depends on: not the remote's id, only how it ended (or since when
        it is pending)."""
        if record.action is None:
            ended: Any = "observed"
        else:
            action = self.state.actions.get(record.action)
            if action is None:
                ended = "unknown"
            elif action.outcome in DONE:
                ended = "done"
            elif action.outcome == Outcome.FAILED:
                ended = ("failed", action.cause)
            else:
                ended = ("pending", action.posted_at, action.status)
        return (slot, id(record.program), record.callback, record.kind, record.schedule, ended)

    def _vehicle(
        self, wanted: tuple[SlotAssignment, ...], recorded: Mapping[int, SlotRecord]
    ) -> tuple[list[SlotChange], list[_NoticeKey]]:
        changes: list[SlotChange] = []
        notices: dict[tuple[NoticeKind, str, str | None], list[int]] = {}
        by_slot = {a.program.slot: a for a in wanted}
        for slot in sorted(by_slot.keys() | recorded.keys()):
            assignment, record = by_slot.get(slot), recorded.get(slot)
            after = (
                None if assignment is None else SlotView(assignment.program, assignment.callback, assignment.schedule)
            )
            before = None if record is None else SlotView(record.program, record.callback, record.schedule)
            if record is not None and record.kind == SlotKind.FOREIGN:
                if assignment is None:
                    continue  # a program of someone else's in a slot the manifests leave alone
                schedule = self.desired.schedules.get(assignment.schedule)
                if not (self.options.takeover or (schedule is not None and schedule.takeover)):
                    detail = (
                        f"holds a program reconciler did not set; `takeover: true` on schedule "
                        f"'{assignment.schedule}' (or --takeover) replaces it"
                    )
                    notices.setdefault((NoticeKind.FOREIGN, detail, None), []).append(slot)
                    continue
                changes.append(_change(slot, Action.UPDATE, before, after, Cause(CauseKind.TAKEOVER)))
            elif after is not None:
                if record is None or record.kind == SlotKind.DELETE:
                    changes.append(_change(slot, Action.CREATE, None, after))
                elif before is not None and before[:2] != after[:2]:  # another program, or another callback
                    changes.append(_change(slot, Action.UPDATE, before, after))
                else:
                    assert before is not None
                    self._outcome(slot, record, before, after, changes, notices)
            elif record is not None and before is not None:
                if record.kind == SlotKind.SET:
                    changes.append(_change(slot, Action.DELETE, before, None))
                else:
                    self._outcome(slot, record, before, None, changes, notices)
        keys = [_NoticeKey(kind, detail, tuple(slots), failure) for (kind, detail, failure), slots in notices.items()]
        return changes, keys

    def _outcome(
        self,
        slot: int,
        record: SlotRecord,
        before: SlotView,
        after: SlotView | None,
        changes: list[SlotChange],
        notices: dict[tuple[NoticeKind, str, str | None], list[int]],
    ) -> None:
        """Equal program (or a delete already asked for): decide from the outcome of the remote that carried it."""
        if record.action is None:
            return  # observed on the vehicle (refresh, import)
        action = self.state.actions.get(record.action)
        if action is None:
            changes.append(_change(slot, Action.RETRY, before, after, Cause(CauseKind.UNKNOWN), diffs=False))
            return
        if action.outcome in DONE:
            return
        options = self.options
        if action.outcome == Outcome.FAILED:
            cause = action.cause or UNKNOWN_CAUSE
            if cause in PERMANENT_CAUSES and not options.retry_failed:
                notices.setdefault(
                    (NoticeKind.FAILED, f"{cause} (retried only with --retry-failed)", cause), []
                ).append(slot)
            else:
                changes.append(_change(slot, Action.RETRY, before, after, Cause(CauseKind.FAILED, cause), diffs=False))
            return
        age = (options.now - parse_time(action.posted_at)).total_seconds()
        status = f", {action.status}" if action.status else ""
        if age < options.pending_timeout:
            notices.setdefault((NoticeKind.IN_FLIGHT, f"Pending since {action.posted_at}{status}", None), []).append(
                slot
            )
        else:
            waited = f"Pending for {_duration(age)}{status}, past the {_duration(options.pending_timeout)} timeout"
            changes.append(
                _change(slot, Action.RETRY, before, after, Cause(CauseKind.PENDING, None, waited), diffs=False)
            )


def _assigned(assignment: SlotAssignment) -> tuple[Program, str, str]:
    return assignment.program, assignment.callback, assignment.schedule


def _change(
    slot: int,
    action: Action,
    before: SlotView | None,
    after: SlotView | None,
    cause: Cause | None = None,
    *,
    diffs: bool = True,
) -> SlotChange:
    shown = _slot_diffs(before, after) if diffs else ()
    return SlotChange(slot, action, before, after, cause, shown)


def _slot_diffs(before: SlotView | None, after: SlotView | None) -> tuple[FieldDiff, ...]:
    found = diff_values(
        None if before is None else before.view(), None if after is None else after.view(), _NOT_COMPARED
    )
    return tuple(sorted(found, key=lambda d: _FIELD_ORDER.get(d.path, len(_FIELD_ORDER))))


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


def _local(moment: str, zone: tzinfo) -> str:
    """A recorded time as the fleet's people read it: to the minute, in the fleet's time zone, named."""
    return f"{parse_time(moment).astimezone(zone):%Y-%m-%dT%H:%M} {zone}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 120:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes}m" if minutes else f"{int(seconds)}s"


# ---- calls, guards ------------------------------------------------------------------------------


def _tag(change: Change, call: str) -> Change:
    return Change(
        change.address, change.action, change.before, change.after, change.diffs, change.sensitive, change.cause, call
    )


def _guards(groups: list[ChangeGroup], state: State, limits: Mapping[str, Limit]) -> tuple[GuardCheck, ...]:
    checks = []
    for name, limit in sorted(limits.items()):
        if name == "max_deleted_slots":
            count = sum(len(g.vins) * sum(1 for c in g.slots if c.action is Action.DELETE) for g in groups)
            total = state.slot_count
        elif name == "max_changed_vehicles":
            count = sum(1 for g in groups for vin in g.vins if vin in state.slots)
            total = len(state.slots)
        else:  # pragma: no cover - the config schema admits no other guard
            continue
        maximum = limit.allowed(total)
        checks.append(GuardCheck(name, limit.text, count, total, maximum, count > maximum))
    return tuple(checks)
