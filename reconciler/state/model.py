"""The recorded state and its JSON form (format version 1).

Differences from a naive one-record-per-slot layout, for fleets of 100,000 vehicles:
- outcomes belong to remote actions (`actions`), as the API reports them: one POST per vehicle and callback
  carries several slots, and one remoteActionId's outcome covers all of them;
- a slot is a short list `[program, callback, action, kind, schedule]` whose program is the compact text
  `PT7H30M/Mon,Tue/Daily/on`, and an action the list `[vin, callback, posted_at, outcome, status, cause,
  updated_at]`, so the state of 400,000 slots loads in a fraction of the time and memory.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.errors import StateError
from reconciler.model import DAYS, Program

STATE_VERSION = 1
OUTCOMES = ("Pending", "Success", "AlreadyDone", "Failed")
DONE = ("Success", "AlreadyDone")


class SlotRecord(NamedTuple):
    """What reconciler last asked of one slot: `kind` Set (holds `program`) or Delete (clears it); or, with kind
    Foreign, a program refresh found there that reconciler did not set.

    A named tuple rather than a dataclass: a large state holds hundreds of thousands of them.
    """

    program: Program
    callback: str
    action: str | None = None
    kind: str = "Set"
    schedule: str = ""


@dataclass(slots=True)
class ActionRecord:
    """A remote action reconciler posted, and the latest outcome known for it."""

    vin: str
    callback: str
    posted_at: str
    outcome: str | None = "Pending"
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

    @classmethod
    def new(cls, fleet: str) -> State:
        """An empty state with a fresh lineage and fingerprint salt."""
        return cls(lineage=str(uuid.uuid4()), serial=0, fleet=fleet, salt=secrets.token_hex(16))

    @property
    def slot_count(self) -> int:
        """Slots reconciler manages (programs found there that it did not set are not counted)."""
        return sum(1 for slots in self.slots.values() for record in slots.values() if record.kind != "Foreign")

    def outcome(self, record: SlotRecord) -> ActionRecord | None:
        return self.actions.get(record.action) if record.action else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "fleet": self.fleet,
            "salt": self.salt,
            "vehicles_index": dict(sorted(self.vehicles_index.items())),
            "callbacks": {name: record.to_dict() for name, record in sorted(self.callbacks.items())},
            "slots": {
                vin: {str(number): _encode_slot(record) for number, record in sorted(slots.items())}
                for vin, slots in sorted(self.slots.items())
            },
            "actions": {rid: record.to_list() for rid, record in sorted(self.actions.items())},
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> State:
        """Decode a state document; StateError (never a crash) for anything corrupt, foreign or newer."""
        if not isinstance(data, dict) or "version" not in data or "lineage" not in data:
            raise StateError(f"{origin} is not a reconciler state file")
        version = data["version"]
        if not isinstance(version, int) or version > STATE_VERSION:
            raise StateError(
                f"{origin} has state version {version}, newer than this reconciler reads ({STATE_VERSION}); "
                "upgrade reconciler"
            )
        try:
            return _decode(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise StateError(f"{origin} is corrupt: {type(error).__name__}: {error}") from error


def program_text(program: Program) -> str:
    return f"{program.start}/{','.join(program.days)}/{program.recurrence}/{'on' if program.enabled else 'off'}"


def _encode_slot(record: SlotRecord) -> list[Any]:
    return [program_text(record.program), record.callback, record.action, record.kind, record.schedule]


_KINDS = {"Set": "Set", "Delete": "Delete", "Foreign": "Foreign"}
_SLOTS = {"1": 1, "2": 2, "3": 3, "4": 4}


def _program(slot: int, text: str) -> Program:
    start, days, recurrence, enabled = text.split("/")
    chosen = tuple(days.split(",")) if days else ()
    if any(day not in DAYS for day in chosen) or enabled not in ("on", "off"):
        raise ValueError(f"bad program {text!r}")
    return Program(slot, start, chosen, recurrence, enabled == "on")


def _decode_slots(raw: dict[str, Any]) -> dict[str, dict[int, SlotRecord]]:
    """The hot loop of loading a large state: equal programs and strings are shared, not copied."""
    programs: dict[tuple[int, str], Program] = {}
    strings: dict[str, str] = {}
    share = strings.setdefault
    slots: dict[str, dict[int, SlotRecord]] = {}
    for vin, raw_slots in raw.items():
        vehicle = {}
        for number, (text, callback, action, kind, schedule) in raw_slots.items():
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


def _decode(data: dict[str, Any]) -> State:
    slots = _decode_slots(data.get("slots", {}))
    serial = data["serial"]
    if not isinstance(serial, int) or serial < 0:
        raise ValueError(f"serial {serial!r}")
    return State(
        lineage=str(data["lineage"]),
        serial=serial,
        fleet=str(data["fleet"]),
        salt=str(data["salt"]),
        vehicles_index={str(k): str(v) for k, v in data.get("vehicles_index", {}).items()},
        callbacks={
            name: CallbackRecord(str(raw["id"]), dict(raw["spec"]), dict(raw.get("secrets", {})), str(raw["status"]))
            for name, raw in data.get("callbacks", {}).items()
        },
        slots=slots,
        actions={rid: ActionRecord(*raw) for rid, raw in data.get("actions", {}).items()},
    )
