"""The receiver: takes the documented envelope `{callbackId, attributes, events[]}`, checks it came from the
callback it names (that callback's Header and Query attributes, compared in constant time), and records the
events durably before answering 2xx, so the API's retry policy covers every failure on this side.

Nothing slow runs on the event loop: events are written by a group-committing thread (writer.py), large bodies
are parsed in a worker thread, and the callbacks' credentials are reloaded in a worker thread, only when the
state or the journal changed since they were loaded and at most once per `reload_interval`, however many
requests name a callback it does not know.

When the state backend cannot be reached (a database down), a notification is answered 503 with Retry-After, so
the API sends it again, and logged on one line; /healthz says so too (503), from a check made at most once a
second whatever the number of probes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.clock import isotime, utcnow
from reconciler.errors import ReconcilerError, StateError
from reconciler.state.backend import StateBackend
from reconciler.webhook.envelope import EnvelopeError, parse_events
from reconciler.webhook.log import log
from reconciler.webhook.writer import EventWriter

MAX_BODY = 1_000_000
RELOAD_INTERVAL = 1.0  # seconds between two reloads of the credentials, at least
HEALTH_INTERVAL = 1.0  # seconds between two checks of the state backend for /healthz, at least
RETRY_AFTER = 10  # seconds the API is asked to wait before sending again while the state cannot be written
PARSE_INLINE = 64 * 1024  # bodies larger than this are parsed in a worker thread

Expected = list[tuple[str, str, str]]  # (kind, key, value) a notification must carry


@dataclass
class Credentials:
    """callbackId -> (callback name, [(kind, key, value)]) that a notification for it must carry."""

    by_id: dict[str, tuple[str, Expected]] = field(default_factory=dict)

    def unauthenticated(self) -> list[str]:
        """The callbacks that have no Header or Query attribute: anyone may post notifications for them."""
        return sorted(name for name, expected in self.by_id.values() if not expected)


def _no_signature() -> Hashable:
    return None


@dataclass
class Receiver:
    backend: StateBackend
    load_credentials: Callable[[], Credentials]
    max_body: int = MAX_BODY
    credentials: Credentials = field(default_factory=Credentials)
    # what the credentials were loaded from (file signatures); None: unknown, always worth a reload
    signature: Callable[[], Hashable] = _no_signature
    reload_interval: float = RELOAD_INTERVAL
    loaded_signature: Hashable = None
    reloaded_at: float = -math.inf  # when the last reload started (the first one may start at once)
    reloads: int = 0
    received: int = 0  # events recorded (accepted requests)
    not_recorded: int = 0  # events of well-formed requests refused or not recorded (401, 503, 500)
    unknown_callback: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    writer: EventWriter | None = None
    health_interval: float = HEALTH_INTERVAL
    health_checked: float = -math.inf  # when the state backend was last checked for /healthz
    backend_problem: str | None = None  # why the state backend could not be reached at that check
    _reloading: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _checking: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = EventWriter(self.backend.append_events)

    def check(self, request: Request, callback_id: str) -> tuple[str, str | None]:
        """(callback name, None) when the request carries that callback's credentials, else ("", why not)."""
        found = self.credentials.by_id.get(callback_id)
        if found is None:
            return "", f"unknown callbackId {_shown(callback_id)}"
        name, expected = found
        wrong = []
        for kind, key, value in expected:  # every value compared, no early exit: constant time
            given = request.headers.get(key) if kind == "Header" else request.query_params.get(key)
            sent = header_bytes(given or "") if kind == "Header" else (given or "").encode()
            ok = hmac.compare_digest(sent, value.encode()) and given is not None and value != ""
            if not ok:
                wrong.append(f"{'missing' if given is None else 'wrong'} {kind.lower()} {key}")
        if wrong:
            return "", f"{', '.join(wrong)} for callback {name}"
        return name, None

    async def refreshed(self) -> bool:
        """Reload the credentials when the state or journal changed since they were loaded (a callback the
        running apply created, or new credentials it set), at most once per `reload_interval`: requests arriving
        meanwhile wait for that one reload. False when nothing changed (nothing was reloaded)."""
        if self._reloading is None and self.loaded_signature is not None:
            # off the loop: the signature of a state in PostgreSQL is a round trip, and the database may be down
            current = await run_in_threadpool(self.signature)
            if self._reloading is None and current == self.loaded_signature:  # (a reload may have run meanwhile)
                return False
        if self._reloading is None:
            delay = max(0.0, self.reloaded_at + self.reload_interval - time.monotonic())
            self._reloading = asyncio.ensure_future(self._reload(delay))
        await asyncio.shield(self._reloading)
        return True

    async def _reload(self, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            self.reloaded_at = time.monotonic()
            signature = await run_in_threadpool(self.signature)  # before loading: a later change is seen next time
            try:
                loaded = await run_in_threadpool(self.load_credentials)
            except Exception as error:  # keep serving the callbacks already known
                reason = "; ".join(str(error).splitlines())  # every diagnostic, on the one line
                log(logging.ERROR, f"could not reload the callbacks' credentials: {reason}", reason=reason)
                self.loaded_signature = signature
                return
            self.reloads += 1
            announce_unauthenticated(loaded, self.credentials)
            self.credentials, self.loaded_signature = loaded, signature
        finally:
            self._reloading = None

    async def reachable(self) -> str | None:
        """Why the state backend cannot be reached (None: it can), as last checked: at most once per
        `health_interval`, off the loop, however often /healthz is asked. A change either way is logged once."""
        if self._checking is None and time.monotonic() - self.health_checked >= self.health_interval:
            self._checking = asyncio.ensure_future(self._check_backend())
        if self._checking is not None:
            await asyncio.shield(self._checking)
        return self.backend_problem

    async def _check_backend(self) -> None:
        try:
            try:
                await run_in_threadpool(self.backend.signature)
            except (ReconcilerError, OSError) as error:
                problem: str | None = one_line(error)
            else:
                problem = None
            if problem is not None and self.backend_problem is None:
                log(logging.ERROR, f"the state backend cannot be reached: {problem}", reason=problem)
            elif problem is None and self.backend_problem is not None:
                log(logging.INFO, "the state backend can be reached again")
            self.backend_problem = problem
            self.health_checked = time.monotonic()
        finally:
            self._checking = None

    async def record(self, records: list[dict[str, Any]]) -> None:
        assert self.writer is not None
        await self.writer.write(records)

    def close(self) -> None:
        """Finish writing what was accepted."""
        if self.writer is not None:
            self.writer.close()

    def summary(self) -> str:
        """Requests by answer, then events by fate: the two are counted apart (one request carries many)."""
        answers = self.answers
        failed = sum(count for status, count in answers.items() if status >= 500 and status != 503)
        return (
            f"stopped: requests: {sum(answers.values())} received, {answers[200]} accepted, {answers[401]} refused "
            f"(401), {answers[400]} malformed (400), {answers[413]} too large (413), {answers[503]} unavailable "
            f"(503), {failed} failed (500); events: {self.received} recorded, {self.not_recorded} not recorded "
            "(sent in requests refused, unavailable or failed)"
        )


def announce_unauthenticated(loaded: Credentials, before: Credentials | None = None) -> None:
    """Say once for each callback that its notifications need no credential."""
    already = set(before.unauthenticated()) if before is not None else set()
    for name in loaded.unauthenticated():
        if name not in already:
            log(
                logging.WARNING,
                f"callback {name} has no Header or Query attribute: accepting unauthenticated notifications for it",
                callback=name,
            )


def _shown(text: str, limit: int = 64) -> str:
    """Text a sender chose, safe for a log line: quoted, control characters escaped, cut short."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def header_bytes(value: str) -> bytes:
    """A header's value as the bytes that were sent: servers decode headers as Latin-1, so a secret written
    in UTF-8 (`sécret`) is compared as the UTF-8 bytes it arrived as."""
    return value.encode("latin-1")


def one_line(error: BaseException) -> str:
    """An error's message on one log line (every diagnostic it carries, joined), with no character that is not
    printable: a file name or value from a commit cannot send terminal controls to whoever reads the log."""
    text = "; ".join(str(error).splitlines())
    return "".join(c for c in text if c.isprintable()) or type(error).__name__


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status * 100 + 1, "message": message, "debug": None}, status_code=status)


def _unavailable(message: str) -> JSONResponse:
    """503: the API sends the notification again later (its retry policy covers any status but 2xx)."""
    answer = _problem(503, message)
    answer.headers["Retry-After"] = str(RETRY_AFTER)
    return answer


def parse_envelope(body: Any) -> tuple[str, list[dict[str, Any]]] | str:
    """(callbackId, normalised events), or why the body is malformed."""
    try:
        return parse_events(body)
    except EnvelopeError as error:
        return str(error)


def _parse(raw: bytes) -> tuple[str, list[dict[str, Any]]] | str:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "the body is not JSON"
    except RecursionError:
        return "the body nests too deeply"
    return parse_envelope(body)


def create_app(receiver: Receiver, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The receiver's app; `routes` (the controller's) are matched before the catch-all notification route."""

    def answer(status: int, request: Request, message: str, **fields: Any) -> None:
        receiver.answers[status] += 1
        client = request.client.host if request.client else "-"
        level = logging.INFO if status < 400 else logging.ERROR if status >= 500 else logging.WARNING
        text = message if status == 200 else f"{status} {message}"
        log(level, f"{client} {text}", status=status, client=client, **fields)

    async def notify(request: Request) -> Response:
        limit = receiver.max_body
        length = request.headers.get("content-length")
        too_large = f"the body is larger than {limit} bytes"
        if length is not None and length.isdigit() and int(length) > limit:
            answer(413, request, f"{too_large} (Content-Length {length})", reason=too_large)
            return _problem(413, too_large)
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                answer(413, request, too_large, reason=too_large)
                return _problem(413, too_large)
        raw = b"".join(chunks)
        parsed = await run_in_threadpool(_parse, raw) if size > PARSE_INLINE else _parse(raw)
        if isinstance(parsed, str):
            answer(400, request, f"malformed notification: {parsed}", reason=parsed)
            return _problem(400, parsed)
        callback_id, events = parsed
        name, refused = receiver.check(request, callback_id)
        try:
            if refused and await receiver.refreshed():
                name, refused = receiver.check(request, callback_id)
        except (ReconcilerError, OSError) as error:  # the state (its callbacks) cannot be read now: later
            reason = one_line(error)
            receiver.not_recorded += len(events)
            answer(503, request, f"could not check the credentials of {len(events)} events: {reason}", reason=reason)
            return _unavailable("the callbacks' credentials cannot be checked now; send the events again later")
        if refused:
            receiver.unknown_callback += refused.startswith("unknown")
            receiver.not_recorded += len(events)
            answer(401, request, f"refused {len(events)} events: {refused}", reason=refused)
            return _problem(401, "unknown callback or wrong credentials")
        stamp = isotime(utcnow())
        records = [{**event, "callback": name, "received_at": stamp} for event in events]
        try:
            await receiver.record(records)  # durable (fsync) before the 2xx
        except StateError as error:  # the state backend cannot be reached (a database down): later
            reason = one_line(error)
            receiver.not_recorded += len(records)
            message = f"could not record {len(records)} events for callback {name}: {reason}"
            answer(503, request, message, callback=name, reason=reason)
            return _unavailable("the events cannot be recorded now; send them again later")
        except Exception as error:
            reason = one_line(error)
            receiver.not_recorded += len(records)
            answer(500, request, f"could not record {len(records)} events for callback {name}: {reason}", callback=name)
            return _problem(500, "the events could not be recorded; send them again")
        receiver.received += len(records)
        answer(200, request, f"accepted {len(records)} events for callback {name}", callback=name, events=len(records))
        return JSONResponse({"received": len(records)}, status_code=200)

    async def health(request: Request) -> Response:
        problem = await receiver.reachable()
        if problem is not None:  # nothing could be recorded: a load balancer sends notifications elsewhere
            body = {"status": "unavailable", "received": receiver.received, "state": problem}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "received": receiver.received, "state": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            *routes,
            Route("/{path:path}", notify, methods=["POST"]),
        ]
    )
