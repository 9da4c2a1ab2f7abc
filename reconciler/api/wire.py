"""The Fleet API's JSON, both ways: the one place that knows its shape.

Bodies reconciler sends (a callback's RemoteCallbackSubscribe, a remote's preconditioning programs) are built
here. Answers are read here, defensively: any field may be missing, of another type, or carry a documented
variant (`preconditionning`, `occurrence`, `type` as a list, `id` or `callbackId`). The readers return typed
values or nothing and never raise on a malformed answer (the client turns a missing identifier into an
ApiAnswerError), so a surprising answer can neither crash a command nor reach the state unchecked.
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import ApiAnswerError
from reconciler.model import DAYS, Callback, Program, canonical_days, canonical_start

STATUSES = ("Running", "Paused")
ATTRIBUTE_TYPES = ("Header", "Query", "Body")
MAX_TEXT = 2048  # longest string kept from an answer


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_TEXT else None


# ---- what reconciler sends -------------------------------------------------------------------------------

REMOTE_LABEL = "reconciler"  # every remote's label starts so; the rest identifies the journal intent that sent it


def callback_body(callback: Callback) -> dict[str, Any]:
    """The RemoteCallbackSubscribe body, secrets revealed: only ever sent to the API, never stored or shown."""
    attributes = [
        {"type": attribute.kind, "key": attribute.key, "value": attribute.value.value or ""}
        for attribute in callback.attributes
    ]
    hook: dict[str, Any] = {"target": callback.target.value or "", "name": callback.webhook_name}
    if attributes:
        hook["attributes"] = attributes
    body: dict[str, Any] = {
        "label": callback.name,
        "callback": {"webhook": hook},
        "remoteTypes": list(callback.remote_types),
    }
    if callback.retry_policy is not None:
        body["retryPolicy"] = dict(callback.retry_policy)
    if callback.batch_notify is not None:
        body["batchNotify"] = dict(callback.batch_notify)
    return body


def program_entry(action: str, program: Program) -> dict[str, Any]:
    """A program entry of a remote body: `actionsType` Set, or Delete (which carries the recorded program: the
    official schema requires `start` on every entry)."""
    return {
        "actionsType": action,
        "slot": program.slot,
        "enabled": program.enabled,
        "recurrence": program.recurrence,
        "start": program.start,
        "occurence": {"day": list(program.days)},
    }


def entry_program(entry: Any) -> tuple[str, Program]:
    """(actionsType, program) of an entry `program_entry` made (read back from a plan file or the journal);
    ValueError when it is not one."""
    entry = mapping(entry)
    action, slot, days = entry.get("actionsType"), entry.get("slot"), mapping(entry.get("occurence")).get("day")
    if action not in ("Set", "Delete") or type(slot) is not int or not isinstance(days, list):
        raise ValueError(f"not a program entry: {str(entry)[:100]}")
    recurrence, enabled, start = entry.get("recurrence"), entry.get("enabled"), entry.get("start")
    if not isinstance(start, str) or not isinstance(recurrence, str) or not isinstance(enabled, bool):
        raise ValueError(f"not a program entry: {str(entry)[:100]}")
    return action, Program(slot, start, tuple(str(day) for day in days), recurrence, enabled)


def remote_body(label: str, programs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Remote body of a preconditioning program change (never `immediate`: it would start the heater now)."""
    return {"label": label, "preconditioning": {"airConditioning": {"programs": programs}}}


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


def created_id(answer: Any) -> str:
    """The id in a callback answer: `callbackId` (CallbackRef) or `id` (RemoteCallback)."""
    answer = mapping(answer)
    for key in ("callbackId", "id"):
        value = answer.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    raise ApiAnswerError(f"the answer names no callback id: {str(answer)[:200]}")


def labelled(callbacks: list[dict[str, Any]], name: str) -> tuple[str, str] | None:
    """(id, status) of the first live callback whose label is `name`."""
    for callback in callbacks:
        identity = callback_id(callback)
        if label(callback) == name and identity is not None:
            return identity, callback_status(callback) or "Running"
    return None


# ---- remote actions ---------------------------------------------------------------------------------------


def remote_ref(answer: Any, what: str) -> tuple[str, str]:
    """(remoteActionId, type) of a RemotePostResponse or RemoteAction; `type` may be a list in older answers."""
    if not isinstance(answer, dict):
        raise ApiAnswerError(f"{what}: the answer is not a JSON object")
    action = answer.get("remoteActionId")
    if not isinstance(action, str | int) or isinstance(action, bool) or not str(action):
        raise ApiAnswerError(f"{what}: the answer names no remoteActionId")
    kind = answer.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    return str(action), kind if isinstance(kind, str) else ""


def remote_label(action: Any) -> str | None:
    """The label of the body a listed remote action was posted with."""
    return text(mapping(mapping(action).get("remote")).get("label"))


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
