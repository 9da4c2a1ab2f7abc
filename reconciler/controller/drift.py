"""Drift found by the controller within a budget of reads, and what becomes of it (self-heal, or left alone).

Reading every vehicle's status every interval would spend a fleet's daily API quota on reads; `serve` reads a
few vehicles per run instead (`serve.drift_reads_per_hour`), round-robin over the managed fleet: the vehicles
least recently read first (never read before any other), in VIN order among equals. Where each vehicle was last
read is recorded in the state (`read_at`), so a restarted controller, or a new leader, goes on where the last
one stopped rather than reading the start of the fleet again.

The vehicles are read by live.refresh, restricted to them, so drift is recorded exactly as `reconciler refresh`
records it: what a vehicle holds now is what the state says it holds, and the next plan sets it back. A vehicle
found changed is also marked (`drifted`: when, and a fingerprint of what the manifests asked of it then):
- with `serve.self_heal`, the run's apply repairs it; the mark goes once the vehicle is seen holding the
  manifests' programs again, confirmed by an outcome of a remote posted since (a repair); a repair that keeps
  failing backs off through the vehicle's holds, like any other failure;
- without it, the marked vehicles are left out of the run's apply (as `--exclude vin:...` would), so the driver's
  programs stay; the mark goes when the manifests ask something else of the vehicle (new work, applied at once),
  or when the vehicle is seen holding the manifests' programs again (the driver set them back).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.api.client import FleetClient
from reconciler.clock import isotime
from reconciler.live import Drift, DriftKind, refresh
from reconciler.manifests import load_desired
from reconciler.model import Desired
from reconciler.operations import Workspace, writer_state
from reconciler.state.lock import Lease
from reconciler.state.model import DONE, DriftMark, SlotKind, State, program_text, read_stamp

# drift the next plan repairs (a program found where reconciler set none is left alone without `takeover`)
REPAIRABLE = (DriftKind.CHANGED, DriftKind.DELETED)


@dataclass
class DriftRead:
    """What one run's drift read found."""

    read: list[str] = field(default_factory=list)  # VINs whose status was read (or tried)
    drift: list[Drift] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)  # VIN -> why its status could not be read
    drifted: list[str] = field(default_factory=list)  # VINs found drifted by this read
    repaired: list[str] = field(default_factory=list)  # VINs seen repaired since the last read
    left: list[str] = field(default_factory=list)  # VINs the apply leaves as found (self-heal off)


def reads_per_run(per_hour: int, interval: float) -> int:
    """Vehicles read per run: the hourly budget spread over the runs of an hour, at least one unless it is 0."""
    if per_hour <= 0:
        return 0
    return max(1, int(per_hour * interval / 3600))


def next_vehicles(state: State, count: int) -> list[str]:
    """The `count` managed vehicles to read next: least recently read first, never read first of all, VIN order
    among equals (a batch is stamped with one time, so the fleet is read round-robin in VIN order)."""
    if count <= 0:
        return []
    read_at = state.read_at
    managed = (vin for vin in state.slots if vin in state.vehicles_index)
    return heapq.nsmallest(count, managed, key=lambda vin: (read_at.get(vin, ""), vin))


def wanted(desired: Desired, vin: str) -> str:
    """A fingerprint of what the manifests ask of a vehicle: its slots' programs and callbacks."""
    rows = sorted((a.program.slot, program_text(a.program), a.callback) for a in desired.vehicles.get(vin, ()))
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def in_line(state: State, desired: Desired, vin: str) -> bool:
    """The state says the vehicle holds the manifests' programs, and nothing sent to it is unsettled."""
    records = state.slots.get(vin, {})
    held = {slot: record.program for slot, record in records.items() if record.kind == SlotKind.SET}
    if held != {a.program.slot: a.program for a in desired.vehicles.get(vin, ())}:
        return False
    for record in records.values():
        action = state.outcome(record)
        if record.action is not None and (action is None or action.outcome not in DONE):
            return False
    return True


def repaired_since(state: State, vin: str, mark: DriftMark) -> bool:
    """A remote posted to the vehicle since it was found drifted is what set its programs back."""
    return any(
        action.posted_at >= mark.at
        for record in state.slots.get(vin, {}).values()
        if (action := state.outcome(record)) is not None
    )


def settle_marks(state: State, desired: Desired, found: DriftRead) -> bool:
    """Drop the marks of vehicles that hold the manifests' programs again (repaired, or set back by the driver),
    that the manifests no longer name, or of which they now ask something else. True when a mark went."""
    changed = False
    for vin, mark in sorted(state.drifted.items()):
        if vin not in desired.vehicles or wanted(desired, vin) != mark.wanted:
            del state.drifted[vin]
            changed = True
        elif in_line(state, desired, vin):
            del state.drifted[vin]
            changed = True
            if repaired_since(state, vin, mark):
                found.repaired.append(vin)
    return changed


def read_drift(
    workspace: Workspace,
    environ: Mapping[str, str],
    client: FleetClient,
    count: int,
    *,
    self_heal: bool,
    now: datetime,
    parallelism: int = 8,
) -> DriftRead:
    """Read `count` vehicles (see next_vehicles) through `client`, record what they hold and when they were read,
    mark the drifted ones, and save; what was found, and the vehicles the run's apply must leave alone."""
    desired, _ = load_desired(workspace.settings.manifests, environ, strict=True)
    found = DriftRead()
    with Lease(workspace.backend, "drift read", stop=client.stop) as lease:
        state, _ = writer_state(workspace, client, lease, save_events=False)
        if not state.serial:
            return found  # nothing recorded yet: nothing can have drifted
        changed = settle_marks(state, desired, found)
        found.read = next_vehicles(state, count)
        if found.read:
            refreshed = refresh(state, desired, client, parallelism, vins=found.read)
            found.drift, found.unread = refreshed.drift, refreshed.unread
            stamp = read_stamp(now)
            for vin in found.read:
                state.read_at[vin] = stamp
            for vin in [vin for vin in state.read_at if vin not in state.slots]:
                del state.read_at[vin]  # no longer managed: nothing to read
            found.drifted = sorted({d.address.key for d in found.drift})  # a vehicle read: slot drift only
            for vin in sorted({d.address.key for d in found.drift if d.kind in REPAIRABLE}):
                if vin in desired.vehicles:
                    state.drifted[vin] = DriftMark(isotime(now), wanted(desired, vin))
            changed = True
        if not self_heal:
            found.left = sorted(state.drifted)
        if changed:
            lease.check()
            state.serial = workspace.backend.save(state, state.serial, lock=lease.id)
    return found
