"""`reconciler refresh`: read back the live callbacks and every managed vehicle's programs, record what is
really there, and report drift by class. The next plan then repairs what changed or went away."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from reconciler.api.client import FleetClient
from reconciler.callbacks import SECTIONS, SENSITIVE
from reconciler.errors import ApiError
from reconciler.manifests.normalise import canonical_days, canonical_start
from reconciler.model import Desired, Program
from reconciler.state.model import DONE, SlotRecord, State


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # changed, deleted, foreign, callback-missing, callback-changed, callback-status
    address: str
    detail: str


def live_program(data: dict[str, Any]) -> Program:
    """A program as a vehicle's status shows it, in the planner's canonical form."""
    days = (data.get("occurence") or data.get("occurrence") or {}).get("day", [])
    return Program(
        int(data["slot"]),
        canonical_start(str(data["start"])),
        canonical_days(list(days)),
        str(data.get("recurrence", "Daily")),
        bool(data.get("enabled", True)),
    )


def live_spec(subscribe: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """A callback's `subscribe` in the recorded spec's shape; values the record masks stay masked."""
    webhook = (subscribe.get("callback") or {}).get("webhook") or {}
    shaped: dict[str, Any] = {
        "webhook": {
            "target": webhook.get("target"),
            "name": webhook.get("name"),
            "headers": {},
            "query": {},
            "body": {},
        },
        "remoteTypes": list(subscribe.get("remoteTypes") or []),
    }
    for attribute in webhook.get("attributes") or []:
        section = SECTIONS.get(str(attribute.get("type")))
        if section:
            shaped["webhook"][section][str(attribute.get("key"))] = attribute.get("value")
    for key in ("retryPolicy", "batchNotify"):
        if key in subscribe:
            shaped[key] = subscribe[key]
    recorded_webhook = recorded.get("webhook", {})
    if recorded_webhook.get("target") == SENSITIVE:
        shaped["webhook"]["target"] = SENSITIVE
    for section in ("headers", "query", "body"):
        for key, value in recorded_webhook.get(section, {}).items():
            if value == SENSITIVE and key in shaped["webhook"][section]:
                shaped["webhook"][section][key] = SENSITIVE
    return shaped


def refresh(state: State, desired: Desired, client: FleetClient, parallelism: int = 8) -> list[Drift]:
    drift = _callbacks(state, client)
    managed = sorted(vin for vin in state.slots if vin in state.vehicles_index)
    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        statuses = list(pool.map(lambda vin: _status(client, state.vehicles_index[vin]), managed))
    for vin, status in zip(managed, statuses, strict=True):
        if status is not None:
            drift.extend(_vehicle(state, desired, vin, status))
    return drift


def _status(client: FleetClient, vehicle_id: str) -> dict[str, Any] | None:
    try:
        return client.vehicle_status(vehicle_id)
    except ApiError:
        return None


def _callbacks(state: State, client: FleetClient) -> list[Drift]:
    live = client.callbacks()
    by_id = {str(c.get("id")): c for c in live}
    by_label = {str((c.get("subscribe") or {}).get("label")): c for c in live}
    drift = []
    for name, record in sorted(state.callbacks.items()):
        found = by_id.get(record.id) or by_label.get(name)
        address = f"callback.{name}"
        if found is None:
            drift.append(Drift("callback-missing", address, f"callback {record.id} no longer exists"))
            del state.callbacks[name]
            continue
        record.id = str(found.get("id"))
        status = str(found.get("status", record.status))
        if status != record.status:
            drift.append(Drift("callback-status", address, f"status {record.status} -> {status}"))
            record.status = status
        spec = live_spec(found.get("subscribe") or {}, record.spec)
        if spec != record.spec:
            drift.append(Drift("callback-changed", address, "its settings were changed outside reconciler"))
            record.spec = spec
    return drift


def _vehicle(state: State, desired: Desired, vin: str, status: dict[str, Any]) -> list[Drift]:
    air = (status.get("preconditioning") or status.get("preconditionning") or {}).get("airConditioning") or {}
    live: dict[int, Program] = {}
    for data in air.get("programs") or []:
        try:
            program = live_program(data)
        except (KeyError, TypeError, ValueError):
            continue
        live[program.slot] = program
    recorded = state.slots.setdefault(vin, {})
    wanted = {a.program.slot for a in desired.vehicles.get(vin, ())}
    drift = []
    for slot, record in sorted(recorded.items()):
        if record.kind == "Foreign":
            if slot not in live:
                del recorded[slot]  # gone: the slot is free for the schedule again
            elif live[slot] != record.program:
                recorded[slot] = SlotRecord(live[slot], "", None, "Foreign", "")
            continue
        action = state.actions.get(record.action) if record.action else None
        settled = record.action is None or (action is not None and action.outcome in DONE)
        if record.kind != "Set" or not settled:
            continue  # in flight or failed: the outcome rules decide, not what the vehicle shows yet
        address = f"vehicle.{vin}.slot.{slot}"
        found = live.get(slot)
        if found is None:
            drift.append(Drift("deleted", address, "the program is gone from the vehicle"))
            del recorded[slot]
        elif found != record.program:
            drift.append(Drift("changed", address, f"the vehicle holds {found.start} {','.join(found.days)}"))
            recorded[slot] = SlotRecord(found, record.callback, None, "Set", record.schedule)
    for slot in sorted(live):
        if slot in wanted and slot not in recorded:
            drift.append(
                Drift("foreign", f"vehicle.{vin}.slot.{slot}", "a program reconciler did not set holds this slot")
            )
            recorded[slot] = SlotRecord(live[slot], "", None, "Foreign", "")  # the next plan will not clobber it
    if recorded:
        state.slots[vin] = recorded
    else:
        state.slots.pop(vin, None)
    return drift
