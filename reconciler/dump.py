"""`reconciler import --write-manifests DIR`: manifests that describe the live fleet, like octodns-dump.

Callbacks become Callback documents (header values are never written: each becomes a `${env:...}` reference
to set); vehicles holding the same programs become one VehicleGroup and one Preconditioning schedule.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from reconciler.api.client import FleetClient
from reconciler.manifests.files import display_name
from reconciler.refresh import live_program
from reconciler.render.blocks import days_text, hhmm

HEADER = "# Written by reconciler import --write-manifests from the live fleet; review before committing.\n"


def _name(text: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:63]
    return cleaned or fallback


def write_manifests(client: FleetClient, folder: Path) -> list[str]:
    """Write callbacks.yaml and fleet.yaml into `folder`; the lines to show (files, variables to set)."""
    folder.mkdir(parents=True, exist_ok=True)
    callbacks, variables = [], []
    names: dict[str, str] = {}
    for index, live in enumerate(client.callbacks()):
        subscribe = live.get("subscribe") or {}
        name = _name(str(subscribe.get("label") or ""), f"callback-{index + 1}")
        names[str(live.get("id"))] = name
        webhook = (subscribe.get("callback") or {}).get("webhook") or {}
        document: dict[str, Any] = {
            "kind": "Callback",
            "name": name,
            "webhook": {"target": webhook.get("target"), "name": webhook.get("name")},
            "remoteTypes": list(subscribe.get("remoteTypes") or []),
        }
        for attribute in webhook.get("attributes") or []:
            section = {"Header": "headers", "Query": "query", "Body": "body"}.get(str(attribute.get("type")))
            if section is None:
                continue
            value = str(attribute.get("value", ""))
            if section == "headers":  # a secret: reference a variable, never write the value
                variable = re.sub(r"[^A-Z0-9]+", "_", f"{name}_{attribute.get('key')}".upper()).strip("_")
                variables.append(variable)
                value = f"${{env:{variable}}}"
            document["webhook"].setdefault(section, {})[str(attribute.get("key"))] = value
        for key in ("retryPolicy", "batchNotify"):
            if key in subscribe:
                document[key] = subscribe[key]
        if live.get("status") == "Paused":
            document["status"] = "Paused"
        callbacks.append(document)
    by_programs: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for vin, vehicle in sorted(client.vehicles().items()):
        air = (client.vehicle_status(vehicle).get("preconditioning") or {}).get("airConditioning") or {}
        programs = tuple(sorted((live_program(p) for p in air.get("programs") or []), key=lambda p: p.slot))
        if programs:
            by_programs[programs].append(vin)
    fleet_docs: list[dict[str, Any]] = []
    via = callbacks[0]["name"] if callbacks else "CHOOSE-A-CALLBACK"
    for number, (programs, vins) in enumerate(sorted(by_programs.items(), key=lambda item: item[1][0]), start=1):
        group = f"programs-{number}"
        fleet_docs.append({"kind": "VehicleGroup", "name": group, "vins": vins})
        fleet_docs.append(
            {
                "kind": "Preconditioning",
                "name": f"schedule-{number}",
                "description": "; ".join(f"slot {p.slot}: {hhmm(p.start)} {days_text(p.days)}" for p in programs),
                "callback": via,
                "vehicles": {"groups": [group]},
                "programs": [
                    {
                        "slot": p.slot,
                        "start": hhmm(p.start),
                        "days": list(p.days),
                        "recurrence": p.recurrence,
                        "enabled": p.enabled,
                    }
                    for p in programs
                ],
            }
        )
    written = []
    for file, documents in (("callbacks.yaml", callbacks), ("fleet.yaml", fleet_docs)):
        if documents:
            path = folder / file
            path.write_text(HEADER + yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=None))
            written.append(f"wrote {display_name(path)} ({len(documents)} documents)")
    for variable in variables:
        written.append(f"set {variable} to the header's value before plan or apply")
    return written
