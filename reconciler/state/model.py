"""The recorded state and its JSON form (format version 2; version 1 is still read).

Differences from a naive one-record-per-slot layout, for fleets of 100,000 vehicles:
- outcomes belong to remote actions (`actions`), as the API reports them: one POST per vehicle and callback
  carries several slots, and one remoteActionId's outcome covers all of them; an action is the list
  `[vin, callback, posted_at, outcome, status, cause, updated_at]`;
- what a vehicle's slots hold is shared: `layouts` lists each distinct set of slots once, as rows
  `[slot, program, callback, kind, schedule]` whose program is the compact text `PT7H30M/Mon,Tue/Daily/on`,
  and a vehicle is `[layout, action]` (one remote carried every slot) or `[layout, action per slot...]`.
  A fleet in a few schedules is a few layouts, and each vehicle a short list, so the state of 400,000 slots is
  a few objects per vehicle to read and write (version 1 held a list of five strings per slot);
- `holds` (optional) names the vehicles a failure holds back: `{vin: {until, cause, attempts}}`, few at a time;
- `read_at` (optional): `{vin: time}`, when `serve` last read each vehicle's status to look for drift (its reads
  go round-robin, least recently read first), with microseconds so that two reads in one second keep their order;
- `drifted` (optional): `{vin: {at, wanted}}`, the vehicles `serve` found changed out of band and has not seen
  hold the manifests' programs again since; `wanted` fingerprints what the manifests asked of the vehicle then
  (when they ask something else, the vehicle is planned as new work, self-heal or not).

Longer than most modules, on purpose: the state document's every key is encoded and strictly decoded here,
side by side, so that no key can be written without being checked when read back.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from reconciler.bulk import collector_paused
from reconciler.clock import parse_time
from reconciler.errors import StateError
from reconciler.model import DAYS, Program

STATE_VERSION = 2


class Outcome(StrEnum):
    """What became of a remote action, as its notifications or its status say."""

    PENDING = "Pending"
    SUCCESS = "Success"
    ALREADY_DONE = "AlreadyDone"
    FAILED = "Failed"


class SlotKind(StrEnum):
    """What reconciler last asked of a slot (Set, Delete), or a program found there it did not set (Foreign)."""

    SET = "Set"
    DELETE = "Delete"
    FOREIGN = "Foreign"


OUTCOMES = tuple(Outcome)
DONE = (Outcome.SUCCESS, Outcome.ALREADY_DONE)
FINAL = (*DONE, Outcome.FAILED)


class SlotRecord(NamedTuple):
    """What reconciler last asked of one slot: `kind` Set (holds `program`) or Delete (clears it); or, with kind
    Foreign, a program refresh found there that reconciler did not set.

    A named tuple rather than a dataclass: a large state holds hundreds of thousands of them.
    """

    program: Program
    callback: str
    action: str | None = None
    kind: SlotKind = SlotKind.SET
    schedule: str = ""


@dataclass(slots=True)
class ActionRecord:
    """A remote action reconciler posted, and the latest outcome known for it."""

    vin: str
    callback: str
    posted_at: str
    outcome: Outcome | None = Outcome.PENDING
    status: str | None = None
    cause: str | None = None
    updated_at: str | None = None

    def to_list(self) -> list[Any]:
        """The compact form a state file holds: [vin, callback, posted_at, outcome, status, cause, updated_at]."""
        return [self.vin, self.callback, self.posted_at, self.outcome, self.status, self.cause, self.updated_at]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "callback": self.callback,
            "posted_at": self.posted_at,
            "outcome": self.outcome,
            "status": self.status,
            "cause": self.cause,
            "updated_at": self.updated_at,
        }


# the vehicle has used its wake-ups for the month: nothing reaches it before the next month
MONTHLY_CAUSE = "TooManyWakeUpsOverMonth"
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
UNKNOWN_CAUSE = "unknown cause"  # a Failed outcome that named no cause


@dataclass(frozen=True, slots=True)
class Hold:
    """A vehicle held back after a failure: nothing is retried on it before `until` (RFC 3339, UTC). Under a
    monthly hold (TooManyWakeUpsOverMonth) nothing at all is sent to it; under a backoff hold new work still is.
    `attempts` counts the vehicle's failures in a row."""

    until: str
    cause: str
    attempts: int = 1

    @property
    def monthly(self) -> bool:
        return self.cause == MONTHLY_CAUSE

    def to_dict(self) -> dict[str, Any]:
        return {"until": self.until, "cause": self.cause, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class DriftMark:
    """A vehicle found drifted at `at` (RFC 3339, UTC), when the manifests' programs for it had fingerprint
    `wanted`."""

    at: str
    wanted: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "wanted": self.wanted}


