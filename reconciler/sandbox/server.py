"""Serving the sandbox with uvicorn, and the reconciler.yaml that points at it."""

from __future__ import annotations

import ipaddress
from typing import TextIO

import uvicorn

from reconciler.sandbox.app import BASE, SandboxSettings, create_app
from reconciler.sandbox.listen import listen_socket


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{BASE}"


def print_config(settings: SandboxSettings, host: str, port: int, out: TextIO) -> None:
    """A ready reconciler.yaml for this sandbox (its credentials are not secrets: the sandbox is local).

    No `yaml-language-server` schema line: the schema ships inside the installed package, and no relative path
    from wherever this file is written reaches it.
    """
    out.write(
        f"""# reconciler.yaml for `reconciler sandbox` on {host}:{port}
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


def listen_warning(settings: SandboxSettings, host: str) -> str | None:
    """A warning when the sandbox would be reachable from other machines: its credentials are fixed and printed."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to anything
    return (
        f"warning: the sandbox listens on {host}, not a loopback address: other machines may reach it, and its "
        f"credentials are fixed (username {settings.username}, client_id {settings.client_id}). "
        "Use --listen 127.0.0.1:PORT unless that is what you want."
    )


def serve(settings: SandboxSettings, host: str, port: int, out: TextIO) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM); ReconcilerError when the address cannot be listened on."""
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
