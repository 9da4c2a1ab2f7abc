"""Recording what happened into the state: callbacks created, remotes posted, outcomes learnt.

Apply records each call as it completes, the webhook receiver and polling record outcomes; all go through
these functions, so a state only ever changes in these few ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.clock import earlier
from reconciler.model import Program
from reconciler.state.model import DONE, FINAL, ActionRecord, CallbackRecord, Outcome, SlotKind, SlotRecord, State


def record_callback(
    state: State, name: str, callback_id: str, spec: dict[str, Any], secrets: dict[str, str], status: str
) -> None:
    state.callbacks[name] = CallbackRecord(callback_id, spec, dict(secrets), status)


def forget_callback(state: State, name: str) -> None:
    state.callbacks.pop(name, None)


def record_remote(
    state: State,
    vin: str,
    callback: str,
    carried: Iterable[tuple[str, Program, str]],
    action_id: str,
    posted_at: str,
) -> None:
    """A remote the API accepted: its slots now hold (or are being cleared of) the programs it carried.

    `carried`: (actionsType Set or Delete, program, schedule that asked for it) of each slot in the remote.
    """
    slots = state.slots.setdefault(vin, {})
    for verb, program, schedule in carried:
        slots[program.slot] = SlotRecord(program, callback, action_id, SlotKind(verb), schedule)
    state.actions[action_id] = ActionRecord(vin, callback, posted_at)


def record_outcome(
    state: State,
    action_id: str,
    outcome: Outcome,
    *,
    status: str | None = None,
    cause: str | None = None,
    at: str | None = None,
) -> bool:
    """Fold one outcome into the state; False when it changes nothing (unknown action, duplicate, stale).

    A Pending never overwrites a final outcome, nor a newer Pending. A delete that succeeded clears its slots.
    """
    action = state.actions.get(action_id)
    if action is None:
        return False
    if action.outcome in FINAL and outcome not in FINAL:
        return False
    if outcome not in FINAL and earlier(at, action.updated_at):
        return False  # an older Pending, delivered late
    if (action.outcome, action.status, action.cause) == (outcome, status, cause):
        return False
    action.outcome, action.status, action.cause, action.updated_at = outcome, status, cause, at
    if outcome in DONE:
        slots = state.slots.get(action.vin, {})
        for number in [n for n, r in slots.items() if r.action == action_id and r.kind == SlotKind.DELETE]:
            del slots[number]
        if not slots:
            state.slots.pop(action.vin, None)
    return True


def outcome_of(status: str) -> Outcome:
    """Pending, Success, AlreadyDone or Failed for a RemoteAction.status (the API flattens the Pending ones,
    Accepted to SentToVehicle, into the same field) or an event's status."""
    return Outcome(status) if status in FINAL else Outcome.PENDING