@dataclass(slots=True)
class CallbackRecord:
    """A callback reconciler created: its id, the spec it sent (secrets as fingerprints), its status."""

    id: str
    spec: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    status: str = "Running"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "spec": self.spec, "secrets": dict(sorted(self.secrets.items())), "status": self.status}


@dataclass(slots=True)
class State:
    lineage: str
    serial: int
    fleet: str
    salt: str
    vehicles_index: dict[str, str] = field(default_factory=dict)
    callbacks: dict[str, CallbackRecord] = field(default_factory=dict)
    slots: dict[str, dict[int, SlotRecord]] = field(default_factory=dict)
    actions: dict[str, ActionRecord] = field(default_factory=dict)
    # VINs the manifests name that the fleet's vehicle list did not hold, and when that list was read
    not_in_fleet: dict[str, str] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    read_at: dict[str, str] = field(default_factory=dict)
    drifted: dict[str, DriftMark] = field(default_factory=dict)

    @classmethod
    def new(cls, fleet: str) -> State:
        """An empty state with a fresh lineage and fingerprint salt."""
        return cls(lineage=str(uuid.uuid4()), serial=0, fleet=fleet, salt=secrets.token_hex(16))

    @property
    def slot_count(self) -> int:
        """Slots reconciler manages (programs found there that it did not set are not counted)."""
        return sum(1 for slots in self.slots.values() for record in slots.values() if record.kind != SlotKind.FOREIGN)

    def outcome(self, record: SlotRecord) -> ActionRecord | None:
        return self.actions.get(record.action) if record.action else None

    def to_json(self) -> str:
        """The compact JSON document a backend stores (the collector paused: see reconciler.bulk)."""
        with collector_paused():
            return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "fleet": self.fleet,
            "salt": self.salt,
            "vehicles_index": dict(sorted(self.vehicles_index.items())),
            "callbacks": {name: record.to_dict() for name, record in sorted(self.callbacks.items())},
            **_encode_slots(self.slots),
            "actions": {rid: record.to_list() for rid, record in sorted(self.actions.items())},
            "not_in_fleet": dict(sorted(self.not_in_fleet.items())),
            **({"holds": {vin: hold.to_dict() for vin, hold in sorted(self.holds.items())}} if self.holds else {}),
            **({"read_at": dict(sorted(self.read_at.items()))} if self.read_at else {}),
            **(
                {"drifted": {vin: mark.to_dict() for vin, mark in sorted(self.drifted.items())}} if self.drifted else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> State:
        """Decode a state document; StateError (never a crash) for anything corrupt, foreign or newer."""
        if not isinstance(data, dict) or "version" not in data or "lineage" not in data:
            raise StateError(f"{origin} is not a reconciler state file")
        version = data["version"]
        if not _is_int(version) or version < 1:
            raise StateError(f"{origin} is corrupt: version {_shown(version)} is not a state version")
        if version > STATE_VERSION:
            raise StateError(
                f"{origin} has state version {version}, newer than this reconciler reads ({STATE_VERSION}); "
                "upgrade reconciler"
            )
        try:
            return _decode(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise StateError(f"{origin} is corrupt: {type(error).__name__}: {str(error)[:200]}") from error


def program_text(program: Program) -> str:
    return f"{program.start}/{','.join(program.days)}/{program.recurrence}/{'on' if program.enabled else 'off'}"


def _encode_slots(slots: dict[str, dict[int, SlotRecord]]) -> dict[str, Any]:
    """`layouts` and `slots` of a version 2 state: each distinct layout once, each vehicle as short list."""
    layouts: list[list[Any]] = []
    known: dict[tuple[Any, ...], int] = {}
    vehicles: dict[str, list[Any]] = {}
    texts: dict[int, str] = {}  # a program's text by its id: a loaded state shares equal programs
    for vin in sorted(slots):
        records = slots[vin]
        numbers = sorted(records)
        ordered = [records[n] for n in numbers]
        key = tuple(
            [
                (n, texts.get(id(r.program)) or _text(texts, r.program), r.callback, r.kind, r.schedule)
                for n, r in zip(numbers, ordered, strict=True)
            ]
        )
        layout = known.get(key)
        if layout is None:
            layout = known[key] = len(layouts)
            layouts.append([list(row) for row in key])
        actions = [r.action for r in ordered]
        shared = len(set(actions)) <= 1
        vehicles[vin] = [layout, actions[0] if actions else None] if shared else [layout, *actions]
    return {"layouts": layouts, "slots": vehicles}


def _text(texts: dict[int, str], program: Program) -> str:
    text = texts[id(program)] = program_text(program)
    return text


_KINDS = {kind.value: kind for kind in SlotKind}
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
_START = re.compile(r"PT(?=[0-9])([0-9]{1,2}H)?([0-9]{1,2}M)?")  # a time of day as an ISO-8601 duration
_SLOTS = {"1": 1, "2": 2, "3": 3, "4": 4}
Slots = dict[str, dict[int, SlotRecord]]


def _program(slot: int, text: str) -> Program:
    start, days, recurrence, enabled = text.split("/")
    chosen = tuple(days.split(",")) if days else ()
    if (
        any(day not in DAYS for day in chosen)
        or enabled not in ("on", "off")
        or recurrence not in ("Daily", "None")
        or _START.fullmatch(start) is None
    ):
        raise ValueError(f"bad program {_shown(text)}")
    return Program(slot, start, chosen, recurrence, enabled == "on")


def _decode_slots_v1(raw: Any) -> Slots:
    """The slots of a version 1 state: equal programs and strings are shared, not copied; every value's type is
    checked, so a corrupt state is refused here rather than crashing a command later."""
    programs: dict[tuple[int, str], Program] = {}
    strings: dict[str, str] = {}
    share = strings.setdefault
    slots: dict[str, dict[int, SlotRecord]] = {}
    for vin, raw_slots in _mapping(raw, "slots").items():
        vehicle = {}
        for number, entry in _mapping(raw_slots, f"slots.{vin}").items():
            if type(entry) is not list or len(entry) != 5:
                raise ValueError(f"slots.{vin}.{number} is not a slot record")
            text, callback, action, kind, schedule = entry
            if type(text) is not str or type(callback) is not str or type(schedule) is not str:
                raise ValueError(f"slots.{vin}.{number} holds a value of the wrong type")
            if action is not None and type(action) is not str:
                raise ValueError(f"slots.{vin}.{number}: action {_shown(action)} is not a string")
            slot = _SLOTS[number]
            program = programs.get((slot, text))
            if program is None:
                program = programs[(slot, text)] = _program(slot, text)
            vehicle[slot] = SlotRecord(
                program,
                share(callback, callback),
                share(action, action) if action else None,
                _KINDS[kind],
                share(schedule, schedule),
            )
        slots[vin] = vehicle
    return slots


def _decode_layouts(raw: Any) -> list[tuple[tuple[int, Program, str, SlotKind, str], ...]]:
    if type(raw) is not list:
        raise ValueError("layouts is not a list")
    programs: dict[tuple[int, str], Program] = {}
    layouts = []
    for index, rows in enumerate(raw):
        if type(rows) is not list:
            raise ValueError(f"layouts.{index} is not a list")
        layout = []
        for row in rows:
            if type(row) is not list or len(row) != 5:
                raise ValueError(f"layouts.{index} holds a row that is not [slot, program, callback, kind, schedule]")
            number, text, callback, kind, schedule = row
            if type(text) is not str or type(callback) is not str or type(schedule) is not str:
                raise ValueError(f"layouts.{index} holds a value of the wrong type")
            if type(number) is not int or not 1 <= number <= 4:
                raise ValueError(f"layouts.{index}: slot {_shown(number)} is not a slot number (1-4)")
            slot = number
            program = programs.get((slot, text))
            if program is None:
                program = programs[(slot, text)] = _program(slot, text)
            layout.append((slot, program, callback, _KINDS[kind], schedule))
        if len({row[0] for row in layout}) != len(layout):
            raise ValueError(f"layouts.{index} names a slot twice")
        layouts.append(tuple(layout))
    return layouts


def _decode_vehicles(raw: Any, layouts: list[tuple[tuple[int, Program, str, SlotKind, str], ...]]) -> Slots:
    """The hot loop of loading a large state (version 2): a vehicle is a layout and its remotes' ids."""
    strings: dict[str, str] = {}
    share = strings.setdefault
    new = tuple.__new__  # SlotRecord's own __new__ is Python code: 400,000 calls of it cost a second
    count = len(layouts)
    slots: Slots = {}
    for vin, entry in _mapping(raw, "slots").items():
        if type(entry) is not list or not entry or type(entry[0]) is not int or not 0 <= entry[0] < count:
            raise ValueError(f"slots.{vin} is not [layout, action...]")
        layout = layouts[entry[0]]
        actions = entry[1:]
        if len(actions) == 1:
            actions *= len(layout)
        elif len(actions) != len(layout):
            raise ValueError(f"slots.{vin} does not name one action per slot of its layout")
        vehicle = {}
        for (slot, program, callback, kind, schedule), action in zip(layout, actions, strict=True):
            if action is not None:
                if type(action) is not str:
                    raise ValueError(f"slots.{vin}: action {_shown(action)} is not a string")
                action = share(action, action)
            vehicle[slot] = new(SlotRecord, (program, callback, action, kind, schedule))
        slots[vin] = vehicle
    return slots


def _decode_action(rid: str, raw: Any) -> ActionRecord:
    if type(raw) is not list or len(raw) != 7:
        raise ValueError(f"actions.{rid} is not an action record")
    vin, callback, posted_at, outcome, status, cause, updated_at = raw
    if type(vin) is not str or type(callback) is not str or type(posted_at) is not str:
        raise ValueError(f"actions.{rid} holds a value of the wrong type")
    for value in (status, cause, updated_at):
        if value is not None and type(value) is not str:
            raise ValueError(f"actions.{rid} holds a value of the wrong type")
    if outcome is not None and not isinstance(outcome, str):  # an Outcome, in a state copied in memory
        raise ValueError(f"actions.{rid} holds a value of the wrong type")
    if outcome is not None:
        if outcome not in _OUTCOMES:
            raise ValueError(f"actions.{rid}: outcome {_shown(outcome)} is not one of {', '.join(OUTCOMES)}")
        outcome = _OUTCOMES[outcome]
    parse_time(posted_at)  # ValueError when it is not a time
    return ActionRecord(vin, callback, posted_at, outcome, status, cause, updated_at)


def _decode_callback(name: str, raw: Any) -> CallbackRecord:
    raw = _mapping(raw, f"callbacks.{name}")
    spec, secrets, status = raw["spec"], raw.get("secrets", {}), raw["status"]
    if type(raw["id"]) is not str or type(status) is not str:
        raise ValueError(f"callbacks.{name} holds a value of the wrong type")
    _mapping(spec, f"callbacks.{name}.spec")
    if any(type(value) is not str for value in _mapping(secrets, f"callbacks.{name}.secrets").values()):
        raise ValueError(f"callbacks.{name}.secrets holds a value that is not a fingerprint")
    return CallbackRecord(raw["id"], dict(spec), dict(secrets), status)


def _strings(raw: Any, what: str) -> dict[str, str]:
    mapping = _mapping(raw, what)
    if any(type(value) is not str for value in mapping.values()):
        raise ValueError(f"{what} holds a value that is not a string")
    return dict(mapping)


def _decode(data: dict[str, Any]) -> State:
    if data["version"] == 1:
        slots = _decode_slots_v1(data.get("slots", {}))
    else:
        slots = _decode_vehicles(data.get("slots", {}), _decode_layouts(data.get("layouts", [])))
    serial = data["serial"]
    if not _is_int(serial) or serial < 0:
        raise ValueError(f"serial {_shown(serial)}")
    for key in ("lineage", "fleet", "salt"):
        if type(data[key]) is not str:
            raise ValueError(f"{key} {_shown(data[key])} is not a string")
    return State(
        lineage=data["lineage"],
        serial=serial,
        fleet=data["fleet"],
        salt=data["salt"],
        vehicles_index=_strings(data.get("vehicles_index", {}), "vehicles_index"),
        callbacks={
            name: _decode_callback(name, raw) for name, raw in _mapping(data.get("callbacks", {}), "callbacks").items()
        },
        slots=slots,
        actions={rid: _decode_action(rid, raw) for rid, raw in _mapping(data.get("actions", {}), "actions").items()},
        not_in_fleet=_strings(data.get("not_in_fleet", {}), "not_in_fleet"),
        holds={vin: _decode_hold(vin, raw) for vin, raw in _mapping(data.get("holds", {}), "holds").items()},
        read_at={
            vin: read_time(raw, f"read_at.{vin}") for vin, raw in _mapping(data.get("read_at", {}), "read_at").items()
        },
        drifted={vin: _decode_mark(vin, raw) for vin, raw in _mapping(data.get("drifted", {}), "drifted").items()},
    )


_HOLD_KEYS = frozenset({"until", "cause", "attempts"})
MAX_CAUSE = 128  # as an event's failureCause (state/events.py)


def _decode_hold(vin: str, raw: Any) -> Hold:
    raw = _mapping(raw, f"holds.{vin}")
    if raw.keys() != _HOLD_KEYS:
        raise ValueError(f"holds.{vin} is not {{until, cause, attempts}}")
    until, cause, attempts = raw["until"], raw["cause"], raw["attempts"]
    if type(until) is not str or type(cause) is not str or not 0 < len(cause) <= MAX_CAUSE:
        raise ValueError(f"holds.{vin} holds a value of the wrong type")
    if not _is_int(attempts) or attempts < 1:
        raise ValueError(f"holds.{vin}: attempts {_shown(attempts)} is not a count of failures")
    parse_time(until)  # ValueError when it is not a time
    return Hold(until, cause, attempts)


_READ_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def read_stamp(moment: datetime) -> str:
    """`2026-11-25T07:00:00.250000Z`: a read's time, to the microsecond; equal-length texts that sort in time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_time(raw: Any, what: str) -> str:
    """A recorded read time in the canonical form of read_stamp (an RFC 3339 time in another form is rewritten
    in it, so that the texts keep sorting in time)."""
    if type(raw) is not str:
        raise ValueError(f"{what} {_shown(raw)} is not a time")
    if _READ_TIME.fullmatch(raw):
        return raw
    return read_stamp(_time(raw, what))


_MARK_KEYS = frozenset({"at", "wanted"})


def _decode_mark(vin: str, raw: Any) -> DriftMark:
    raw = _mapping(raw, f"drifted.{vin}")
    if raw.keys() != _MARK_KEYS:
        raise ValueError(f"drifted.{vin} is not {{at, wanted}}")
    at, wanted = raw["at"], raw["wanted"]
    if type(at) is not str or type(wanted) is not str or not 0 < len(wanted) <= 128:
        raise ValueError(f"drifted.{vin} holds a value of the wrong type")
    _time(at, f"drifted.{vin}.at")
    return DriftMark(at, wanted)


def _time(text: str, what: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(f"{what} {_shown(text)} is not a time") from None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ValueError(f"{what} is not a mapping")
    return value


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, not float


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
