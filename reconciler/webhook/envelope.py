"""The notification envelope `{callbackId, attributes, events[]}` (the webhook template's RemoteEvents), checked
field by field at the door and flattened into the events the state folds.

Enumerations stay open (the API adds statuses and failure causes over time), but types and sizes do not: a
field of the wrong type or an oversized string is refused with 400 naming it, before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.state.events import MAX_ID, MAX_VIN, MAX_WORD, date_problem, string_problem

MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE = 4096


class EnvelopeError(ValueError):
    """Why a notification body is malformed, naming the field (`events[2].eventStatus.failureCause: ...`)."""


def _string(value: Any, where: str, required: bool, longest: int) -> str | None:
    problem = string_problem(value, required, longest)
    if problem:
        raise EnvelopeError(f"{where}: {problem}")
    return value if isinstance(value, str) else None


def _status_text(value: Any, where: str) -> str:
    """`eventStatus.status` as a string, or as the object form {"RemoteDoneEventStatus": "Success"}."""
    if isinstance(value, Mapping):
        texts = [item for item in value.values() if item is not None]
        if len(texts) != 1:
            raise EnvelopeError(f"{where}: must be a string or an object holding one status")
        value, where = texts[0], f"{where}.{next(k for k, v in value.items() if v is not None)}"
    text = _string(value, where, True, MAX_WORD)
    assert text is not None
    return text


def _attributes(value: Any) -> None:
    """The callback's Body attributes echoed back: not recorded, but held to their documented shape."""
    if value is None:
        return
    if not isinstance(value, list):
        raise EnvelopeError("attributes: must be a list")
    if len(value) > MAX_ATTRIBUTES:
        raise EnvelopeError(f"attributes: must hold at most {MAX_ATTRIBUTES} items")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise EnvelopeError(f"attributes[{index}]: must be an object")
        for key in ("key", "value"):
            _string(item.get(key), f"attributes[{index}].{key}", False, MAX_ATTRIBUTE)


def _event(callback_id: str, event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        raise EnvelopeError(f"{where}: must be an object")
    action_id = _string(event.get("remoteActionId"), f"{where}.remoteActionId", True, MAX_ID)
    vin = _string(event.get("vin"), f"{where}.vin", False, MAX_VIN)
    problem = date_problem(event.get("eventDate"))
    if problem:
        raise EnvelopeError(f"{where}.eventDate: {problem}")
    remote_type = _string(event.get("remoteType"), f"{where}.remoteType", False, MAX_WORD)
    status = event.get("eventStatus")
    if status is None:
        raise EnvelopeError(f"{where}.eventStatus: is required")
    if not isinstance(status, Mapping):
        raise EnvelopeError(f"{where}.eventStatus: must be an object")
    inner = f"{where}.eventStatus"
    return {
        "callbackId": callback_id,
        "remoteActionId": action_id,
        "vin": vin,
        "eventDate": event.get("eventDate"),
        "remoteType": remote_type,
        "type": _string(status.get("type"), f"{inner}.type", True, MAX_WORD),
        "status": _status_text(status.get("status"), f"{inner}.status"),
        "failureCause": _string(status.get("failureCause"), f"{inner}.failureCause", False, MAX_WORD),
        "feedbackDetail": _string(status.get("feedbackDetail"), f"{inner}.feedbackDetail", False, MAX_WORD),
    }


def parse_events(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """(callbackId, the events flattened for recording); EnvelopeError naming the first bad field."""
    if not isinstance(body, Mapping):
        raise EnvelopeError("the body must be a JSON object")
    callback_id = _string(body.get("callbackId"), "callbackId", True, MAX_ID)
    assert callback_id is not None
    _attributes(body.get("attributes"))
    events = body.get("events")
    if events is None:
        raise EnvelopeError("events: is required")
    if not isinstance(events, list):
        raise EnvelopeError("events: must be a list")
    if not events:
        raise EnvelopeError("events: must not be empty")
    return callback_id, [_event(callback_id, event, f"events[{index}]") for index, event in enumerate(events)]
