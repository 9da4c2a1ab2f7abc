"""`reconciler status`: how far the fleet has converged, from the state, its pending events and a fresh plan.

The figures only; render/status.py writes them for people, the command writes them as JSON for tools.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import Desired
from reconciler.plan import CauseKind, NoticeKind, Plan
from reconciler.state.events import tally
from reconciler.state.model import State


def fleet_status(
    desired: Desired, state: State | None, plan: Plan, events: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    vehicles = set(desired.vehicles) | set(state.slots if state else ())
    changing = {c.vin for c in plan.changes if c.vin}
    in_flight = {n.address.key for n in plan.notices if n.kind == NoticeKind.IN_FLIGHT}
    causes: Counter[str] = Counter()
    failed: set[str] = set()
    for notice in plan.notices:
        if notice.kind == NoticeKind.FAILED:
            failed.add(notice.address.key)
            causes[notice.failure or "unknown cause"] += 1
    for change in plan.changes:
        if change.cause is not None and change.cause.kind == CauseKind.FAILED and change.vin:
            failed.add(change.vin)
            causes[change.cause.failure or "unknown cause"] += 1
    absent = {n.address.key for n in plan.notices if n.kind == NoticeKind.NOT_IN_FLEET}
    drifted = {n.address.key for n in plan.notices if n.kind == NoticeKind.FOREIGN}
    for change in plan.changes:  # a change against a program refresh saw on the vehicle repairs drift
        if change.vin and change.address.slot and change.before is not None and state is not None:
            record = state.slots.get(change.vin, {}).get(change.address.slot)
            if record is not None and record.action is None:
                drifted.add(change.vin)
    # the oldest remote still in flight: only actions that carry a slot the plan sees in flight (an action a
    # later remote replaced may stay Pending in the state forever, and is not waited for)
    pending = []
    for notice in plan.notices:
        if notice.kind != NoticeKind.IN_FLIGHT or state is None or notice.address.slot is None:
            continue
        record = state.slots.get(notice.address.key, {}).get(notice.address.slot)
        action = state.outcome(record) if record is not None else None
        if action is not None:
            pending.append(action.posted_at)
    events = list(events)
    received = [str(e["received_at"]) for e in events if isinstance(e, Mapping) and e.get("received_at")]
    updated = [a.updated_at for a in (state.actions.values() if state else ()) if a.updated_at]
    return {
        "vehicles": len(vehicles),
        "converged": len(vehicles - changing - in_flight - failed - absent),
        "not_in_fleet": len(absent),
        "in_flight": len(in_flight),
        "to_change": len(changing - failed),
        "failed": len(failed),
        "drifted": len(drifted),
        "failed_by_cause": dict(sorted(causes.items())),
        "oldest_pending": min(pending) if pending else None,
        "last_event": max(received + updated) if received or updated else None,
        **tally(state, events),  # events folding ignores: unknown remote action, another callback, malformed
    }
