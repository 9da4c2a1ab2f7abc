"""`sandbox`: serve a local emulator of the Fleet API, or print the settings to use it."""

from __future__ import annotations

import sys
from typing import Any

import click

from reconciler.sandbox.listen import parse_listen
from reconciler.sandbox.world import DEFAULT_FLEET


@click.command()
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on (port 0: any free port)."
)
@click.option("--vehicles", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="Fleet id.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same vehicles and draws.")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="Divides every delay.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Remotes that fail.")
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Requests answered 500."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Writes whose connection is cut after the work is done.",
)
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Added per request, ms.")
@click.option("--rate-limit", type=click.FloatRange(min=0.01), default=100.0, show_default=True, help="Requests/s.")
@click.option("--daily-limit", type=click.IntRange(min=1), default=100_000, show_default=True, help="Requests/day.")
@click.option("--offline-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True, help="Vehicles offline.")
@click.option("--asleep-rate", type=click.FloatRange(0, 1), default=0.3, show_default=True, help="Vehicles asleep.")
@click.option("--username", default="sandbox", show_default=True)
@click.option("--password", default="sandbox-password", show_default=True)
@click.option("--client-id", default="sandbox-client", show_default=True)
@click.option("--deliver-anywhere", is_flag=True, help="Also send notifications to webhooks not on this machine.")
@click.option("--print-config", is_flag=True, help="Print a reconciler.yaml for this sandbox and exit.")
def sandbox(listen: str, print_config: bool, **options: Any) -> int:
    """Serve a local emulator of the Fleet API with simulated vehicles, until stopped."""
    from reconciler.sandbox.app import SandboxSettings
    from reconciler.sandbox.server import listen_warning, serve
    from reconciler.sandbox.server import print_config as write_sandbox_config

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    options["latency_ms"] = options.pop("latency")
    settings = SandboxSettings(**options)
    if print_config:
        write_sandbox_config(settings, host, port, sys.stdout)
        return 0
    warning = listen_warning(settings, host)
    if warning:
        click.echo(warning, err=True)
    serve(settings, host, port, sys.stdout)
    return 0
