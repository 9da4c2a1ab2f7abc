"""`reconciler status`: how far the fleet has converged, from the state, its pending events and a fresh plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from reconciler.model import Desired
from reconciler.plan import Plan
from reconciler.state.events import tally
from reconciler.state.model import State


def fleet_status(
    desired: Desired, state: State | None, plan: Plan, events: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    vehicles = set(desired.vehicles) | set(state.slots if state else ())
    changing = {c.vin for c in plan.changes if c.vin}
    in_flight = {n.address.split(".")[1] for n in plan.notices if n.kind == "in-flight"}
    causes: Counter[str] = Counter()
    failed: set[str] = set()
    for notice in plan.notices:
        if notice.kind == "failed":
            failed.add(notice.address.split(".")[1])
            causes[notice.detail.split(" ")[0]] += 1
    for change in plan.changes:
        if change.cause and change.cause.startswith("Failed: ") and change.vin:
            failed.add(change.vin)
            causes[change.cause[len("Failed: ") :]] += 1
    drifted = {n.address.split(".")[1] for n in plan.notices if n.kind == "foreign"}
    for change in plan.changes:  # a change against a program refresh saw on the vehicle repairs drift
        if change.vin and change.before is not None and state is not None:
            record = state.slots.get(change.vin, {}).get(int(change.address.rsplit(".", 1)[1]))
            if record is not None and record.action is None:
                drifted.add(change.vin)
    pending = [a.posted_at for a in (state.actions.values() if state else ()) if a.outcome in (None, "Pending")]
    events = list(events)
    received = [str(e["received_at"]) for e in events if isinstance(e, Mapping) and e.get("received_at")]
    updated = [a.updated_at for a in (state.actions.values() if state else ()) if a.updated_at]
    return {
        "vehicles": len(vehicles),
        "converged": len(vehicles - changing - in_flight - failed),
        "in_flight": len(in_flight),
        "to_change": len(changing - failed),
        "failed": len(failed),
        "drifted": len(drifted),
        "failed_by_cause": dict(sorted(causes.items())),
        "oldest_pending": min(pending) if pending else None,
        "last_event": max(received + updated) if received or updated else None,
        **tally(state, events),  # events folding ignores: unknown remote action, another callback, malformed
    }


def render_status(status: Mapping[str, Any], out: TextIO) -> None:
    out.write(
        f"Vehicles: {status['vehicles']:,}: {status['converged']:,} converged, {status['in_flight']:,} in flight, "
        f"{status['to_change']:,} to change ({status['drifted']:,} drifted), {status['failed']:,} failed.\n"
    )
    for cause, count in status["failed_by_cause"].items():
        out.write(f"  failed {cause}: {count:,} slots\n")
    out.write(f"Oldest pending remote: {status['oldest_pending'] or 'none'}\n")
    out.write(f"Last outcome received: {status['last_event'] or 'none yet'}\n")
    if status["unmatched_events"]:
        out.write(f"Events for remote actions reconciler did not send: {status['unmatched_events']:,} (kept)\n")
    if status["other_callback_events"]:
        out.write(
            f"Events from another callback than their remote action's: {status['other_callback_events']:,} (ignored)\n"
        )
    if status["malformed_events"]:
        out.write(f"Malformed events in the events file: {status['malformed_events']:,} (ignored)\n")
