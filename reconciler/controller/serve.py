"""`reconciler serve`: the webhook receiver (every replica receives), the push webhook of the config repo,
the status page at `/`, /metrics, /healthz and /readyz under uvicorn, beside the leader lease and the
reconciliation loop.

A stop (SIGTERM, Ctrl-C) ends the server first, then the run in progress finishes its calls in flight and
saves, then the lease is released so another replica takes over at once.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from reconciler.config import shown_url
from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.metrics import Metrics
from reconciler.controller.page import StatusPage
from reconciler.controller.repo import GitSource
from reconciler.errors import ReconcilerError
from reconciler.operations import Workspace
from reconciler.sandbox.listen import listen_socket, shown_address
from reconciler.webhook.app import create_app, header_bytes
from reconciler.webhook.credentials import ChildLoader
from reconciler.webhook.log import log, logging_to
from reconciler.webhook.serve import receiver, report_dropped, server_config, stopped_by_signals
from reconciler.webhook.writer import EventWriter

# the page loads nothing and runs no script: a browser is told so, whatever a hostile value in it would try
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
}
PUSH_HEADERS = ("X-Reconciler-Token", "X-Gitlab-Token")  # where the push webhook's shared secret is sent
STOP_TIMEOUT = 600.0  # seconds the run in progress may take to finish its calls in flight on a stop


def push_route(controller: Controller, secret: str | None) -> Route:
    async def push(request: Request) -> Response:
        if secret is None:
            return JSONResponse({"message": "the push webhook is off: set serve.push_secret"}, status_code=404)
        given = next((request.headers[name] for name in PUSH_HEADERS if name in request.headers), "")
        if not hmac.compare_digest(header_bytes(given), secret.encode()):
            client = request.client.host if request.client else "-"
            log(logging.WARNING, f"{client} 401 push webhook refused: wrong or missing token", status=401)
            return JSONResponse({"message": "wrong or missing token"}, status_code=401)
        controller.wake.set()
        log(logging.INFO, "push webhook: reconciling now", push=True)
        return JSONResponse({"message": "reconciling now"}, status_code=202)

    return Route("/hooks/push", push, methods=["POST"])


def page_route(page: StatusPage) -> Route:
    def status(request: Request) -> Response:  # a plain function: starlette runs it off the event loop
        try:
            text = page.html()
        except (ReconcilerError, OSError) as error:
            message = f"the state cannot be read now: {error}"
            log(logging.WARNING, f"status page: {message}", status=503)
            return Response(message + "\n", status_code=503, media_type="text/plain")
        return HTMLResponse(text, headers=PAGE_HEADERS)

    return Route("/", status, methods=["GET"])


def controller_routes(
    controller: Controller, metrics: Metrics, secret: str | None, page: StatusPage | None = None
) -> list[Route]:
    async def scrape(request: Request) -> Response:
        # off the event loop: the health figures may read the state, and notifications must not wait for it
        text = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def ready(request: Request) -> Response:
        leadership = controller.leadership
        problem = controller.ready
        body: dict[str, Any] = {"status": "ready" if problem is None else "not ready", "leader": leadership.leading}
        if leadership.holder is not None:
            body["leader_host"], body["leader_pid"] = leadership.holder.host, leadership.holder.pid
        if controller.commit is not None:
            body["commit"] = controller.commit
        if problem is not None:
            body["reason"] = problem
        return JSONResponse(body, status_code=200 if problem is None else 503)

    return [
        *([page_route(page)] if page is not None else []),
        Route("/metrics", scrape, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        push_route(controller, secret),
    ]


def serve(
    workspace: Workspace,
    environ: Mapping[str, str],
    host: str,
    port: int,
    out: TextIO,
    *,
    repo: str | None = None,
    branch: str | None = None,
    interval: float | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_format: str = "text",
    log_stream: TextIO | None = None,
) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM)."""
    settings = workspace.settings
    secret = settings.require(settings.serve.push_secret, "serve.push_secret") if settings.serve.push_secret else None
    workdir = Path(settings.require(settings.serve.workdir, "serve.workdir")) if settings.serve.workdir else None
    source = None
    if repo is not None:
        source = GitSource(repo, branch, settings.root / (workdir or Path(".reconciler/serve")))
    metrics = Metrics()
    loader = ChildLoader(settings.file.resolve(), environ)
    with logging_to(log_stream or sys.stderr, log_format) as lines, contextlib.closing(loader):

        def append(records: Sequence[dict[str, Any]]) -> None:
            workspace.backend.append_events(records)
            metrics.count_outcomes(records)

        made = receiver(workspace, environ, reload=loader, writer=EventWriter(append))
        metrics.watch_receiver(made)
        controller: Controller | None = None

        def changed(leading: bool) -> None:
            if controller is not None:
                controller.leadership_changed(leading)

        leadership = Leadership(workspace.backend, settings.serve.lease_period, changed)
        controller = Controller(workspace, environ, leadership, metrics, source, interval=interval)
        page = StatusPage(controller, metrics)
        metrics.leader.set(0)
        app = create_app(made, controller_routes(controller, metrics, secret, page))
        config = server_config(app, tls_cert, tls_key)
        sock = listen_socket(host, port)
        loader.start()
        server = uvicorn.Server(config)
        stop_leading = threading.Event()
        claims = threading.Thread(target=leadership.run, args=(stop_leading,), name="reconciler-lease", daemon=True)
        with stopped_by_signals(server):
            claims.start()
            controller.start()
            scheme = "https" if tls_cert else "http"
            address = shown_address(host, sock.getsockname()[1])
            following = "reading the manifests"
            if repo is not None:
                following = f"following {shown_url(repo)} ({branch or 'its default branch'})"
            out.write(
                f"Serving on {scheme}://{address}/ (status page, notifications, /hooks/push, /metrics, /healthz, "
                f"/readyz); {following}; state in {workspace.backend.name}\n"
            )
            out.flush()
            try:
                server.run(sockets=[sock])
            finally:
                log(logging.INFO, "stopping: the run in progress finishes its calls in flight and saves", wait=True)
                controller.shutdown(STOP_TIMEOUT)
                stop_leading.set()
                claims.join()
                leadership.release()
                made.close()
                sock.close()
                log(logging.INFO, made.summary(), wait=True, events=made.received, not_recorded=made.not_recorded)
                report_dropped(lines.dropped)
