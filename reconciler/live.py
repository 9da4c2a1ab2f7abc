"""The live fleet read back: drift found by `refresh`, callbacks and programs adopted by `import`.

`refresh` reads the live callbacks and every managed vehicle's programs, records what is really there and
reports drift by class; the next plan repairs what changed or went away. A vehicle whose status cannot be read
is reported as such, never counted as "no drift"; a systemic failure (the client's breaker) stops the whole
refresh without saving anything. `import` adopts what exists, changing nothing, so a fleet configured by hand is
onboarded with a first plan that shows only real differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.address import Address
from reconciler.api import wire
from reconciler.api.client import FleetClient
from reconciler.callbacks import SECTIONS, callback_spec, fingerprint
from reconciler.envsubst import SENSITIVE
from reconciler.errors import ApiAnswerError, ApiError, ApiUnavailableError, ReconcilerError
from reconciler.model import Desired, Program
from reconciler.state.model import DONE, SlotKind, SlotRecord, State
from reconciler.state.record import record_callback
from reconciler.words import program_text


class DriftKind(StrEnum):
    CHANGED = "changed"  # a program changed out of band
    DELETED = "deleted"  # a program gone from the vehicle
    FOREIGN = "foreign"  # a program reconciler did not set, in a slot the manifests manage
    CALLBACK_MISSING = "callback-missing"
    CALLBACK_CHANGED = "callback-changed"
    CALLBACK_STATUS = "callback-status"


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    address: Address
    detail: str


@dataclass
class Refreshed:
    """What refresh found: drift, the vehicles it could not read (and why), and whether the state changed."""

    drift: list[Drift] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    changed: bool = False


def live_spec(subscribe: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """A callback's `subscribe` in the recorded spec's shape; values the record masks stay masked."""
    hook = wire.webhook(subscribe)
    shaped: dict[str, Any] = {
        "webhook": {
            "target": wire.text(hook.get("target")),
            "name": wire.text(hook.get("name")),
            "headers": {},
            "query": {},
            "body": {},
        },
        "remoteTypes": [t for t in subscribe.get("remoteTypes") or [] if isinstance(t, str)]
        if isinstance(subscribe.get("remoteTypes"), list)
        else [],
    }
    for kind, key, value in wire.attributes(hook):
        shaped["webhook"][SECTIONS[kind]][key] = value
    for key in ("retryPolicy", "batchNotify"):
        if isinstance(subscribe.get(key), dict):
            shaped[key] = {k: v for k, v in subscribe[key].items() if isinstance(v, str | int) and len(str(v)) < 64}
    recorded_webhook = recorded.get("webhook", {})
    if recorded_webhook.get("target") == SENSITIVE:
        shaped["webhook"]["target"] = SENSITIVE
    for section in ("headers", "query", "body"):
        for key, value in recorded_webhook.get(section, {}).items():
            if value == SENSITIVE and key in shaped["webhook"][section]:
                shaped["webhook"][section][key] = SENSITIVE
    return shaped


def refresh(
    state: State, desired: Desired, client: FleetClient, parallelism: int = 8, vins: Iterable[str] | None = None
) -> Refreshed:
    """Read back the callbacks and every managed vehicle; with `vins`, those vehicles only (the callbacks are
    not read: `serve` reads a few vehicles at a time within its budget of reads)."""
    found = Refreshed()
    if vins is None:
        _callbacks(state, client, found)
    chosen = state.slots if vins is None else set(vins)
    managed = sorted(vin for vin in chosen if vin in state.vehicles_index and vin in state.slots)
    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        statuses = list(pool.map(lambda vin: _status(client, state.vehicles_index[vin]), managed))
    for vin, status in zip(managed, statuses, strict=True):
        if isinstance(status, str):
            found.unread[vin] = status
        else:
            found.drift.extend(_vehicle(state, desired, vin, status, found))
    found.changed = found.changed or bool(found.drift)
    return found


def _status(client: FleetClient, vehicle_id: str) -> dict[str, Any] | str:
    """The vehicle's status, or why it could not be read (a systemic failure stops the whole refresh)."""
    try:
        return client.vehicle_status(vehicle_id)
    except ApiUnavailableError:
        raise
    except ApiError as error:
        return str(error)


