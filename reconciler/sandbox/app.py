"""The sandbox's HTTP side: the Fleet API routes under /connectedcar/v3, and /_sandbox for tests and demos.

Every API response carries the rate-limit headers; a pure ASGI gate in front of the routes applies latency,
authentication, rate limits and injected 500s before a route runs, and can abort a connection after a route
has done its work (the ambiguous "accepted, but the answer was lost" case clients must survive).

Longer than most modules, on purpose: the emulator's routes read as one table of the API (create_app),
each next to the JSON it answers, as the vendor's reference lists them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import math
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.sandbox.engine import Engine
from reconciler.sandbox.validation import REMOTE_KEYS, remote_key, schema_errors
from reconciler.sandbox.world import DEFAULT_FLEET, SimCallback, SimRemote, SimVehicle, World, now_iso

BASE = "/connectedcar/v3"
MAX_PAGE = 60


@dataclass(frozen=True)
class SandboxSettings:
    fleet: str = DEFAULT_FLEET
    vehicles: int = 100
    seed: int = 0
    speed: float = 1.0
    failure_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    rate_limit: float = 100.0
    daily_limit: int = 100_000
    asleep_rate: float = 0.3
    offline_rate: float = 0.02
    username: str = "sandbox"
    password: str = "sandbox-password"
    client_id: str = "sandbox-client"
    deliver_anywhere: bool = False


class ApiProblem(Exception):
    """An error answer in the API's own shape: {code, uuid, message, timestamp}."""

    def __init__(self, status: int, detail: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.detail, self.message, self.headers = status, detail, message, headers or {}

    def response(self) -> Response:
        body = {
            "code": self.status * 100 + self.detail,
            "uuid": str(uuid.uuid4()),
            "message": self.message,
            "timestamp": now_iso(),
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class Hal(JSONResponse):
    media_type = "application/hal+json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


class RateLimiter:
    """Two windows as the real API: a day (header suffix 1) and a burst token bucket per second (suffix 2)."""

    def __init__(self, per_second: float, per_day: int) -> None:
        self.rate = per_second
        self.capacity = max(1.0, per_second)
        self.tokens = self.capacity
        self.per_day = per_day
        self.used_today = 0
        self.stamp = 0.0

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate) if self.stamp else self.tokens
        self.stamp = now
        allowed = self.tokens >= 1 and self.used_today < self.per_day
        if allowed:
            self.tokens -= 1
            self.used_today += 1
        headers = {
            "X-RateLimit-Limit-1": str(self.per_day),
            "X-RateLimit-Remaining-1": str(max(0, self.per_day - self.used_today)),
            "X-RateLimit-Limit-2": str(int(self.capacity)),
            "X-RateLimit-Remaining-2": str(int(self.tokens)),
        }
        if not allowed:
            wait = 86_400 if self.used_today >= self.per_day else math.ceil((1 - self.tokens) / self.rate)
            headers["Retry-After"] = headers["X-RateLimit-Reset"] = str(max(1, wait))
        return allowed, headers


class Sandbox:
    """The world, its engine and the knobs, shared by the gate and the routes."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.world = World.create(
            settings.fleet, settings.vehicles, settings.seed, settings.asleep_rate, settings.offline_rate
        )
        self.engine = Engine(
            self.world,
            speed=settings.speed,
            failure_rate=settings.failure_rate,
            deliver_anywhere=settings.deliver_anywhere,
        )
        self.limiter = RateLimiter(settings.rate_limit, settings.daily_limit)
        self.faults = random.Random(f"faults:{settings.seed}")
        expected = f"{settings.username}:{settings.password}".encode()
        self.authorization = "Basic " + base64.b64encode(expected).decode()
        self.counts = {"requests": 0, "rate_limited": 0, "errors_injected": 0, "dropped": 0}
        self.calls: Counter[str] = Counter()  # routes reached (past auth, limits and injected errors)


class Gate:
    """Pure ASGI middleware: latency, auth, rate limit, injected errors, dropped connections, headers."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(BASE):
            await self.app(scope, receive, send)
            return
        sandbox = self.sandbox
        settings = sandbox.settings
        sandbox.counts["requests"] += 1
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        allowed, limit_headers = sandbox.limiter.take(asyncio.get_running_loop().time())
        problem: ApiProblem | None = None
        if not _authorised(scope, sandbox):
            problem = ApiProblem(
                401, 1, "Unauthorized: HTTP Basic credentials and the client_id query parameter are required"
            )
            limit_headers["WWW-Authenticate"] = 'Basic realm="fleet"'
        elif not allowed:
            sandbox.counts["rate_limited"] += 1
            problem = ApiProblem(429, 1, "Too many requests")
        elif settings.error_rate and sandbox.faults.random() < settings.error_rate:
            sandbox.counts["errors_injected"] += 1
            problem = ApiProblem(500, 1, "Internal error (injected by the sandbox)")
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]
        if problem is not None:
            problem.headers.update(limit_headers)
            await problem.response()(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if scope.get("sandbox.drop"):
                transport = getattr(getattr(send, "__self__", None), "transport", None)
                if transport is not None:
                    transport.abort()  # the work is done; the answer never arrives
                    return
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *raw_headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _authorised(scope: Scope, sandbox: Sandbox) -> bool:
    headers = dict(scope["headers"])
    given = headers.get(b"authorization", b"").decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    client = ""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "client_id":
            client = value
    return hmac.compare_digest(given, sandbox.authorization) and hmac.compare_digest(
        client.encode(), sandbox.settings.client_id.encode()
    )


Handler = Callable[[Request, Sandbox], Awaitable[Response]]


def route(path: str, handler: Handler, methods: list[str], sandbox: Sandbox) -> Route:
    name = handler.__name__

    async def endpoint(request: Request) -> Response:
        sandbox.calls[name] += 1
        try:
            if request.path_params.get("fid", sandbox.settings.fleet) != sandbox.settings.fleet:
                raise ApiProblem(404, 1, f"Unknown fleet {request.path_params['fid']}")
            return await handler(request, sandbox)
        except ApiProblem as problem:
            return problem.response()
        except ClientDisconnect:  # the client went away mid-request (a killed apply): nothing to answer
            return Response(status_code=499)

    return Route(path, endpoint, methods=methods)


# ---- helpers ------------------------------------------------------------------------------------------------


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiProblem(400, 1, "The body is not JSON") from None


def _check(name: str, body: Any) -> None:
    errors = schema_errors(name, body)
    if errors:
        raise ApiProblem(400, 2, f"The body does not match {name}: " + "; ".join(errors[:5]))


def _url(request: Request, path: str, **query: str) -> str:
    base = str(request.base_url).rstrip("/")
    params = {"client_id": request.query_params.get("client_id", ""), **query}
    return f"{base}{BASE}{path}?{urlencode(params)}"


def _link(href: str) -> dict[str, str]:
    return {"href": href}


def _vehicle(request: Request, sandbox: Sandbox) -> SimVehicle:
    vehicle = sandbox.world.vehicles.get(request.path_params["vid"])
    if vehicle is None:
        raise ApiProblem(404, 2, f"Unknown vehicle {request.path_params['vid']}")
    return vehicle


def _callback(request: Request, sandbox: Sandbox) -> SimCallback:
    callback = sandbox.world.callbacks.get(request.path_params["cbid"])
    if callback is None:
        raise ApiProblem(404, 3, f"Unknown callback {request.path_params['cbid']}")
    return callback


def _page(request: Request, items: list[Any], key: str, render: Callable[[Any], Any]) -> Response:
    """HAL CollectionResult with indexRange, pageSize (1..60) and an opaque pageToken."""
    params = request.query_params
    index_range = params.get("indexRange", "0-")
    first, dash, last = index_range.partition("-")
    if not first.isdigit() or not dash or (last and not last.isdigit()):
        raise ApiProblem(400, 3, f"indexRange must look like 0- or 5-9, not {index_range!r}")
    chosen = items[int(first) : int(last) + 1 if last else None]
    size_text = params.get("pageSize", str(MAX_PAGE))
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE:
        raise ApiProblem(400, 4, f"pageSize must be 1 to {MAX_PAGE}")
    size = int(size_text)
    page = 0
    if "pageToken" in params:
        try:
            page = int(base64.urlsafe_b64decode(params["pageToken"].encode()).decode().removeprefix("page:"))
        except (ValueError, binascii.Error):
            raise ApiProblem(400, 5, "pageToken is not one this API gave") from None
    total_pages = max(1, math.ceil(len(chosen) / size))
    if page >= total_pages or page < 0:
        raise ApiProblem(400, 5, "pageToken is past the last page")
    path = request.url.path[len(BASE) :]
    keep = {k: v for k, v in params.items() if k not in ("pageToken", "client_id")}

    def at(number: int) -> dict[str, str]:
        token = base64.urlsafe_b64encode(f"page:{number}".encode()).decode()
        return _link(_url(request, path, **keep, pageToken=token))

    links = {"self": at(page), "first": at(0), "last": at(total_pages - 1)}
    if page + 1 < total_pages:
        links["next"] = at(page + 1)
    if page > 0:
        links["prev"] = at(page - 1)
    window = chosen[page * size : (page + 1) * size]
    return Hal(
        {
            "_links": links,
            "total": len(chosen),
            "totalPage": total_pages,
            "currentPage": page,
            "_embedded": {key: [render(item) for item in window]},
        }
    )


# ---- fleets and vehicles ------------------------------------------------------------------------------------


def _fleet_body(request: Request, sandbox: Sandbox) -> dict[str, Any]:
    fid = sandbox.settings.fleet
    return {
        "id": fid,
        "_links": {
            "self": _link(_url(request, f"/fleets/{fid}")),
            "vehicles": _link(_url(request, f"/fleets/{fid}/vehicles")),
            "callbacks": _link(_url(request, f"/fleets/{fid}/remote/callbacks")),
        },
    }


async def list_fleets(request: Request, sandbox: Sandbox) -> Response:
    return _page(request, [sandbox.settings.fleet], "fleets", lambda _: _fleet_body(request, sandbox))


async def get_fleet(request: Request, sandbox: Sandbox) -> Response:
    return Hal(_fleet_body(request, sandbox))


def _vehicle_body(request: Request, sandbox: Sandbox, vehicle: SimVehicle) -> dict[str, Any]:
    fid = sandbox.settings.fleet
    return {
        "id": vehicle.id,
        "vin": vehicle.vin,
        "motorization": vehicle.motorization,
        "_links": {
            "self": _link(_url(request, f"/fleets/{fid}/vehicles/{vehicle.id}")),
            "status": _link(_url(request, f"/fleets/{fid}/vehicles/{vehicle.id}/status")),
        },
    }


async def list_vehicles(request: Request, sandbox: Sandbox) -> Response:
    prefix = request.query_params.get("vinPrefix", "").upper()
    vehicles = [v for v in sandbox.world.vehicles.values() if v.vin.startswith(prefix)]
    return _page(request, vehicles, "vehicles", lambda v: _vehicle_body(request, sandbox, v))


async def get_vehicle(request: Request, sandbox: Sandbox) -> Response:
    return Hal(_vehicle_body(request, sandbox, _vehicle(request, sandbox)))


async def vehicle_status(request: Request, sandbox: Sandbox) -> Response:
    vehicle = _vehicle(request, sandbox)
    fid = sandbox.settings.fleet
    air: dict[str, Any] = {
        "createdAt": vehicle.updated_at,
        "status": "Enabled" if any(p["enabled"] for p in vehicle.programs.values()) else "Disabled",
    }
    if vehicle.programs:
        air["programs"] = [vehicle.programs[slot] for slot in sorted(vehicle.programs)]
    return Hal(
        {
            "_links": {
                "self": _link(_url(request, f"/fleets/{fid}/vehicles/{vehicle.id}/status")),
                "vehicle": _link(_url(request, f"/fleets/{fid}/vehicles/{vehicle.id}")),
                "fleet": _link(_url(request, f"/fleets/{fid}")),
            },
            "vin": vehicle.vin,
            "createdAt": vehicle.updated_at,
            "updatedAt": vehicle.updated_at,
            "preconditioning": {"airConditioning": air},
        }
    )


# ---- callbacks ----------------------------------------------------------------------------------------------


def _callback_ref(request: Request, sandbox: Sandbox, callback: SimCallback) -> dict[str, Any]:
    fid = sandbox.settings.fleet
    return {
        "_links": {
            "fleet": _link(_url(request, f"/fleets/{fid}")),
            "callback": _link(_url(request, f"/fleets/{fid}/remote/callbacks/{callback.id}")),
        },
        "callbackId": callback.id,
        "status": callback.status,
    }


def _callback_body(request: Request, sandbox: Sandbox, callback: SimCallback) -> dict[str, Any]:
    fid = sandbox.settings.fleet
    return {
        "_links": {
            "self": _link(_url(request, f"/fleets/{fid}/remote/callbacks/{callback.id}")),
            "fleet": _link(_url(request, f"/fleets/{fid}")),
        },
        "id": callback.id,
        "status": callback.status,
        "subscribe": callback.subscribe,
    }


async def list_callbacks(request: Request, sandbox: Sandbox) -> Response:
    types = set(request.query_params.getlist("types"))
    callbacks = [
        c for c in sandbox.world.callbacks.values() if not types or types & set(c.subscribe.get("remoteTypes", []))
    ]
    return _page(request, callbacks, "callbacks", lambda c: _callback_body(request, sandbox, c))


async def create_callback(request: Request, sandbox: Sandbox) -> Response:
    body = await _body(request)
    _check("RemoteCallbackSubscribe", body)
    callback = SimCallback(sandbox.world.next_id("callback"), body)
    sandbox.world.callbacks[callback.id] = callback
    _maybe_drop(request, sandbox)
    return Hal(_callback_ref(request, sandbox, callback), status_code=200)


async def get_callback(request: Request, sandbox: Sandbox) -> Response:
    return Hal(_callback_body(request, sandbox, _callback(request, sandbox)))


async def update_callback(request: Request, sandbox: Sandbox) -> Response:
    callback = _callback(request, sandbox)
    body = await _body(request)
    _check("RemoteCallbackSubscribe", body)
    callback.subscribe = body
    _maybe_drop(request, sandbox)
    return Hal(_callback_ref(request, sandbox, callback), status_code=202)


async def set_callback_status(request: Request, sandbox: Sandbox) -> Response:
    callback = _callback(request, sandbox)
    body = await _body(request)
    _check("RemoteCallbacksStatusSetter", body)
    callback.status = body["status"]
    _maybe_drop(request, sandbox)
    return Hal(_callback_ref(request, sandbox, callback), status_code=202)


async def delete_callback(request: Request, sandbox: Sandbox) -> Response:
    callback = _callback(request, sandbox)
    pending = sandbox.world.pending_remotes(callback.id)
    if pending:
        raise ApiProblem(400, 6, f"The callback has {pending} pending remote actions; it can be deleted once they end")
    del sandbox.world.callbacks[callback.id]
    outbox = sandbox.engine.outboxes.pop(callback.id, None)
    if outbox is not None:
        outbox.close()
    _maybe_drop(request, sandbox)
    return Response(status_code=204)


# ---- remotes ------------------------------------------------------------------------------------------------


def _remote_body(request: Request, sandbox: Sandbox, remote: SimRemote) -> dict[str, Any]:
    fid = sandbox.settings.fleet
    base = f"/fleets/{fid}/vehicles/{remote.vehicle.id}/callbacks/{remote.callback_id}/remotes"
    body: dict[str, Any] = {
        "_links": {
            "self": _link(_url(request, f"{base}/{remote.id}")),
            "fleet": _link(_url(request, f"/fleets/{fid}")),
            "callback": _link(_url(request, f"/fleets/{fid}/remote/callbacks/{remote.callback_id}")),
        },
        "remoteActionId": remote.id,
        "type": remote.type,
        "status": remote.status,
        "remote": remote.remote,
        "createdAt": remote.created_at,
        "updatedAt": remote.updated_at,
    }
    if remote.failure_cause:
        body["failureCause"] = remote.failure_cause
    return body


def _semantic_problems(body: dict[str, Any]) -> str | None:
    """What the API refuses beyond its schema: not one action, or a preconditioning program list it cannot use."""
    key = remote_key(body)
    if isinstance(key, list):
        return f"Exactly one action is supported at a time, found {len(key)}"
    if key == "preconditioning":
        programs = body["preconditioning"].get("airConditioning", {}).get("programs", [])
        slots = [p.get("slot") for p in programs]
        if None in slots:
            return "Every program needs its slot"
        if len(set(slots)) != len(slots):
            return "A slot can only be used once in the same programs list"
    return None


async def post_remote(request: Request, sandbox: Sandbox) -> Response:
    vehicle = _vehicle(request, sandbox)
    callback = _callback(request, sandbox)
    body = await _body(request)
    _check("Remote", body)
    problem = _semantic_problems(body)
    if problem:
        raise ApiProblem(400, 7, problem)
    kind = REMOTE_KEYS[str(remote_key(body))]
    if kind not in callback.subscribe.get("remoteTypes", []):
        raise ApiProblem(400, 8, f"The callback does not list {kind} in its remoteTypes")
    remote = SimRemote(sandbox.world.next_id("remote"), vehicle, callback.id, kind, await request.body())
    sandbox.world.remotes[remote.id] = remote
    sandbox.engine.start_remote(remote)
    _maybe_drop(request, sandbox)
    fid = sandbox.settings.fleet
    return Hal(
        {
            "_links": {
                "fleet": _link(_url(request, f"/fleets/{fid}")),
                "callback": _link(_url(request, f"/fleets/{fid}/remote/callbacks/{callback.id}")),
                "remote": _link(
                    _url(request, f"/fleets/{fid}/vehicles/{vehicle.id}/callbacks/{callback.id}/remotes/{remote.id}")
                ),
            },
            "remoteActionId": remote.id,
            "type": kind,
        },
        status_code=202,
    )


async def list_remotes(request: Request, sandbox: Sandbox) -> Response:
    vehicle = _vehicle(request, sandbox)
    callback = _callback(request, sandbox)
    remotes = [r for r in sandbox.world.remotes.values() if r.vehicle is vehicle and r.callback_id == callback.id]
    return _page(request, remotes, "remoteActions", lambda r: _remote_body(request, sandbox, r))


async def get_remote(request: Request, sandbox: Sandbox) -> Response:
    vehicle = _vehicle(request, sandbox)
    callback = _callback(request, sandbox)
    remote = sandbox.world.remotes.get(request.path_params["rid"])
    if remote is None or remote.vehicle is not vehicle or remote.callback_id != callback.id:
        raise ApiProblem(404, 4, f"Unknown remote action {request.path_params['rid']}")
    return Hal(_remote_body(request, sandbox, remote))


def _maybe_drop(request: Request, sandbox: Sandbox) -> None:
    if sandbox.settings.drop_rate and sandbox.faults.random() < sandbox.settings.drop_rate:
        sandbox.counts["dropped"] += 1
        request.scope["sandbox.drop"] = True


# ---- /_sandbox: what tests and demos look at ---------------------------------------------------------------


async def sandbox_deliveries(request: Request, sandbox: Sandbox) -> Response:
    return JSONResponse(
        {
            "deliveries": [d.to_dict() for d in sandbox.engine.deliveries],
            "suppressed": list(sandbox.engine.suppressed),
        }
    )


def _sim_vehicle(vehicle: SimVehicle) -> dict[str, Any]:
    return {
        "id": vehicle.id,
        "vin": vehicle.vin,
        "asleep": vehicle.asleep,
        "offline": vehicle.offline,
        "fails_with": vehicle.fails_with,
        "programs": [vehicle.programs[slot] for slot in sorted(vehicle.programs)],
    }


async def sandbox_vehicles(request: Request, sandbox: Sandbox) -> Response:
    return JSONResponse({"vehicles": [_sim_vehicle(v) for v in sandbox.world.vehicles.values()]})


async def sandbox_vehicle(request: Request, sandbox: Sandbox) -> Response:
    vehicle = sandbox.world.by_vin.get(request.path_params["vin"].upper())
    if vehicle is None:
        raise ApiProblem(404, 2, f"Unknown VIN {request.path_params['vin']}")
    if request.method == "PUT":  # change a vehicle out of band: programs set in the car, offline, asleep
        body = await _body(request)
        if "programs" in body:
            programs = body["programs"]
            if not isinstance(programs, list) or not all(
                isinstance(p, dict) and type(p.get("slot")) is int and 1 <= p["slot"] <= 4 for p in programs
            ):
                raise ApiProblem(400, 3, "programs: a list of program entries, each with a slot from 1 to 4")
            vehicle.programs = {p["slot"]: p for p in programs}
            vehicle.updated_at = now_iso()
        for flag in ("offline", "asleep"):
            if flag in body:
                setattr(vehicle, flag, bool(body[flag]))
        if "fails_with" in body:  # every remote to it fails with this cause (null: they succeed again)
            cause = body["fails_with"]
            vehicle.fails_with = str(cause)[:128] if cause else None
    return JSONResponse(_sim_vehicle(vehicle))


async def sandbox_remotes(request: Request, sandbox: Sandbox) -> Response:
    return JSONResponse(
        {
            "remotes": [
                {
                    "remoteActionId": r.id,
                    "label": r.remote.get("label"),
                    "vin": r.vehicle.vin,
                    "callbackId": r.callback_id,
                    "type": r.type,
                    "status": r.status,
                    "failureCause": r.failure_cause,
                    "done": r.done,
                    "programs": [
                        {"actionsType": p.get("actionsType", "Set"), "slot": p.get("slot"), "start": p.get("start")}
                        for p in r.remote.get("preconditioning", {}).get("airConditioning", {}).get("programs", [])
                    ],
                }
                for r in sandbox.world.remotes.values()
            ]
        }
    )


async def sandbox_stats(request: Request, sandbox: Sandbox) -> Response:
    world = sandbox.world
    return JSONResponse(
        {
            **sandbox.counts,
            "vehicles": len(world.vehicles),
            "callbacks": len(world.callbacks),
            "remotes": len(world.remotes),
            "remotes_pending": sum(1 for r in world.remotes.values() if not r.done),
            "deliveries": len(sandbox.engine.deliveries),
            "calls": dict(sandbox.calls),
        }
    )


def create_app(settings: SandboxSettings) -> Gate:
    sandbox = Sandbox(settings)
    fleet = BASE + "/fleets/{fid}"
    table: list[tuple[str, Handler, list[str]]] = [
        (BASE + "/fleets", list_fleets, ["GET"]),
        (fleet, get_fleet, ["GET"]),
        (fleet + "/vehicles", list_vehicles, ["GET"]),
        (fleet + "/vehicles/{vid}", get_vehicle, ["GET"]),
        (fleet + "/vehicles/{vid}/status", vehicle_status, ["GET"]),
        (fleet + "/remote/callbacks", list_callbacks, ["GET"]),
        (fleet + "/remote/callbacks", create_callback, ["POST"]),
        (fleet + "/remote/callbacks/{cbid}", get_callback, ["GET"]),
        (fleet + "/remote/callbacks/{cbid}", update_callback, ["PUT"]),
        (fleet + "/remote/callbacks/{cbid}", delete_callback, ["DELETE"]),
        (fleet + "/remote/callbacks/{cbid}/status", set_callback_status, ["PUT"]),
        (fleet + "/vehicles/{vid}/callbacks/{cbid}/remotes", post_remote, ["POST"]),
        (fleet + "/vehicles/{vid}/callbacks/{cbid}/remotes", list_remotes, ["GET"]),
        (fleet + "/vehicles/{vid}/callbacks/{cbid}/remotes/{rid}", get_remote, ["GET"]),
        ("/_sandbox/deliveries", sandbox_deliveries, ["GET"]),
        ("/_sandbox/vehicles", sandbox_vehicles, ["GET"]),
        ("/_sandbox/vehicles/{vin}", sandbox_vehicle, ["GET", "PUT"]),
        ("/_sandbox/remotes", sandbox_remotes, ["GET"]),
        ("/_sandbox/stats", sandbox_stats, ["GET"]),
    ]
    routes = [route(path, handler, methods, sandbox) for path, handler, methods in table]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.engine.start()
        try:
            yield
        finally:
            await sandbox.engine.stop()

    # the gate wraps the whole application, outside Starlette's own middleware, so that it holds uvicorn's
    # `send` and can reach the connection to cut it
    return Gate(Starlette(routes=routes, lifespan=lifespan), sandbox)
