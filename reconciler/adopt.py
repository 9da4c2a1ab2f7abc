"""`reconciler import`: adopt callbacks and vehicle programs that already exist, changing nothing, so a fleet
configured by hand is onboarded with a first plan that shows only real differences."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.api.client import FleetClient
from reconciler.callbacks import SECTIONS, SENSITIVE, callback_spec, fingerprint
from reconciler.errors import ReconcilerError
from reconciler.model import Desired
from reconciler.refresh import live_program, live_spec
from reconciler.state.model import SlotRecord, State
from reconciler.state.record import record_callback


def adopt_callback(state: State, desired: Desired, name: str, live: dict[str, Any]) -> None:
    """Record the live callback `live` as the manifests' callback `name` (secrets as fingerprints only)."""
    wanted = desired.callbacks.get(name)
    if wanted is None:
        raise ReconcilerError(f"no Callback named '{name}' in the manifests")
    subscribe = live.get("subscribe") or {}
    spec = live_spec(subscribe, callback_spec(wanted))
    webhook = (subscribe.get("callback") or {}).get("webhook") or {}
    secrets = {}
    if spec["webhook"]["target"] == SENSITIVE:
        secrets["webhook.target"] = fingerprint(state.salt, "webhook.target", str(webhook.get("target", "")))
    for attribute in webhook.get("attributes") or []:
        path = f"webhook.{SECTIONS.get(str(attribute.get('type')), '')}.{attribute.get('key')}"
        section, key = path.split(".")[1], str(attribute.get("key"))
        if spec["webhook"].get(section, {}).get(key) == SENSITIVE:
            secrets[path] = fingerprint(state.salt, path, str(attribute.get("value", "")))
    record_callback(state, name, str(live.get("id")), spec, secrets, str(live.get("status", "Running")))


def adopt_callbacks(state: State, desired: Desired, client: FleetClient) -> list[str]:
    """Adopt every live callback whose label is a manifest callback's name; the names adopted."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for live in client.callbacks():
        by_label.setdefault(str((live.get("subscribe") or {}).get("label")), []).append(live)
    adopted = []
    for name in sorted(desired.callbacks):
        found = by_label.get(name, [])
        if len(found) > 1:
            ids = ", ".join(str(c.get("id")) for c in found)
            raise ReconcilerError(f"{len(found)} callbacks carry the label '{name}' ({ids}): import one by id")
        if found:
            adopt_callback(state, desired, name, found[0])
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
        status = client.vehicle_status(vehicle)
        air = (status.get("preconditioning") or {}).get("airConditioning") or {}
        count = 0
        for data in air.get("programs") or []:
            program = live_program(data)
            assignment = assignments.get(program.slot)
            if assignment is None:
                continue  # a slot the manifests leave alone: not ours to record
            state.slots.setdefault(vin, {})[program.slot] = SlotRecord(
                program, assignment.callback, None, "Set", assignment.schedule
            )
            count += 1
        recorded[vin] = count
    return recorded
