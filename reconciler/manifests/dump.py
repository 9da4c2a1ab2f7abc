"""Manifests written from what the live fleet holds (`import --write-manifests DIR`), like octodns-dump.

Callbacks become Callback documents (header and query values, which carry credentials, are never written: each
becomes a `${env:...}` reference to set); vehicles holding the same programs become one VehicleGroup and one
Preconditioning schedule. Start times are written quoted ("07:30"), as YAML 1.1 readers would take 07:30 for
a number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.api import wire
from reconciler.atomic import write_atomic
from reconciler.manifests.files import display_name
from reconciler.model import Program
from reconciler.words import days_text, hhmm

HEADER = "# Written by reconciler import --write-manifests from the live fleet; review before committing.\n"


class Quoted(str):
    """A string always written in double quotes."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Quoted, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, '"'))


def _name(text: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:63]
    return cleaned or fallback


def write_manifests(
    live_callbacks: list[dict[str, Any]], held: Mapping[str, Mapping[int, Program]], folder: Path
) -> list[str]:
    """Write callbacks.yaml and fleet.yaml into `folder` from the live callbacks (as the API lists them) and the
    programs each vehicle holds (VIN -> slot -> program); the lines to show (files, variables to set)."""
    folder.mkdir(parents=True, exist_ok=True)
    callbacks: list[dict[str, Any]] = []
    variables: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    for index, live in enumerate(live_callbacks):
        subscription = wire.subscribe(live)
        name = _name(wire.label(live) or "", f"callback-{index + 1}")
        names[str(wire.callback_id(live))] = name
        webhook = wire.webhook(subscription)
        remote_types = subscription.get("remoteTypes")
        document: dict[str, Any] = {
            "kind": "Callback",
            "name": name,
            "webhook": {"target": wire.text(webhook.get("target")), "name": wire.text(webhook.get("name"))},
            "remoteTypes": [t for t in remote_types if isinstance(t, str)] if isinstance(remote_types, list) else [],
        }
        for kind, key, value in wire.attributes(webhook):
            section = {"Header": "headers", "Query": "query", "Body": "body"}[kind]
            if section in ("headers", "query"):  # credentials: reference a variable, never write the value
                variable = re.sub(r"[^A-Z0-9]+", "_", f"{name}_{key}".upper()).strip("_")
                variables.append((variable, "header" if section == "headers" else "query parameter"))
                value = f"${{env:{variable}}}"
            document["webhook"].setdefault(section, {})[key] = value
        for key in ("retryPolicy", "batchNotify"):
            if isinstance(subscription.get(key), dict):
                document[key] = subscription[key]
        if wire.callback_status(live) == "Paused":
            document["status"] = "Paused"
        callbacks.append(document)
    by_programs: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for vin, slots in sorted(held.items()):
        programs = tuple(program for _, program in sorted(slots.items()))
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
                        "start": Quoted(hhmm(p.start)),
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
            text = HEADER + yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=None)
            write_atomic(path, text.encode())
            written.append(f"wrote {display_name(path)} ({len(documents)} documents)")
    for variable, what in variables:
        written.append(f"set {variable} to the {what}'s value before plan or apply")
    return written
