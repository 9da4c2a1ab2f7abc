"""Fleet health from the state (Healthy, Progressing, Degraded, Held, Unknown) and sync from a plan, per vehicle,
per group and for the fleet, as `status` shows them."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta

from reconciler.clock import isotime
from reconciler.health import Health, VehicleHealth, fleet_health, holds_in_force, out_of_sync, vehicle_health
from reconciler.render.status import render_status
from reconciler.state.model import Hold, SlotKind, SlotRecord, State
from reconciler.status import fleet_status
from tests.planning import NOW, action, desired, plan, program, state

VINS = [f"VF3UHNKF5RL{i:06d}" for i in range(7)]
HEALTHY, PENDING, FAILED, OBSERVED, GONE, HELD, NOTHING = VINS


def fleet() -> State:
    """One vehicle of each kind: slots 1 and 2 recorded as wanted, each ending its own way."""
    recorded = state()
    endings = {HEALTHY: "Success", PENDING: "Pending", FAILED: "Failed", HELD: "Failed", GONE: None}
    for vin, outcome in endings.items():
        records = {}
        for slot in (1, 2):
            rid = f"r-{vin}-{slot}"
            records[slot] = SlotRecord(program(slot), "cb", rid, SlotKind.SET, "s")
            if outcome is not None:
                last = outcome if slot == 2 else "AlreadyDone"
                recorded.actions[rid] = action(vin, last, cause="VehicleError" if last == "Failed" else None)
        recorded.slots[vin] = records
    # observed on the vehicle (refresh, import), plus a program of someone else's that health does not judge
    recorded.slots[OBSERVED] = {
        1: SlotRecord(program(1), "cb", None, SlotKind.SET, "s"),
        3: SlotRecord(program(3), "cb", "r-foreign", SlotKind.FOREIGN, "s"),
    }
    recorded.holds[HELD] = Hold(isotime(NOW + timedelta(minutes=5)), "VehicleError", 1)
    recorded.holds[HEALTHY] = Hold(isotime(NOW - timedelta(minutes=5)), "VehicleError", 1)  # ended
    return recorded


def test_each_vehicle_has_one_health() -> None:
    recorded = fleet()
    holds = holds_in_force(recorded, NOW)
    assert holds.keys() == {HELD}
    assert {vin: vehicle_health(recorded, vin, holds) for vin in VINS} == {
        HEALTHY: VehicleHealth(Health.HEALTHY),
        PENDING: VehicleHealth(Health.PROGRESSING),
        FAILED: VehicleHealth(Health.DEGRADED, "VehicleError"),
        OBSERVED: VehicleHealth(Health.HEALTHY),
        GONE: VehicleHealth(Health.UNKNOWN),  # the remotes' records are gone: never confirmed
        HELD: VehicleHealth(Health.HELD, "VehicleError"),
        NOTHING: VehicleHealth(Health.UNKNOWN),  # named by the manifests, nothing recorded yet
    }


def test_fleet_and_groups_count_health_and_sync_apart() -> None:
    recorded = fleet()
    want = desired(
        {vin: [program(1), program(2)] for vin in VINS},
        groups={"north": (HEALTHY, FAILED, NOTHING), "south": (PENDING, OBSERVED)},
    )
    result = plan(want, recorded)
    assert result.vins() == {FAILED, NOTHING, OBSERVED, GONE}  # a retry, a new vehicle, slot 2 to set, unknown
    # and HELD's retry is held back: undone too; PENDING's remote is on its way
    assert out_of_sync(result) == {FAILED, NOTHING, OBSERVED, GONE, HELD}
    report = fleet_health(want, recorded, result, NOW)
    assert report["vehicles"] == 7
    assert report["health"] == {"Healthy": 2, "Progressing": 1, "Degraded": 1, "Held": 1, "Unknown": 2}
    assert report["sync"] == {"Synced": 2, "OutOfSync": 5}
    assert report["groups"] == {
        "north": {
            "vehicles": 3,
            "health": {"Healthy": 1, "Progressing": 0, "Degraded": 1, "Held": 0, "Unknown": 1},
            "sync": {"Synced": 1, "OutOfSync": 2},
        },
        "south": {
            "vehicles": 2,
            "health": {"Healthy": 1, "Progressing": 1, "Degraded": 0, "Held": 0, "Unknown": 0},
            "sync": {"Synced": 1, "OutOfSync": 1},
        },
    }
    assert report["held"] == [{"vin": HELD, "until": "2026-11-25T08:05:00Z", "cause": "VehicleError", "attempts": 1}]


def test_status_counts_held_vehicles_and_shows_health() -> None:
    recorded = fleet()
    want = desired({vin: [program(1), program(2)] for vin in VINS}, groups={"north": (HEALTHY, HELD)})
    report = fleet_status(want, recorded, plan(want, recorded), [], NOW)
    # HELD's retry is held back: not converged, not to change
    assert (report["held"], report["converged"], report["to_change"]) == (1, 1, 3)
    out = io.StringIO()
    render_status(report, out)
    text = out.getvalue()
    assert text.startswith(
        "Vehicles: 7: 1 converged, 1 in flight, 3 to change (0 drifted), 1 failed, 1 held back.\n"
        "Health: 2 Healthy, 1 Progressing, 1 Degraded, 1 Held, 2 Unknown. Sync: 2 Synced, 5 OutOfSync.\n"
        "  group north (2 vehicles): 1 Healthy, 1 Held; 1 Synced, 1 OutOfSync\n"
        f"Held: {HELD} until 2026-11-25T08:05:00Z (VehicleError, 1 failure)\n"
    ), text


def test_status_names_the_first_held_vehicles_and_counts_the_rest() -> None:
    recorded = State.new("fleet-1")
    until = isotime(NOW + timedelta(days=3))
    recorded.holds = {f"VF3UHNKF5RL{i:06d}": Hold(until, "TooManyWakeUpsOverMonth", 1) for i in range(12)}
    want = desired({})
    report = fleet_status(want, recorded, plan(want, recorded), [], NOW)
    out = io.StringIO()
    render_status(report, out)
    assert out.getvalue().count("Held: VF3") == 10
    assert "Held: 2 more vehicles (every one: --format json)\n" in out.getvalue()
    assert len(report["fleet_health"]["held"]) == 12


def test_a_hold_ends_at_its_time() -> None:
    recorded = fleet()
    hold = recorded.holds[HELD]
    assert holds_in_force(recorded, NOW + timedelta(minutes=5)) == {}
    recorded.holds[HELD] = dataclasses.replace(hold, until=isotime(NOW + timedelta(minutes=5, seconds=1)))
    assert holds_in_force(recorded, NOW + timedelta(minutes=5)).keys() == {HELD}
