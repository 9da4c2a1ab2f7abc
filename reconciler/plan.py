"""The Plan: immutable, sorted, typed changes grouped into the API calls that will carry them; plan files.

Its canonical dict (`to_dict`) is what renderers read and what a plan file holds; the sha256 of that dict's
canonical JSON identifies the plan. Nothing in a Plan is secret: sensitive values are masked before they get
here, and changes to them show only as `(sensitive, changed)`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.address import Address
from reconciler.api import wire
from reconciler.atomic import write_atomic
from reconciler.errors import GuardError, PlanError
from reconciler.model import Program
from reconciler.words import plural

FORMAT_VERSION = "1.0"


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


@dataclass(frozen=True, slots=True)
class Change:
    """One resource's change: a callback's, or a vehicle slot's."""

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
            diffs=tuple(FieldDiff(d["path"], d["before"], d["after"]) for d in data["diffs"]),
            sensitive=tuple(data["sensitive"]),
            cause=Cause.read(data["cause"]),
            call=data["call"],
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One API request. A remote carries every Set and Delete entry for one vehicle through one callback."""

    id: str
    kind: CallKind
    callback: str
    vin: str | None = None
    programs: tuple[tuple[str, Program], ...] = ()
    changes: tuple[Address, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "callback": self.callback, "vin": self.vin}
        if self.kind is CallKind.REMOTE:
            data["programs"] = [wire.program_entry(action, program) for action, program in self.programs]
        data["changes"] = [str(address) for address in self.changes]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        programs = tuple(wire.entry_program(entry) for entry in data.get("programs", ()))
        changes = tuple(Address.parse(text) for text in data["changes"])
        return cls(data["id"], CallKind(data["kind"]), data["callback"], data["vin"], programs, changes)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the plan shows but does nothing about: a remote still in flight, a permanent failure, a program
    left alone, a VIN not in the fleet. `failure` is the API's failureCause of a failed one (not in plan files,
    whose `detail` says it)."""

    address: Address
    kind: NoticeKind
    detail: str
    failure: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, str]:
        return {"address": str(self.address), "kind": self.kind.value, "detail": self.detail}


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
    fleet: str
    lineage: str | None
    serial: int | None
    manifests: str
    changes: tuple[Change, ...] = ()
    calls: tuple[Call, ...] = ()
    notices: tuple[Notice, ...] = ()
    guards: tuple[GuardCheck, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    left_out: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def summary(self) -> Summary:
        callbacks: dict[Action, set[Address]] = {Action.CREATE: set(), Action.UPDATE: set(), Action.DELETE: set()}
        vehicles: set[str] = set()
        slots_set = slots_deleted = 0
        for change in self.changes:
            if change.kind == "callback":
                action = Action.UPDATE if change.action is Action.STATUS else change.action
                callbacks[action].add(change.address)
            else:
                vehicles.add(change.address.key)
                if change.after is None:
                    slots_deleted += 1
                else:
                    slots_set += 1
        return Summary(
            callbacks_create=len(callbacks[Action.CREATE]),
            callbacks_update=len(callbacks[Action.UPDATE] - callbacks[Action.CREATE]),
            callbacks_delete=len(callbacks[Action.DELETE]),
            vehicles=len(vehicles),
            slots_set=slots_set,
            slots_deleted=slots_deleted,
            calls=sum(1 for call in self.calls if call.kind is CallKind.REMOTE),
            in_flight=sum(1 for notice in self.notices if notice.kind == NoticeKind.IN_FLIGHT),
            failed=sum(1 for notice in self.notices if notice.kind == NoticeKind.FAILED),
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
            raise GuardError(f"blocked by guard: {lines}. Review the plan, then re-run with {names}")

    def body(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "fleet": self.fleet,
            "state": {"lineage": self.lineage, "serial": self.serial},
            "manifests": self.manifests,
            "options": dict(self.options),
            "summary": self.summary().to_dict(),
            "changes": [change.to_dict() for change in self.changes],
            "calls": [call.to_dict() for call in self.calls],
            "notices": [notice.to_dict() for notice in self.notices],
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
        """A plan read back from a file; PlanError if it is not one, is from a newer release, or was altered."""
        if not isinstance(data, dict) or "format_version" not in data or "digest" not in data:
            raise PlanError(f"{origin} is not a reconciler plan file")
        major = str(data["format_version"]).split(".")[0]
        if major != FORMAT_VERSION.split(".")[0]:
            raise PlanError(
                f"{origin} has plan format {data['format_version']}; this reconciler reads {FORMAT_VERSION}"
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
                changes=tuple(Change.from_dict(c) for c in data["changes"]),
                calls=tuple(Call.from_dict(c) for c in data["calls"]),
                notices=tuple(
                    Notice(Address.parse(n["address"]), NoticeKind(n["kind"]), n["detail"]) for n in data["notices"]
                ),
                guards=tuple(GuardCheck(**g) for g in data["guards"]),
                options=data["options"],
                left_out=data["left_out"],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PlanError(f"{origin} is not a valid plan: {type(error).__name__}: {error}") from error
        return plan


def write_plan_file(plan: Plan, path: Path) -> None:
    """Save a plan file atomically and durably: a reader sees the old file or the whole new one."""
    write_atomic(path, (canonical_json(plan.to_dict()) + "\n").encode())


def read_plan_file(path: Path) -> Plan:
    """A plan saved by `write_plan_file`; PlanError when there is none, or it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PlanError(f"{path} is not a reconciler plan file ({str(error)[:200]})") from error
    return Plan.from_dict(data, str(path))


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(body: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()