def _callbacks(state: State, client: FleetClient, found: Refreshed) -> None:
    live = client.callbacks()
    by_id = {wire.callback_id(c): c for c in live}
    by_label = {wire.label(c): c for c in live}
    for name, record in sorted(state.callbacks.items()):
        match = by_id.get(record.id) or by_label.get(name)
        address = Address.of_callback(name)
        if match is None:
            found.drift.append(Drift(DriftKind.CALLBACK_MISSING, address, f"callback {record.id} no longer exists"))
            del state.callbacks[name]
            continue
        identity = wire.callback_id(match)
        if identity is not None and identity != record.id:
            record.id, found.changed = identity, True
        status = wire.callback_status(match) or record.status
        if status != record.status:
            found.drift.append(Drift(DriftKind.CALLBACK_STATUS, address, f"status {record.status} -> {status}"))
            record.status = status
        spec = live_spec(wire.subscribe(match), record.spec)
        paths = spec_differences(record.spec, spec)
        if paths:
            shown = ", ".join(paths)
            detail = f"changed outside reconciler: {shown}; the next plan sets them back"
            found.drift.append(Drift(DriftKind.CALLBACK_CHANGED, address, detail))
            record.spec = spec


def spec_differences(recorded: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """The dotted paths where a live callback differs from the recorded one. DeepDiff, because this compares
    an API's answer with a record: list order means nothing here (the API may return remoteTypes in another
    order), and the report names paths. The planner's hot path keeps its flat comparator (reconciler.diff)."""
    from deepdiff import DeepDiff  # loaded only by refresh

    tree = DeepDiff(recorded, live, ignore_order=True, view="tree")
    return sorted(
        {".".join(str(step) for step in item.path(output_format="list")) for items in tree.values() for item in items}
    )


def _vehicle(state: State, desired: Desired, vin: str, status: dict[str, Any], found: Refreshed) -> list[Drift]:
    live = wire.programs(status)
    recorded = state.slots.setdefault(vin, {})
    wanted = {a.program.slot: a for a in desired.vehicles.get(vin, ())}
    drift = []
    for slot, record in sorted(recorded.items()):
        if record.kind == SlotKind.FOREIGN:
            if slot not in live:
                del recorded[slot]  # gone: the slot is free for the schedule again
                found.changed = True
            elif live[slot] != record.program:
                recorded[slot] = SlotRecord(live[slot], "", None, SlotKind.FOREIGN, "")
                found.changed = True
            continue
        action = state.actions.get(record.action) if record.action else None
        settled = record.action is None or (action is not None and action.outcome in DONE)
        if record.kind != SlotKind.SET or not settled:
            continue  # in flight or failed: the outcome rules decide, not what the vehicle shows yet
        address = Address.of_slot(vin, slot)
        held = live.get(slot)
        if held is None:
            drift.append(
                Drift(DriftKind.DELETED, address, "the program is gone from the vehicle; the next plan sets it again")
            )
            del recorded[slot]
        elif held != record.program:
            drift.append(
                Drift(
                    DriftKind.CHANGED,
                    address,
                    f"the vehicle holds {program_text(held)} instead of {program_text(record.program)}; "
                    "the next plan sets it back",
                )
            )
            recorded[slot] = SlotRecord(held, record.callback, None, SlotKind.SET, record.schedule)
    for slot in sorted(live):
        if slot in wanted and slot not in recorded:
            schedule = wanted[slot].schedule
            drift.append(
                Drift(
                    DriftKind.FOREIGN,
                    Address.of_slot(vin, slot),
                    f"holds {program_text(live[slot])}, a program reconciler did not set; the next plan leaves it "
                    f"alone unless schedule '{schedule}' has `takeover: true` (or plan and apply run with --takeover)",
                )
            )
            recorded[slot] = SlotRecord(live[slot], "", None, SlotKind.FOREIGN, "")  # the next plan will not clobber it
    if recorded:
        state.slots[vin] = recorded
    else:
        state.slots.pop(vin, None)
    return drift


def held_programs(client: FleetClient, vehicles: Mapping[str, str]) -> dict[str, dict[int, Program]]:
    """VIN -> slot -> the program each vehicle holds now (`vehicles`: VIN -> vehicle id)."""
    return {vin: wire.programs(client.vehicle_status(vehicle)) for vin, vehicle in sorted(vehicles.items())}


# ---- import: adopt what exists -------------------------------------------------------------------------


def adopt_callback(state: State, desired: Desired, name: str, live: dict[str, Any], key: str | None = None) -> None:
    """Record the live callback `live` as the manifests' callback `name` (secrets as fingerprints only, keyed
    with `key`, else the state's salt)."""
    wanted = desired.callbacks.get(name)
    if wanted is None:
        raise ReconcilerError(f"no Callback named '{name}' in the manifests")
    identity = wire.callback_id(live)
    if identity is None:
        raise ApiAnswerError(f"the API's answer for callback '{name}' carries no id")
    key = key or state.salt
    subscription = wire.subscribe(live)
    spec = live_spec(subscription, callback_spec(wanted))
    hook = wire.webhook(subscription)
    secrets = {}
    if spec["webhook"]["target"] == SENSITIVE:
        secrets["webhook.target"] = fingerprint(key, "webhook.target", wire.text(hook.get("target")) or "")
    for kind, attribute, value in wire.attributes(hook):
        section = SECTIONS[kind]
        if spec["webhook"][section].get(attribute) == SENSITIVE:
            path = f"webhook.{section}.{attribute}"
            secrets[path] = fingerprint(key, path, value)
    record_callback(state, name, identity, spec, secrets, wire.callback_status(live) or "Running")


def adopt_callbacks(state: State, desired: Desired, client: FleetClient, key: str | None = None) -> list[str]:
    """Adopt every live callback whose label is a manifest callback's name; the names adopted."""
    by_label: dict[str | None, list[dict[str, Any]]] = {}
    for live in client.callbacks():
        by_label.setdefault(wire.label(live), []).append(live)
    adopted = []
    for name in sorted(desired.callbacks):
        found = by_label.get(name, [])
        if len(found) > 1:
            ids = ", ".join(str(wire.callback_id(c)) for c in found)
            raise ReconcilerError(f"{len(found)} callbacks carry the label '{name}' ({ids}): import one by id")
        if found:
            adopt_callback(state, desired, name, found[0], key)
            adopted.append(name)
    return adopted


def adopt_vehicles(state: State, desired: Desired, client: FleetClient, vins: Iterable[str] = ()) -> dict[str, int]:
    """Record the programs the vehicles hold in the slots the manifests manage; VIN -> slots recorded."""
    state.vehicles_index.update(client.vehicles())
    chosen = [vin.upper() for vin in vins] or sorted(desired.vehicles)
    recorded: dict[str, int] = {}
    for vin in chosen:
        vehicle = state.vehicles_index.get(vin)
        if vehicle is None:
            raise ReconcilerError(f"{vin} is not a vehicle of fleet {client.fleet}")
        assignments = {a.program.slot: a for a in desired.vehicles.get(vin, ())}
        count = 0
        for slot, program in sorted(wire.programs(client.vehicle_status(vehicle)).items()):
            assignment = assignments.get(slot)
            if assignment is None:
                continue  # a slot the manifests leave alone: not ours to record
            state.slots.setdefault(vin, {})[slot] = SlotRecord(
                program, assignment.callback, None, SlotKind.SET, assignment.schedule
            )
            count += 1
        recorded[vin] = count
    return recorded
