"""The one normalisation step, shared by manifests and state so equal programs always compare equal.

`normalise_document` maps a schema-valid manifest to its canonical form: start as `PTxHyM`, days as an
ordered list Mon..Sun, defaults filled in, VINs upper-case and sorted, lists that are sets sorted. The result
is itself a valid manifest, and normalising it again changes nothing.
"""

from __future__ import annotations

from typing import Any

from reconciler.model import DAY_SETS, DAYS, canonical_days, canonical_start, parse_start, start_in_range

REMOTE_TYPES = (
    "ThermalPreconditioning",
    "ElectricBatteryChargingRequest",
    "Horn",
    "Doors",
    "Lights",
    "Immobilization",
    "Stolen",
    "WakeUp",
    "Navigation",
)


def normalise_program(program: dict[str, Any], *, lenient: bool = False) -> dict[str, Any]:
    """The canonical program. `lenient` (for a document whose bad values were already reported) keeps a start
    that is not a time of day as written and drops unknown day names, instead of raising."""
    if lenient:
        start = program["start"]
        parsed = parse_start(start)
        if parsed is not None and start_in_range(*parsed):
            start = canonical_start(start)
        days = program["days"]
        chosen = DAY_SETS.get(days, ()) if isinstance(days, str) else canonical_days([d for d in days if d in DAYS])
    else:
        start, chosen = canonical_start(program["start"]), canonical_days(program["days"])
    return {
        "slot": program["slot"],
        "start": start,
        "days": list(chosen),
        "recurrence": program.get("recurrence", "Daily"),
        "enabled": program.get("enabled", True),
    }


def _vins(values: list[str]) -> list[str]:
    # an upper-case VIN is kept, not copied: a fleet of millions would hold every VIN twice
    return sorted({vin if vin.isupper() else vin.upper() for vin in values})


def normalise_document(data: dict[str, Any], *, lenient: bool = False) -> dict[str, Any]:
    """The canonical form of one schema-valid manifest document (input is not modified); `lenient` as for
    `normalise_program`."""
    kind = data["kind"]
    out: dict[str, Any] = {"kind": kind, "name": data["name"]}
    if "description" in data:
        out["description"] = data["description"]
    if kind == "VehicleGroup":
        out["vins"] = _vins(data["vins"])
    elif kind == "Preconditioning":
        vehicles = data["vehicles"]
        out["callback"] = data["callback"]
        out["vehicles"] = {
            "groups": sorted(set(vehicles.get("groups", []))),
            "vins": _vins(vehicles.get("vins", [])),
        }
        out["programs"] = sorted(
            (normalise_program(p, lenient=lenient) for p in data["programs"]), key=lambda p: p["slot"]
        )
        out["takeover"] = data.get("takeover", False)
    elif kind == "Callback":
        webhook = data["webhook"]
        out["webhook"] = {
            "target": webhook["target"],
            "name": webhook.get("name", data["name"]),
            "headers": dict(sorted(webhook.get("headers", {}).items())),
            "query": dict(sorted(webhook.get("query", {}).items())),
            "body": dict(sorted(webhook.get("body", {}).items())),
        }
        chosen = set(data["remoteTypes"])
        out["remoteTypes"] = [kind_ for kind_ in REMOTE_TYPES if kind_ in chosen]
        if "retryPolicy" in data:
            policy = data["retryPolicy"]
            out["retryPolicy"] = {
                "policy": policy["policy"],
                "retryNumber": policy.get("retryNumber", 3),
                "retryDelay": policy.get("retryDelay", 10),
            }
        if "batchNotify" in data:
            batch = data["batchNotify"]
            out["batchNotify"] = {"size": batch["size"], "timeWindow": batch.get("timeWindow", 60)}
        out["status"] = data.get("status", "Running")
    return out
