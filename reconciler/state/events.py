"""Outcome events (webhook notifications, polled remote status) folded into slot outcomes.

Folding is idempotent: a duplicate changes nothing, a Pending never overwrites a final outcome, and an older
Pending never overwrites a newer one.

The events file is written by the receiver, but anything may be in it (a hand edit, an older receiver, another
program): folding checks each entry's shape first and skips what it cannot trust, so a bad line never reaches
the state nor stops a command. An outcome counts only when it arrived through the callback its remote action
was posted with; anything else could be forged by whoever holds another callback's credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from reconciler.clock import parse_time
from reconciler.state.model import Outcome, State
from reconciler.state.record import outcome_of, record_outcome

# bounds on what an event may hold: generous for the API's identifiers and enums (which it may extend), small
# enough that a hostile sender cannot grow the events file or the state with one field
MAX_ID = 256
MAX_WORD = 128
MAX_VIN = 64
MAX_DATE = 64

# field -> (required, longest); every value is a string (optional ones may be null)
FIELDS: dict[str, tuple[bool, int]] = {
    "callbackId": (True, MAX_ID),
    "remoteActionId": (True, MAX_ID),
    "type": (True, MAX_WORD),
    "status": (True, MAX_WORD),
    "vin": (False, MAX_VIN),
    "eventDate": (False, MAX_DATE),
    "remoteType": (False, MAX_WORD),
    "failureCause": (False, MAX_WORD),
    "feedbackDetail": (False, MAX_WORD),
    "callback": (False, MAX_ID),
    "received_at": (False, MAX_DATE),
}

# why folding set an event aside
UNKNOWN_ACTION = "unknown-action"
OTHER_CALLBACK = "other-callback"
MALFORMED = "malformed"


def string_problem(value: Any, required: bool, longest: int) -> str | None:
    """Why `value` is not an acceptable event string, or None."""
    if value is None:
        return "is required" if required else None
    if not isinstance(value, str):
        return "must be a string"
    if required and not value:
        return "must not be empty"
    if len(value) > longest:
        return f"must be at most {longest} characters"
    return None


def date_problem(value: Any) -> str | None:
    """Why `value` is not an ISO 8601 date-time (as the webhook template's eventDate is), or None."""
    if value is None:
        return None
    problem = string_problem(value, False, MAX_DATE)
    if problem:
        return problem
    try:
        parse_time(value)
    except ValueError:
        return "must be an ISO 8601 date-time"
    return None


def event_problem(entry: Any) -> str | None:
    """Why a recorded event cannot be folded (its field and what is wrong), or None when its shape is sound."""
    if not isinstance(entry, Mapping):
        return "not an object"
    for name, (required, longest) in FIELDS.items():
        problem = date_problem(entry.get(name)) if name == "eventDate" else None
        problem = problem or string_problem(entry.get(name), required, longest)
        if problem:
            return f"{name}: {problem}"
    return None


def event_outcome(event: Mapping[str, Any]) -> Outcome:
    """Pending, Success, AlreadyDone or Failed; a `type: Failed` (seen in the vendor's prose) is final too."""
    kind, status = event.get("type"), str(event.get("status", ""))
    if kind == "Failed":
        return Outcome.FAILED
    if kind == "Done":
        return outcome_of(status)
    return Outcome.PENDING


def verdict(state: State | None, entry: Any) -> str | None:
    """Why folding sets this entry aside (MALFORMED, OTHER_CALLBACK, UNKNOWN_ACTION), or None: it counts."""
    if event_problem(entry) is not None:
        return MALFORMED
    action = state.actions.get(entry["remoteActionId"]) if state is not None else None
    if action is None:
        return UNKNOWN_ACTION
    assert state is not None
    posted_with = state.callbacks.get(action.callback)
    if posted_with is None or posted_with.id != entry["callbackId"]:
        return OTHER_CALLBACK
    return None


@dataclass
class Folded:
    """What folding did: outcomes that changed the state, and the entries it set aside, by reason."""

    changed: int = 0
    unknown: list[str] = field(default_factory=list)  # remote action ids the state does not know
    other_callback: int = 0
    malformed: int = 0


def fold(state: State, events: Iterable[Any], zone: tzinfo = UTC) -> Folded:
    """Fold every sound event whose remote action the state knows, from the callback it was posted with
    (`zone`: the fleet's time zone, where the month of a monthly hold ends)."""
    result = Folded()
    for event in events:
        reason = verdict(state, event)
        if reason == MALFORMED:
            result.malformed += 1
        elif reason == UNKNOWN_ACTION:
            result.unknown.append(event["remoteActionId"])
        elif reason == OTHER_CALLBACK:
            result.other_callback += 1
        else:
            result.changed += record_outcome(
                state,
                event["remoteActionId"],
                event_outcome(event),
                status=event["status"],
                cause=event.get("failureCause"),
                at=event.get("eventDate"),
                zone=zone,
            )
    return result


def fold_events(state: State, events: Iterable[Any], zone: tzinfo = UTC) -> tuple[int, list[str]]:
    """Fold events into `state`: how many changed it, and the remote action ids it does not know.

    Malformed entries and outcomes from another callback are skipped (see `fold` for their counts).
    """
    result = fold(state, events, zone)
    return result.changed, result.unknown


def set_aside(state: State | None, events: Iterable[Any]) -> list[dict[str, Any]]:
    """What a writer keeps in the events file once it has folded the rest into a saved state: every entry
    folding ignored, flagged with why (`unmatched`: no such remote action; `rejected`: malformed, or from
    another callback than the remote action's), so `status` can show them and nothing is silently dropped."""
    kept: list[dict[str, Any]] = []
    for event in events:
        reason = verdict(state, event)
        if reason is None:
            continue
        if not isinstance(event, Mapping):
            kept.append({"rejected": MALFORMED, "entry": event})
        elif reason == UNKNOWN_ACTION:
            kept.append({**event, "unmatched": True})
        else:
            kept.append({**event, "rejected": reason})
    return kept


def tally(state: State | None, events: Iterable[Any]) -> dict[str, int]:
    """How many events folding ignores, by reason, for `status`."""
    counts = {UNKNOWN_ACTION: 0, OTHER_CALLBACK: 0, MALFORMED: 0}
    for event in events:
        reason = verdict(state, event)
        if reason is not None:
            counts[reason] += 1
    return {
        "unmatched_events": counts[UNKNOWN_ACTION],
        "other_callback_events": counts[OTHER_CALLBACK],
        "malformed_events": counts[MALFORMED],
    }
