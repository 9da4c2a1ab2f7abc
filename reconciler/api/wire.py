"""What the Fleet API's answers hold, read defensively: the one place that knows their JSON shape.

Answers are input from the network: any field may be missing, of another type, or carry a documented variant
(`preconditionning`, `occurrence`, a status object). These readers return typed values or nothing, never raise
on a malformed answer, so a surprising answer can neither crash a command nor reach the state unchecked.
"""

from __future__ import annotations

from typing import Any

from reconciler.manifests.normalise import canonical_days, canonical_start
from reconciler.model import DAYS, Program

STATUSES = ("Running", "Paused")
ATTRIBUTE_TYPES = ("Header", "Query", "Body")
MAX_TEXT = 2048  # longest string kept from an answer


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_TEXT else None


# ---- callbacks --------------------------------------------------------------------------------------------


def subscribe(callback: Any) -> dict[str, Any]:
    """A live RemoteCallback's `subscribe` (what was registered)."""
    return mapping(mapping(callback).get("subscribe"))


def label(callback: Any) -> str | None:
    return text(subscribe(callback).get("label"))


def callback_id(callback: Any) -> str | None:
    value = mapping(callback).get("id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def callback_status(callback: Any) -> str | None:
    status = mapping(callback).get("status")
    return status if status in STATUSES else None


def webhook(subscription: Any) -> dict[str, Any]:
    return mapping(mapping(mapping(subscription).get("callback")).get("webhook"))


def attributes(hook: Any) -> list[tuple[str, str, str]]:
    """(type, key, value) of a webhook's attributes; malformed ones are left out."""
    found = []
    listed = mapping(hook).get("attributes")
    for attribute in listed if isinstance(listed, list) else ():
        attribute = mapping(attribute)
        kind, key, value = attribute.get("type"), text(attribute.get("key")), attribute.get("value")
        if kind in ATTRIBUTE_TYPES and key is not None and isinstance(value, str | int | float | bool):
            found.append((str(kind), key, str(value)))
    return found


def labelled(callbacks: list[dict[str, Any]], name: str) -> tuple[str, str] | None:
    """(id, status) of the first live callback whose label is `name`."""
    for callback in callbacks:
        identity = callback_id(callback)
        if label(callback) == name and identity is not None:
            return identity, callback_status(callback) or "Running"
    return None


# ---- vehicle programs -------------------------------------------------------------------------------------


def program(data: Any) -> Program | None:
    """A program as a vehicle's status shows it, in the planner's canonical form; None when malformed."""
    data = mapping(data)
    slot, start, enabled = data.get("slot"), data.get("start"), data.get("enabled", True)
    if type(slot) is not int or not 1 <= slot <= 4 or not isinstance(start, str) or not isinstance(enabled, bool):
        return None
    recurrence = data.get("recurrence", "Daily")
    if recurrence not in ("Daily", "None"):
        return None
    days = mapping(data.get("occurence") or data.get("occurrence")).get("day", [])
    if not isinstance(days, list) or any(day not in DAYS for day in days):
        return None
    try:
        canonical = canonical_start(start[:32])
    except ValueError:
        return None
    return Program(slot, canonical, canonical_days(days), str(recurrence), enabled)


def programs(status: Any) -> dict[int, Program]:
    """Slot -> program a vehicle holds, from its status (`preconditioning`, or the older `preconditionning`)."""
    status = mapping(status)
    section = mapping(status.get("preconditioning") or status.get("preconditionning"))
    listed = mapping(section.get("airConditioning")).get("programs")
    found: dict[int, Program] = {}
    for data in listed if isinstance(listed, list) else ():
        parsed = program(data)
        if parsed is not None:
            found[parsed.slot] = parsed
    return found
