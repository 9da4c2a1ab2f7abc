"""The journal: an intent appended (fsync) before each API call and a result after it.

Folding the journal into a state applies every call that the API accepted; an intent without a result
is returned as unknown, for the next writer to resolve (look a callback's label up; re-send a remote).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.plan import Call
from reconciler.state.model import State
from reconciler.state.record import forget_callback, record_callback, record_remote


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
        call = Call.from_dict(entry["call"])
        record_remote(state, call, entry["views"], outcome["action_id"], outcome["posted_at"])


def fold(state: State, entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Apply every successful call of the journal to `state`; the intents whose outcome is unknown."""
    intents: dict[str, Mapping[str, Any]] = {}
    order: list[str] = []
    for entry in entries:
        if entry.get("kind") == "intent":
            intents[entry["id"]] = entry
            order.append(entry["id"])
        elif entry.get("kind") == "result" and entry.get("id") in intents:
            started = intents.pop(entry["id"])
            if entry.get("ok"):
                apply_result(state, started, entry)
    return [intents[key] for key in order if key in intents]
