"""The Plan: immutable, sorted, typed changes, vehicles grouped by identical change; plan files.

Its canonical dict (`to_dict`) is what renderers read and what a plan file holds; the sha256 of that dict's
canonical JSON identifies the plan. Nothing in a Plan is secret: sensitive values are masked before they get
here, and changes to them show only as `(sensitive, changed)`.

Longer than most modules, on purpose: a plan's types, their canonical dict and the reading of it back (plan
files are read by `apply PLAN` and `show`) must change together, and each type's `to_dict` and `from_dict`
stand side by side so a field cannot be written without being read.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.address import Address
from reconciler.api import wire
from reconciler.atomic import read_json_file, write_atomic
from reconciler.errors import GuardError, PlanError
from reconciler.model import Program
from reconciler.words import plural

FORMAT_VERSION = "2.0"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    STATUS = "status"
    RETRY = "retry"


class CallKind(StrEnum):
    CREATE_CALLBACK = "create-callback"
    UPDATE_CALLBACK = "update-callback"
    CALLBACK_STATUS = "callback-status"
    DELETE_CALLBACK = "delete-callback"
    REMOTE = "remote"


class NoticeKind(StrEnum):
    IN_FLIGHT = "in-flight"  # a remote still Pending, younger than the pending timeout
    FAILED = "failed"  # a permanent failure, retried only with --retry-failed
    FOREIGN = "foreign"  # a program reconciler did not set, left alone without takeover
    NOT_IN_FLEET = "not-in-fleet"  # a VIN the fleet's vehicle list does not hold
    HELD = "held"  # changes held back until a vehicle's hold ends (state.holds: out of wake-ups, or backing off)


class CauseKind(StrEnum):
    FAILED = "failed"  # the remote that carried it failed (`failure`: the API's failureCause)
    PENDING = "pending"  # Pending past the pending timeout (`detail` says how long)
    UNKNOWN = "unknown"  # the outcome of the remote that carried it is not known
    TAKEOVER = "takeover"  # replaces a program reconciler did not set


class Cause(NamedTuple):
    """Why a change is made again, or made over something else: data, written as text only for people."""

    kind: CauseKind
    failure: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == CauseKind.FAILED:
            return f"Failed: {self.failure}"
        if self.kind == CauseKind.UNKNOWN:
            return "outcome unknown"
        if self.kind == CauseKind.TAKEOVER:
            return "takeover"
        return self.detail

    @classmethod
    def read(cls, text: str | None) -> Cause | None:
        """The cause a plan file wrote as text (the one place it is read back)."""
        if text is None:
            return None
        if text.startswith("Failed: "):
            return cls(CauseKind.FAILED, text[len("Failed: ") :])
        kinds = {"outcome unknown": CauseKind.UNKNOWN, "takeover": CauseKind.TAKEOVER}
        return cls(kinds.get(text, CauseKind.PENDING), None, "" if text in kinds else text)


@dataclass(frozen=True, slots=True)
class FieldDiff:
    path: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


class SlotView(NamedTuple):
    """What a slot holds, as a plan compares it: the program, the callback it goes through, its schedule."""

    program: Program
    callback: str
    schedule: str

    def view(self) -> dict[str, Any]:
        """How the slot reads in a plan (one dict per distinct view, shared: do not mutate)."""
        shown = _VIEWS.get(self)
        if shown is None:
            program = self.program
            shown = _VIEWS[self] = {
                "callback": self.callback,
                "schedule": self.schedule,
                "start": program.start,
                "days": list(program.days),
                "recurrence": program.recurrence,
                "enabled": program.enabled,
            }
        return shown

    @classmethod
    def read(cls, slot: int, data: Mapping[str, Any]) -> SlotView:
        program = Program(slot, data["start"], tuple(data["days"]), data["recurrence"], data["enabled"])
        return cls(program, data["callback"], data["schedule"])


_VIEWS: dict[SlotView, dict[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class Change:
    """One resource's change, at its address: a callback's, or one vehicle's slot's."""

    address: Address
    action: Action
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    diffs: tuple[FieldDiff, ...] = ()
    sensitive: tuple[str, ...] = ()
    cause: Cause | None = None
    call: str = ""

    @property
    def kind(self) -> str:
        return "callback" if self.address.is_callback else "slot"

    @property
    def vin(self) -> str | None:
        return self.address.vin

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "action": self.action.value,
            "before": self.before,
            "after": self.after,
            "diffs": [d.to_dict() for d in self.diffs],
            "sensitive": list(self.sensitive),
            "cause": None if self.cause is None else str(self.cause),
            "call": self.call,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            address=Address.parse(data["address"]),
            action=Action(data["action"]),
            before=data["before"],
            after=data["after"],
            diffs=_read_diffs(data["diffs"]),
            sensitive=tuple(data["sensitive"]),
            cause=Cause.read(data["cause"]),
            call=data["call"],
        )


def _read_diffs(data: Iterable[Mapping[str, Any]]) -> tuple[FieldDiff, ...]:
    return tuple(FieldDiff(d["path"], d["before"], d["after"]) for d in data)


@dataclass(frozen=True, slots=True)
class SlotChange:
    """One slot's change, the same for every vehicle of a group: it names no vehicle. Equal when the slot, the
    action, what the slot held and will hold, and the cause are (the diffs follow from those)."""

    slot: int
    action: Action
    before: SlotView | None
    after: SlotView | None
    cause: Cause | None = None
    diffs: tuple[FieldDiff, ...] = field(default=(), compare=False)

    @property
    def callback(self) -> str:
        """The callback the remote carrying this change goes through."""
        view = self.after or self.before
        assert view is not None
        return view.callback

    @property
    def entry(self) -> tuple[str, Program, str]:
        """(actionsType, program, schedule) as a remote carries it: Set the new program, or Delete the old."""
        if self.after is not None:
            return "Set", self.after.program, self.after.schedule
        assert self.before is not None
        return "Delete", self.before.program, self.before.schedule

    def at(self, vin: str, call: str = "") -> Change:
        """This change at one vehicle's slot."""
        return Change(
            Address.of_slot(vin, self.slot),
            self.action,
            None if self.before is None else self.before.view(),
            None if self.after is None else self.after.view(),
            self.diffs,
            (),
            self.cause,
            call,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "action": self.action.value,
            "before": None if self.before is None else self.before.view(),
            "after": None if self.after is None else self.after.view(),
            "diffs": [d.to_dict() for d in self.diffs],
            "cause": None if self.cause is None else str(self.cause),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlotChange:
        slot = data["slot"]
        if type(slot) is not int:
            raise TypeError(f"slot {slot!r} is not a slot number")
        before, after = data["before"], data["after"]
        return cls(
            slot,
            Action(data["action"]),
            None if before is None else SlotView.read(slot, before),
            None if after is None else SlotView.read(slot, after),
            Cause.read(data["cause"]),
            _read_diffs(data["diffs"]),
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One API request. A remote carries every Set and Delete entry for one vehicle through one callback;
    `schedules` names, entry by entry, the schedule that asked for it (recorded in the state with the slot)."""

    id: str
    kind: CallKind
    callback: str
    vin: str | None = None
    programs: tuple[tuple[str, Program], ...] = ()
    changes: tuple[Address, ...] = ()
    schedules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "callback": self.callback, "vin": self.vin}
        if self.kind is CallKind.REMOTE:
            data["programs"] = [wire.program_entry(action, program) for action, program in self.programs]
        data["changes"] = [str(address) for address in self.changes]
        return data


_CALLBACK_CALLS = {
    Action.CREATE: CallKind.CREATE_CALLBACK,
    Action.UPDATE: CallKind.UPDATE_CALLBACK,
    Action.STATUS: CallKind.CALLBACK_STATUS,
    Action.DELETE: CallKind.DELETE_CALLBACK,
}


def callback_call(change: Change) -> Call:
    """The call that carries a callback's change."""
    return Call(
        f"{change.address}.{change.action.value}",
        _CALLBACK_CALLS[change.action],
        change.address.key,
        changes=(change.address,),
    )


@dataclass(frozen=True, slots=True)
class ChangeGroup:
    """Vehicles that receive exactly the same slot changes: one entry for the change, the VINs it applies to.
    Each vehicle still gets its own calls, one per callback its changes go through (`calls`)."""

    vins: tuple[str, ...]
    slots: tuple[SlotChange, ...]

    @property
    def callbacks(self) -> tuple[str, ...]:
        return tuple(sorted({change.callback for change in self.slots}))

    def calls(self, vin: str) -> list[Call]:
        """The remotes this group's changes make on one vehicle, one per callback."""
        calls = []
        for callback in self.callbacks:
            carried = [change for change in self.slots if change.callback == callback]
            entries = [change.entry for change in carried]
            calls.append(
                Call(
                    f"vehicle.{vin}.{callback}",
                    CallKind.REMOTE,
                    callback,
                    vin,
                    tuple((verb, program) for verb, program, _ in entries),
                    tuple(Address.of_slot(vin, change.slot) for change in carried),
                    tuple(schedule for _, _, schedule in entries),
                )
            )
        return calls

    def changes(self, vin: str) -> list[Change]:
        return [change.at(vin, f"vehicle.{vin}.{change.callback}") for change in self.slots]

    def to_dict(self) -> dict[str, Any]:
        calls = []
        for callback in self.callbacks:
            carried = [change for change in self.slots if change.callback == callback]
            calls.append(
                {
                    "callback": callback,
                    "slots": [change.slot for change in carried],
                    "programs": [wire.program_entry(*change.entry[:2]) for change in carried],
                }
            )
        return {
            "vehicles": len(self.vins),
            "slots": [change.to_dict() for change in self.slots],
            "calls": calls,
            "vins": list(self.vins),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeGroup:
        vins = tuple(data["vins"])
        if not vins or not all(type(vin) is str for vin in vins):
            raise ValueError("a change group without VINs")
        return cls(vins, tuple(SlotChange.from_dict(change) for change in data["slots"]))


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the plan shows but does nothing about, at one address: a remote still in flight, a permanent
    failure, a program left alone, a VIN not in the fleet. `failure` is the API's failureCause of a failed one."""

    address: Address
    kind: NoticeKind
    detail: str
    failure: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NoticeGroup:
    """One notice shared by vehicles: the same kind and detail on the same slots (none: about the vehicle)."""

    kind: NoticeKind
    detail: str
    slots: tuple[int, ...]
    vins: tuple[str, ...]
    failure: str | None = None

    def notices(self) -> Iterator[Notice]:
        for vin in self.vins:
            if not self.slots:
                yield Notice(Address.of_vehicle(vin), self.kind, self.detail, self.failure)
            for slot in self.slots:
                yield Notice(Address.of_slot(vin, slot), self.kind, self.detail, self.failure)

    @property
    def count(self) -> int:
        """Notices in the group: one per slot and vehicle (per vehicle for a notice about the vehicle)."""
        return len(self.vins) * max(1, len(self.slots))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "detail": self.detail,
            "failure": self.failure,
            "slots": list(self.slots),
            "vehicles": len(self.vins),
            "vins": list(self.vins),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoticeGroup:
        vins, slots = tuple(data["vins"]), tuple(data["slots"])
        if not all(type(vin) is str for vin in vins) or not all(type(slot) is int for slot in slots):
            raise TypeError("a notice group's VINs or slots are of the wrong type")
        return cls(NoticeKind(data["kind"]), str(data["detail"]), slots, vins, data["failure"])


@dataclass(frozen=True, slots=True)
class Limit:
    """A guard threshold from reconciler.yaml: an absolute count, or a percentage of a total."""

    amount: float
    percent: bool
    text: str

    @classmethod
    def parse(cls, value: int | str) -> Limit:
        if isinstance(value, str) and value.endswith("%"):
            return cls(float(value[:-1]), True, value)
        return cls(float(value), False, str(value))

    def allowed(self, total: int) -> int:
        """The largest count let through, computed exactly: 50% of 11 allows 5, and 32.3% of 1,000 allows 323
        (in floating point it would allow 322, refusing a count the text says is within the limit)."""
        try:
            amount = Fraction(self.text.strip().removesuffix("%"))
        except (ValueError, ZeroDivisionError):
            amount = Fraction(self.amount)
        return math.floor(amount * total / 100 if self.percent else amount)


@dataclass(frozen=True, slots=True)
class GuardCheck:
    name: str
    limit: str
    count: int
    total: int
    maximum: int  # the largest count allowed (plan files from older releases may hold the unrounded float)
    exceeded: bool

    def describe(self) -> str:
        """`max_changed_vehicles: 6 recorded vehicles to change > 50% (at most 5 of 11)`: the relation is the
        verdict, and the maximum is the whole number the guard lets through."""
        what = {
            "max_deleted_slots": ("slot to delete", "slots to delete"),
            "max_changed_vehicles": ("recorded vehicle to change", "recorded vehicles to change"),
        }
        singular, many = what.get(self.name, ("change", "changes"))
        relation = ">" if self.exceeded else "<="
        return (
            f"{self.name}: {plural(self.count, singular, many)} {relation} {self.limit} "
            f"(at most {math.floor(self.maximum):,} of {self.total:,})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "count": self.count,
            "total": self.total,
            "maximum": self.maximum,
            "exceeded": self.exceeded,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    callbacks_create: int = 0
    callbacks_update: int = 0
    callbacks_delete: int = 0
    vehicles: int = 0
    slots_set: int = 0
    slots_deleted: int = 0
    calls: int = 0
    in_flight: int = 0
    failed: int = 0

    def line(self, serial: int | None, left_out: int = 0) -> str:
        """The plan's last line. Without changes it says what was compared: the manifests (or the targeted part
        of them) against the recorded state of this serial, or against no state at all."""
        if not (self.callbacks_create or self.callbacks_update or self.callbacks_delete or self.vehicles):
            against = f"the recorded state (serial {serial})" if serial is not None else "an empty state"
            if left_out:
                return f"No changes in the targeted part of the manifests: it matches {against}."
            if serial is None:
                return "No changes: the manifests declare nothing and no state is recorded yet."
            return f"No changes: the manifests match {against}."
        return (
            f"Plan: {plural(self.callbacks_create, 'callback')} to create, {self.callbacks_update:,} to update, "
            f"{self.callbacks_delete:,} to delete; {plural(self.vehicles, 'vehicle')} to update "
            f"({plural(self.slots_set, 'slot')} set, {self.slots_deleted:,} deleted) in {plural(self.calls, 'call')}."
        )

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Plan:
    """Callback changes one by one; vehicle changes in groups of vehicles that get the same change; notices in
    groups too. Its size follows the distinct changes, not the vehicles: 100,000 vehicles moved to a new start
    time are one group. `changes`, `calls` and `notices` give the same plan one address at a time."""

    fleet: str
    lineage: str | None
    serial: int | None
    manifests: str
    callbacks: tuple[Change, ...] = ()
    groups: tuple[ChangeGroup, ...] = ()
    notice_groups: tuple[NoticeGroup, ...] = ()
    guards: tuple[GuardCheck, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    left_out: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.callbacks or self.groups)

    # ---- one address at a time ------------------------------------------------------------------------------

    @property
    def changes(self) -> tuple[Change, ...]:
        """Every change: the callbacks', then each vehicle's slots, by VIN."""
        return (*self.callbacks, *(change for vin, group in self.vehicles() for change in group.changes(vin)))

    @property
    def calls(self) -> tuple[Call, ...]:
        """Every call in the order apply makes them: callbacks created or updated, remotes by VIN, deletions."""
        first, last = self.callback_calls()
        return (*first, *(call for vin, group in self.vehicles() for call in group.calls(vin)), *last)

    @property
    def notices(self) -> tuple[Notice, ...]:
        found = [notice for group in self.notice_groups for notice in group.notices()]
        return tuple(sorted(found, key=lambda notice: (notice.address.key, notice.address.slot or 0)))

    def callback_calls(self) -> tuple[list[Call], list[Call]]:
        """The callback calls made before the vehicles' (create, update, status) and after them (delete)."""
        calls = [callback_call(change) for change in self.callbacks]
        return (
            [call for call in calls if call.kind is not CallKind.DELETE_CALLBACK],
            [call for call in calls if call.kind is CallKind.DELETE_CALLBACK],
        )

    def vehicles(self) -> Iterator[tuple[str, ChangeGroup]]:
        """(VIN, its group) for every vehicle that changes, by VIN, one at a time."""
        return heapq.merge(*(_members(group) for group in self.groups), key=lambda pair: pair[0])

    def vins(self) -> set[str]:
        return {vin for group in self.groups for vin in group.vins}

    # ---- figures --------------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        callbacks: dict[Action, set[Address]] = {Action.CREATE: set(), Action.UPDATE: set(), Action.DELETE: set()}
        for change in self.callbacks:
            action = Action.UPDATE if change.action is Action.STATUS else change.action
            callbacks[action].add(change.address)
        vehicles = slots_set = slots_deleted = calls = 0
        for group in self.groups:
            count = len(group.vins)
            vehicles += count
            setting = sum(1 for change in group.slots if change.after is not None)
            slots_set += count * setting
            slots_deleted += count * (len(group.slots) - setting)
            calls += count * len(group.callbacks)
        return Summary(
            callbacks_create=len(callbacks[Action.CREATE]),
            callbacks_update=len(callbacks[Action.UPDATE] - callbacks[Action.CREATE]),
            callbacks_delete=len(callbacks[Action.DELETE]),
            vehicles=vehicles,
            slots_set=slots_set,
            slots_deleted=slots_deleted,
            calls=calls,
            in_flight=sum(group.count for group in self.notice_groups if group.kind == NoticeKind.IN_FLIGHT),
            failed=sum(group.count for group in self.notice_groups if group.kind == NoticeKind.FAILED),
        )

    def exceeded_guards(self) -> tuple[GuardCheck, ...]:
        return tuple(guard for guard in self.guards if guard.exceeded)

    def check_guards(self, allow: Iterable[str] = ()) -> None:
        """What apply calls before any write: GuardError (exit 4) for each exceeded guard not allowed."""
        allowed = set(allow)
        blocking = [guard for guard in self.exceeded_guards() if guard.name not in allowed]
        if blocking:
            lines = "; ".join(guard.describe() for guard in blocking)
            names = " ".join(f"--allow {guard.name}" for guard in blocking)
            error = GuardError(f"blocked by guard: {lines}. Review the plan, then re-run with {names}")
            error.plan = self  # what a caller shows for review (serve's status page)
            raise error

    # ---- the document ---------------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "fleet": self.fleet,
            "state": {"lineage": self.lineage, "serial": self.serial},
            "manifests": self.manifests,
            "options": dict(self.options),
            "summary": self.summary().to_dict(),
            "callbacks": [change.to_dict() for change in self.callbacks],
            "groups": [group.to_dict() for group in self.groups],
            "notices": [group.to_dict() for group in self.notice_groups],
            "guards": [guard.to_dict() for guard in self.guards],
            "left_out": self.left_out,
        }

    def to_dict(self) -> dict[str, Any]:
        body = self.body()
        return {**body, "digest": digest(body)}

    @property
    def digest(self) -> str:
        return digest(self.body())

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> Plan:
        """A plan read back from a file; PlanError if it is not one, is from another format, or was altered."""
        if not isinstance(data, dict) or "format_version" not in data or "digest" not in data:
            raise PlanError(f"{origin} is not a reconciler plan file")
        major = str(data["format_version"]).split(".")[0]
        if major != FORMAT_VERSION.split(".")[0]:
            raise PlanError(
                f"{origin} has plan format {str(data['format_version'])[:20]}; this reconciler reads "
                f"{FORMAT_VERSION}: make a new plan"
            )
        body = {key: value for key, value in data.items() if key != "digest"}
        if digest(body) != data["digest"]:
            raise PlanError(f"{origin} was changed after it was made (its digest does not match); make a new plan")
        try:
            plan = cls(
                fleet=data["fleet"],
                lineage=data["state"]["lineage"],
                serial=data["state"]["serial"],
                manifests=data["manifests"],
                callbacks=tuple(Change.from_dict(c) for c in data["callbacks"]),
                groups=tuple(ChangeGroup.from_dict(g) for g in data["groups"]),
                notice_groups=tuple(NoticeGroup.from_dict(n) for n in data["notices"]),
                guards=tuple(GuardCheck(**g) for g in data["guards"]),
                options=data["options"],
                left_out=data["left_out"],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PlanError(f"{origin} is not a valid plan: {type(error).__name__}: {str(error)[:200]}") from error
        return plan


def _members(group: ChangeGroup) -> Iterator[tuple[str, ChangeGroup]]:
    for vin in group.vins:
        yield vin, group


def write_plan_file(plan: Plan, path: Path) -> None:
    """Save a plan file atomically and durably: a reader sees the old file or the whole new one."""
    write_atomic(path, (canonical_json(plan.to_dict()) + "\n").encode())


def read_plan_file(path: Path) -> Plan:
    """A plan saved by `write_plan_file`; PlanError when there is none, or it is not one."""
    return Plan.from_dict(read_json_file(path, "plan file", PlanError), str(path))


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(body: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()
