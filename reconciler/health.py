"""Fleet health: how each vehicle's managed slots stand, from the recorded outcomes and holds alone.

A vehicle is
- Held while a hold is in force (state.holds: out of wake-ups for the month, or backing off after failures);
- else Degraded when the last remote of one of its managed slots Failed (the cause is kept);
- else Progressing when one is still Pending;
- else Unknown when one's outcome was never learnt (its remote's record is gone), or nothing of it is recorded;
- else Healthy: every managed slot's last remote Succeeded (or AlreadyDone), or refresh/import observed it there.
Programs reconciler did not set (foreign slots) are not its to judge, and count for nothing.

Sync is separate: a vehicle is OutOfSync when a plan has changes for it or leaves something of the manifests
undone (held back, failed for good, someone else's program, not in the fleet), Synced otherwise (a remote in
flight is synced: what it carries is on its way). Health says how the last attempt went, sync whether the
manifests and the record still differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.clock import parse_time
from reconciler.model import Desired
from reconciler.plan import NoticeKind, Plan
from reconciler.state.model import DONE, UNKNOWN_CAUSE, Hold, Outcome, SlotKind, State


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    HELD = "Held"
    UNKNOWN = "Unknown"


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"


@dataclass(frozen=True, slots=True)
class VehicleHealth:
    health: Health
    cause: str | None = None  # Degraded: the failure's cause; Held: the hold's


def holds_in_force(state: State | None, now: datetime) -> dict[str, Hold]:
    """The holds that have not ended at `now`."""
    if state is None:
        return {}
    return {vin: hold for vin, hold in state.holds.items() if parse_time(hold.until) > now}


def vehicle_health(state: State | None, vin: str, holds: Mapping[str, Hold]) -> VehicleHealth:
    """One vehicle's health (`holds`: those in force)."""
    hold = holds.get(vin)
    if hold is not None:
        return VehicleHealth(Health.HELD, hold.cause)
    records = state.slots.get(vin, {}) if state is not None else {}
    failure: str | None = None
    pending = unknown = False
    managed = 0
    for record in records.values():
        if record.kind == SlotKind.FOREIGN:
            continue
        managed += 1
        if record.action is None:
            continue  # observed on the vehicle
        assert state is not None
        action = state.actions.get(record.action)
        if action is None:
            unknown = True
        elif action.outcome == Outcome.FAILED:
            failure = failure or action.cause or UNKNOWN_CAUSE
        elif action.outcome not in DONE:
            pending = True
    if failure is not None:
        return VehicleHealth(Health.DEGRADED, failure)
    if pending:
        return VehicleHealth(Health.PROGRESSING)
    if unknown or not managed:
        return VehicleHealth(Health.UNKNOWN)
    return VehicleHealth(Health.HEALTHY)


def _counts(healths: Iterable[Health], out_of_sync: int, total: int) -> dict[str, Any]:
    counted = Counter(healths)
    return {
        "vehicles": total,
        "health": {health.value: counted[health] for health in Health},
        "sync": {Sync.SYNCED.value: total - out_of_sync, Sync.OUT_OF_SYNC.value: out_of_sync},
    }


def out_of_sync(plan: Plan) -> set[str]:
    """The vehicles a plan changes, or notices something undone on (every notice but one of a remote in flight)."""
    vins = plan.vins()
    for notice in plan.notice_groups:
        if notice.kind != NoticeKind.IN_FLIGHT:
            vins.update(notice.vins)
    return vins


def fleet_health(desired: Desired, state: State | None, plan: Plan, now: datetime) -> dict[str, Any]:
    """Health and sync counts for the fleet and each vehicle group of the manifests, and the holds in force.

    The fleet is every vehicle the manifests name or the state records; a group counts those of its VINs."""
    holds = holds_in_force(state, now)
    vins = set(desired.vehicles) | set(state.slots if state is not None else ())
    grouped = {vin for members in desired.groups.values() for vin in members}
    health = {vin: vehicle_health(state, vin, holds).health for vin in vins | grouped}
    changing = out_of_sync(plan)
    groups = {}
    for name, members in sorted(desired.groups.items()):
        group = set(members)
        groups[name] = _counts((health[vin] for vin in group), len(group & changing), len(group))
    return {
        **_counts((health[vin] for vin in vins), len(vins & changing), len(vins)),
        "groups": groups,
        "held": [{"vin": vin, **holds[vin].to_dict()} for vin in sorted(holds)],
    }
