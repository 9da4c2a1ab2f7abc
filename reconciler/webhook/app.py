"""The receiver: takes the documented envelope `{callbackId, attributes, events[]}`, checks it came from the
callback it names (that callback's Header and Query attributes, compared in constant time), and records the
events durably before answering 2xx, so the API's retry policy covers every failure on this side."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.state.backend import StateBackend, isotime, utcnow

MAX_BODY = 1_000_000


@dataclass
class Credentials:
    """callbackId -> (callback name, [(kind, key, value)]) that a notification for it must carry."""

    by_id: dict[str, tuple[str, list[tuple[str, str, str]]]] = field(default_factory=dict)


@dataclass
class Receiver:
    backend: StateBackend
    load_credentials: Callable[[], Credentials]
    max_body: int = MAX_BODY
    credentials: Credentials = field(default_factory=Credentials)
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0
    unknown_callback: int = 0

    def lookup(self, callback_id: str) -> tuple[str, list[tuple[str, str, str]]] | None:
        found = self.credentials.by_id.get(callback_id)
        if found is None:  # a callback apply created since we started: read the state again
            with self.lock:
                self.credentials = self.load_credentials()
            found = self.credentials.by_id.get(callback_id)
        return found


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status * 100 + 1, "message": message, "debug": None}, status_code=status)


def _status_text(value: Any) -> str | None:
    """`eventStatus.status` as a string, or as the object form {"RemoteDoneEventStatus": "Success"}."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for item in value.values():
            if isinstance(item, str):
                return item
    return None


def parse_envelope(body: Any) -> tuple[str, list[dict[str, Any]]] | str:
    """(callbackId, normalised events), or why the body is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("callbackId"), str):
        return "the body must be an object with a callbackId"
    events = body.get("events")
    if not isinstance(events, list) or not events:
        return "events must be a non-empty list"
    normalised = []
    for index, event in enumerate(events):
        status = event.get("eventStatus") if isinstance(event, dict) else None
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("remoteActionId"), str)
            or not isinstance(status, dict)
        ):
            return f"events[{index}] needs remoteActionId and eventStatus"
        text = _status_text(status.get("status"))
        if not isinstance(status.get("type"), str) or text is None:
            return f"events[{index}].eventStatus needs type and status"
        normalised.append(
            {
                "callbackId": body["callbackId"],
                "remoteActionId": event["remoteActionId"],
                "vin": event.get("vin"),
                "eventDate": event.get("eventDate"),
                "remoteType": event.get("remoteType"),
                "type": status["type"],
                "status": text,
                "failureCause": status.get("failureCause"),
            }
        )
    return body["callbackId"], normalised


def _authentic(request: Request, expected: list[tuple[str, str, str]]) -> bool:
    ok = True
    for kind, key, value in expected:
        given = request.headers.get(key, "") if kind == "Header" else request.query_params.get(key, "")
        ok &= hmac.compare_digest(given.encode(), value.encode())  # no early exit: constant time
    return ok


def create_app(receiver: Receiver) -> Starlette:
    async def notify(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > receiver.max_body:
            return _problem(413, f"the body is larger than {receiver.max_body} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > receiver.max_body:
                return _problem(413, f"the body is larger than {receiver.max_body} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _problem(400, "the body is not JSON")
        parsed = parse_envelope(body)
        if isinstance(parsed, str):
            return _problem(400, parsed)
        callback_id, events = parsed
        known = receiver.lookup(callback_id)
        if known is None or not _authentic(request, known[1]):
            return _problem(401, "unknown callback or wrong credentials")
        stamp = isotime(utcnow())
        records = [{**event, "callback": known[0], "received_at": stamp} for event in events]
        receiver.backend.append_events(records)  # durable (fsync) before the 2xx
        receiver.received += len(records)
        return JSONResponse({"received": len(records)}, status_code=200)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "received": receiver.received})

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{path:path}", notify, methods=["POST"]),
        ]
    )
