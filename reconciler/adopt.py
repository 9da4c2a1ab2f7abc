"""`reconciler import`: adopt callbacks and vehicle programs that already exist, changing nothing, so a fleet
configured by hand is onboarded with a first plan that shows only real differences."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.api import wire
from reconciler.api.client import FleetClient
from reconciler.callbacks import SECTIONS, callback_spec, fingerprint
from reconciler.envsubst import SENSITIVE
from reconciler.errors import ApiAnswerError, ReconcilerError
from reconciler.model import Desired
from reconciler.refresh import live_spec
from reconciler.state.model import SlotRecord, State
from reconciler.state.record import record_callback


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
                program, assignment.callback, None, "Set", assignment.schedule
            )
            count += 1
        recorded[vin] = count
    return recorded
