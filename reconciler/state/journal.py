"""The journal: an intent appended (fsync) before each API call and a result after it.

Folding the journal into a state applies every call that the API accepted; an intent without a result
is returned as unknown, for the next writer to resolve (look a callback's label up, look a remote up by its
label). The first run of a new state starts its journal with a `begin` entry holding the state's lineage and
fingerprint salt, so a run killed before its first save leaves fingerprints the next run can still compare.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.address import Address
from reconciler.api import wire
from reconciler.errors import StateError
from reconciler.model import Program
from reconciler.state.model import State
from reconciler.state.record import forget_callback, record_callback, record_remote

OPS = frozenset({"create-callback", "update-callback", "callback-status", "delete-callback", "remote"})


def begin(state: State) -> dict[str, Any]:
    return {"kind": "begin", "lineage": state.lineage, "salt": state.salt, "fleet": state.fleet}


def intent(op: str, **data: Any) -> dict[str, Any]:
    return {"kind": "intent", "id": uuid.uuid4().hex, "op": op, **data}


def result(entry: Mapping[str, Any], ok: bool, **data: Any) -> dict[str, Any]:
    return {"kind": "result", "id": entry["id"], "ok": ok, **data}


def apply_result(state: State, entry: Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
    """Record in `state` what one accepted call did (the same code path for live runs and recovery)."""
    op = entry["op"]
    if op in ("create-callback", "update-callback"):
        record_callback(state, entry["name"], outcome["callback_id"], entry["spec"], entry["secrets"], entry["status"])
    elif op == "callback-status":
        record = state.callbacks.get(entry["name"])
        if record is not None:
            record.status = entry["status"]
    elif op == "delete-callback":
        forget_callback(state, entry["name"])
    elif op == "remote":
        vin, callback, carried = remote_of(entry)
        record_remote(state, vin, callback, carried, outcome["action_id"], outcome["posted_at"])


def remote_of(entry: Mapping[str, Any]) -> tuple[str, str, list[tuple[str, Program, str]]]:
    """(VIN, callback, [(actionsType, program, schedule)]) of a remote's intent (its call as the plan wrote it,
    and the schedule of each change address); KeyError, TypeError or ValueError when it is not one."""
    call, views = entry["call"], entry.get("views") or {}
    vin, callback = call["vin"], call["callback"]
    if not isinstance(vin, str) or not isinstance(callback, str):
        raise ValueError("a remote intent names no VIN or callback")
    carried = []
    for program_entry, text in zip(call["programs"], call["changes"], strict=True):
        verb, program = wire.entry_program(program_entry)
        schedule = (views.get(str(Address.parse(text))) or {}).get("schedule", "")
        carried.append((verb, program, str(schedule)))
    return vin, callback, carried


def fold(state: State, entries: Iterable[Mapping[str, Any]], origin: str = "the journal") -> list[Mapping[str, Any]]:
    """Apply every successful call of the journal to `state`; the intents whose outcome is unknown.

    StateError, naming the entry, for one that cannot be applied (the journal is corrupt): the caller saves
    nothing then.
    """
    intents: dict[str, Mapping[str, Any]] = {}
    order: list[str] = []
    for number, entry in enumerate(entries, start=1):
        kind = entry.get("kind")
        if kind == "begin" and not state.serial:
            # a new state whose first run was killed before saving: keep its lineage and fingerprint salt
            if isinstance(entry.get("lineage"), str) and isinstance(entry.get("salt"), str):
                state.lineage, state.salt = entry["lineage"], entry["salt"]
        elif kind == "intent":
            if not isinstance(entry.get("id"), str) or entry.get("op") not in OPS:
                raise StateError(f"{origin} is corrupt: entry {number} is not an intent reconciler writes")
            intents[entry["id"]] = entry
            order.append(entry["id"])
        elif kind == "result" and isinstance(entry.get("id"), str) and entry["id"] in intents:
            started = intents.pop(entry["id"])
            if entry.get("ok") is True:
                try:
                    apply_result(state, started, entry)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                    raise StateError(
                        f"{origin} is corrupt: entry {number} ({started.get('op')}) cannot be applied "
                        f"({type(error).__name__}: {str(error)[:100]})"
                    ) from error
    return [intents[key] for key in order if key in intents]
