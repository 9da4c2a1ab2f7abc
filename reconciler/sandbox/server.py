"""Serving the sandbox with uvicorn, and the reconciler.yaml that points at it."""

from __future__ import annotations

from typing import TextIO

import uvicorn

from reconciler.sandbox.app import BASE, SandboxSettings, create_app
from reconciler.sandbox.listen import listen_socket


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{BASE}"


def print_config(settings: SandboxSettings, host: str, port: int, out: TextIO) -> None:
    """A ready reconciler.yaml for this sandbox (its credentials are not secrets: the sandbox is local)."""
    out.write(
        f"""# yaml-language-server: $schema=schemas/config.schema.json
# reconciler.yaml for `reconciler sandbox` on {host}:{port}
fleet: {settings.fleet}
manifests: [manifests]
api:
  url: {base_url(host, port)}
  client_id: {settings.client_id}
  username: {settings.username}
  password: {settings.password}
  rate_limit: {settings.rate_limit:g}
  parallelism: 8
state:
  backend: file
  path: .reconciler/state.json
"""
    )


def serve(settings: SandboxSettings, host: str, port: int, out: TextIO) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM)."""
    app = create_app(settings)
    sock = listen_socket(host, port)  # connections queue from now on, before the address is printed
    bound = sock.getsockname()[1]
    out.write(
        f"Sandbox Fleet API: {base_url(host, bound)}\n"
        f"  fleet {settings.fleet}, {settings.vehicles} vehicles (seed {settings.seed}), speed x{settings.speed:g}\n"
        f"  credentials: username {settings.username}, password {settings.password}, "
        f"client_id {settings.client_id}\n"
        f"  inspect: http://{host}:{bound}/_sandbox/vehicles, /_sandbox/deliveries, /_sandbox/stats\n"
    )
    out.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="auto", http="auto")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
