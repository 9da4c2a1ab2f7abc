"""Real servers on loopback for tests: the sandbox, and a webhook receiver that records what it gets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.sandbox.app import BASE, SandboxSettings, create_app


def free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def serve_app(app: Any, port: int = 0) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread; yield its http://127.0.0.1:PORT."""
    sock = free_socket(port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Sandbox:
    root: str
    settings: SandboxSettings
    app: Any

    @property
    def api(self) -> str:
        return self.root + BASE

    @property
    def fleet_url(self) -> str:
        return f"{self.api}/fleets/{self.settings.fleet}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            auth=(self.settings.username, self.settings.password),
            params={"client_id": self.settings.client_id},
            timeout=10,
            **kwargs,
        )

    def inspect(self, path: str) -> Any:
        return httpx.get(f"{self.root}/_sandbox/{path}", timeout=10).json()

    def wait(self, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.02)


@contextmanager
def sandbox(**options: Any) -> Iterator[Sandbox]:
    settings = SandboxSettings(**{"speed": 1000.0, "offline_rate": 0.0, "vehicles": 20, **options})
    app = create_app(settings)
    with serve_app(app) as root:
        yield Sandbox(root, settings, app)


@dataclass
class Hook:
    """A webhook receiver: records every request; answers `failures` errors first, then 200."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    status: int = 200

    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.received for event in request["body"]["events"]]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events())} events received, {count} expected")
            time.sleep(0.02)
        return self.events()


@contextmanager
def webhook(failures: int = 0) -> Iterator[Hook]:
    hook = Hook(failures=failures)

    async def receive(request: Request) -> Response:
        body = await request.json()
        hook.received.append(
            {
                "headers": dict(request.headers),
                "query": dict(request.query_params),
                "body": body,
                "path": request.url.path,
            }
        )
        if hook.failures > 0:
            hook.failures -= 1
            return JSONResponse({"code": 500}, status_code=500)
        await asyncio.sleep(0)
        return Response(status_code=hook.status)

    app = Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
    with serve_app(app) as root:
        hook.url = root + "/remote/webhook"
        yield hook
