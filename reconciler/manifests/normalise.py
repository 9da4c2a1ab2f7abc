"""The one normalisation step, shared by manifests and state so equal programs always compare equal.

`normalise_document` maps a schema-valid manifest to its canonical form: start as `PTxHyM`, days as an
ordered list Mon..Sun, defaults filled in, VINs upper-case and sorted, lists that are sets sorted. The result
is itself a valid manifest, and normalising it again changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.model import DAYS

DAY_SETS = {
    "weekdays": DAYS[:5],
    "weekend": DAYS[5:],
    "daily": DAYS,
}
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
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_ISO = re.compile(r"^PT(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?$")


def parse_start(text: str) -> tuple[int, int] | None:
    """(hours, minutes) from "HH:MM" or an ISO-8601 duration such as PT7H30M; None if unreadable.

    Out-of-range values are returned as written, for the caller to report.
    """
    clock = _CLOCK.match(text)
    if clock:
        return int(clock.group(1)), int(clock.group(2))
    iso = _ISO.match(text)
    if iso and text != "PT" and not (iso.group(3) and int(iso.group(3))):
        return int(iso.group(1) or 0), int(iso.group(2) or 0)
    return None


def start_in_range(hours: int, minutes: int) -> bool:
    return 0 <= hours <= 23 and 0 <= minutes <= 59


def canonical_start(text: str) -> str:
    """`PT{h}H{m}M` for a valid start; the planner and state compare starts only in this form."""
    parsed = parse_start(text)
    if parsed is None or not start_in_range(*parsed):
        raise ValueError(f"not a time of day: {text!r}")
    return f"PT{parsed[0]}H{parsed[1]}M"


def canonical_days(days: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """An ordered, duplicate-free tuple of day names from a shorthand or a list."""
    if isinstance(days, str):
        return DAY_SETS[days]
    chosen = set(days)
    return tuple(day for day in DAYS if day in chosen)


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
