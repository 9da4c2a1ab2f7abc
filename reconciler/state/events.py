"""Outcome events (webhook notifications, polled remote status) folded into slot outcomes.

Folding is idempotent: a duplicate changes nothing, a Pending never overwrites a final outcome, and an older
Pending never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.state.model import State
from reconciler.state.record import outcome_of, record_outcome


def event_outcome(event: Mapping[str, Any]) -> str:
    """Pending, Success, AlreadyDone or Failed; a `type: Failed` (seen in the vendor's prose) is final too."""
    kind, status = event.get("type"), str(event.get("status", ""))
    if kind == "Failed":
        return "Failed"
    if kind == "Done":
        return outcome_of(status)
    return "Pending"


def fold_events(state: State, events: Iterable[Mapping[str, Any]]) -> tuple[int, list[str]]:
    """Fold events into `state`: how many changed it, and the remote action ids it does not know."""
    changed = 0
    unknown: list[str] = []
    for event in events:
        action_id = str(event.get("remoteActionId", ""))
        if action_id not in state.actions:
            unknown.append(action_id)
            continue
        changed += record_outcome(
            state,
            action_id,
            event_outcome(event),
            status=event.get("status"),
            cause=event.get("failureCause"),
            at=event.get("eventDate"),
        )
    return changed, unknown
