"""`reconciler status`: how far the fleet has converged, from the state, its pending events and a fresh plan.

The figures only; render/status.py writes them for people, the command writes them as JSON for tools.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from reconciler.clock import utcnow
from reconciler.health import fleet_health
from reconciler.model import Desired
from reconciler.plan import CauseKind, NoticeKind, Plan
from reconciler.state.events import tally
from reconciler.state.model import State


def fleet_status(
    desired: Desired,
    state: State | None,
    plan: Plan,
    events: Iterable[Mapping[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Convergence figures from a plan, and health (reconciler.health) from the state at `now`."""
    vehicles = set(desired.vehicles) | set(state.slots if state else ())
    changing = plan.vins()
    noticed: dict[NoticeKind, set[str]] = {kind: set() for kind in NoticeKind}
    causes: Counter[str] = Counter()
    pending = []
    for notice in plan.notice_groups:
        noticed[notice.kind].update(notice.vins)
        if notice.kind == NoticeKind.FAILED:
            causes[notice.failure or "unknown cause"] += notice.count
        elif notice.kind == NoticeKind.IN_FLIGHT and state is not None:
            # the oldest remote still in flight: only actions that carry a slot the plan sees in flight (an action
            # a later remote replaced may stay Pending in the state forever, and is not waited for)
            for vin in notice.vins:
                for slot in notice.slots:
                    record = state.slots.get(vin, {}).get(slot)
                    action = state.outcome(record) if record is not None else None
                    if action is not None:
                        pending.append(action.posted_at)
    failed, drifted = noticed[NoticeKind.FAILED], noticed[NoticeKind.FOREIGN]
    for group in plan.groups:
        for change in group.slots:
            if change.cause is not None and change.cause.kind == CauseKind.FAILED:
                failed.update(group.vins)
                causes[change.cause.failure or "unknown cause"] += len(group.vins)
        if state is None:
            continue
        repaired = [change.slot for change in group.slots if change.before is not None]
        for vin in group.vins:  # a change against a program refresh saw on the vehicle repairs drift
            records = state.slots.get(vin, {})
            if any(slot in records and records[slot].action is None for slot in repaired):
                drifted.add(vin)
    events = list(events)
    received = [str(e["received_at"]) for e in events if isinstance(e, Mapping) and e.get("received_at")]
    updated = [a.updated_at for a in (state.actions.values() if state else ()) if a.updated_at]
    absent = noticed[NoticeKind.NOT_IN_FLEET]
    # each vehicle counts once: a vehicle with a slot to change and another in flight is to change
    held = noticed[NoticeKind.HELD] - changing - failed  # a vehicle whose only changes a hold keeps back
    in_flight = noticed[NoticeKind.IN_FLIGHT] - changing - failed - held
    return {
        "vehicles": len(vehicles),
        "converged": len(vehicles - changing - in_flight - failed - absent - held),
        "not_in_fleet": len(absent),
        "in_flight": len(in_flight),
        "to_change": len(changing - failed),
        "failed": len(failed),
        "held": len(held),
        "drifted": len(drifted),
        "failed_by_cause": dict(sorted(causes.items())),
        "oldest_pending": min(pending) if pending else None,
        "last_event": max(received + updated) if received or updated else None,
        "fleet_health": fleet_health(desired, state, plan, now or utcnow()),
        **tally(state, events),  # events folding ignores: unknown remote action, another callback, malformed
    }
