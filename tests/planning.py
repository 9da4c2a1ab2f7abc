"""Builders for planner tests: desired models and recorded states made directly, no files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.callbacks import callback_spec, fingerprints
from reconciler.clock import isotime
from reconciler.diagnostics import Source
from reconciler.envsubst import EnvValue
from reconciler.model import DAYS, Attribute, Callback, Desired, Program, Schedule, SlotAssignment
from reconciler.plan import CallKind, Plan
from reconciler.planner import PlanOptions, make_plan
from reconciler.state.model import ActionRecord, CallbackRecord, SlotRecord, State
from reconciler.state.record import record_callback, record_outcome, record_remote

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
VIN_A, VIN_B, VIN_C = "VF3UHNKF5RL000005", "VF7SHMZH8RP000001", "VR1JCHNS0RM000002"
WEEKDAYS = DAYS[:5]


def program(slot: int, start: str = "PT7H30M", days: tuple[str, ...] = WEEKDAYS, **extra: Any) -> Program:
    return Program(slot, start, days, **extra)


def callback(name: str = "cb", secret: str | None = None, status: str = "Running", **extra: Any) -> Callback:
    attributes = ()
    if secret is not None:
        attributes = (Attribute("Header", "Authorization", EnvValue("${env:HOOK}", secret, Source("m"))),)
    fields: dict[str, Any] = {
        "name": name,
        "target": EnvValue("https://h.example/x", "https://h.example/x", Source("m")),
        "webhook_name": name,
        "attributes": attributes,
        "remote_types": ("ThermalPreconditioning",),
        "retry_policy": None,
        "batch_notify": None,
        "status": status,
        "source": Source("m"),
    }
    fields.update(extra)
    return Callback(**fields)


def desired(
    vehicles: Mapping[str, Iterable[Program]] | None = None,
    callbacks: Iterable[Callback] = (),
    via: str = "cb",
    schedule: str = "s",
    groups: Mapping[str, tuple[str, ...]] | None = None,
) -> Desired:
    cbs = {c.name: c for c in callbacks} or {"cb": callback()}
    slots = {
        vin: tuple(SlotAssignment(p, via, schedule) for p in sorted(programs, key=lambda p: p.slot))
        for vin, programs in (vehicles or {}).items()
    }
    schedules = {schedule: Schedule(schedule, via, frozenset(slots), (), (), Source("m"))}
    return Desired(cbs, groups or {}, schedules, slots, (), "sha256:manifests")


def state(
    slots: Mapping[str, Mapping[int, SlotRecord]] | None = None,
    actions: Mapping[str, ActionRecord] | None = None,
    callbacks: Iterable[Callback] | None = None,
    salt: str = "salt",
) -> State:
    recorded = State(lineage="lineage-1", serial=3, fleet="fleet-1", salt=salt)
    for cb in callbacks if callbacks is not None else [callback()]:
        recorded.callbacks[cb.name] = CallbackRecord(
            f"id-{cb.name}", callback_spec(cb), fingerprints(cb, salt), cb.status
        )
    recorded.slots = {vin: dict(records) for vin, records in (slots or {}).items()}
    recorded.actions = dict(actions or {})
    return recorded


def action(
    vin: str,
    outcome: str | None,
    *,
    age: timedelta = timedelta(minutes=5),
    cause: str | None = None,
    via: str = "cb",
    status: str | None = None,
) -> ActionRecord:
    return ActionRecord(vin, via, isotime(NOW - age), outcome, status, cause)


def plan(want: Desired, have: State | None, **options: Any) -> Plan:
    return make_plan(want, have, "fleet-1", PlanOptions(now=NOW, **options))


def record_success(result: Plan, recorded: State, want: Desired) -> State:
    """What a fully successful apply of `result` records: callbacks created, every remote accepted, then Success."""
    stamp = isotime(NOW)
    for index, call in enumerate(result.calls):
        if call.kind is CallKind.CREATE_CALLBACK:
            wanted = want.callbacks[call.callback]
            spec, secrets = callback_spec(wanted), fingerprints(wanted, recorded.salt)
            record_callback(recorded, call.callback, f"id-{index}", spec, secrets, wanted.status)
        elif call.kind is CallKind.REMOTE:
            action_id = f"r{recorded.serial}-{index}"
            assert call.vin is not None
            entries = zip(call.programs, call.schedules, strict=True)
            carried = [(verb, program, schedule) for (verb, program), schedule in entries]
            record_remote(recorded, call.vin, call.callback, carried, action_id, stamp)
            assert record_outcome(recorded, action_id, "Success", status="Success", at=stamp)
    return recorded


def json_changes(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A plan document's changes one address at a time, as a tool reading `plan --format json` expands them."""
    rows = [{key: change[key] for key in ("address", "action", "cause")} for change in document["callbacks"]]
    for group in document["groups"]:
        assert group["vehicles"] == len(group["vins"])
        for vin in group["vins"]:
            rows += [
                {"address": f"vehicle.{vin}.slot.{c['slot']}", "action": c["action"], "cause": c["cause"]}
                for c in group["slots"]
            ]
    return rows


def json_notices(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A plan document's notices one address at a time (a vehicle's, or each of its slots')."""
    rows = []
    for notice in document["notices"]:
        for vin in notice["vins"]:
            addresses = [f"vehicle.{vin}.slot.{slot}" for slot in notice["slots"]] or [f"vehicle.{vin}"]
            rows += [{"address": a, "kind": notice["kind"], "detail": notice["detail"]} for a in addresses]
    return rows
