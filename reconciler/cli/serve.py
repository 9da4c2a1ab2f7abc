"""`serve`: the controller, one long-running process per fleet (several replicas on one PostgreSQL state)."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.common import Options, server_options
from reconciler.config import MAX_SERVE_WAIT, parse_duration
from reconciler.operations import open_workspace
from reconciler.sandbox.listen import parse_listen


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value if not value.isdigit() else int(value))
    except (ValueError, KeyError, IndexError):
        seconds = -1
    if not 1 <= seconds <= MAX_SERVE_WAIT:  # the range of serve.interval: a wait of years overflows the clock
        raise click.BadParameter(f"a duration from 1s to 24h such as 60s, 5m or 1h, not {value!r}")
    return seconds


@click.command()
@server_options("request, run and change of leader")
@click.option("--repo", help="Config repository to follow (a URL or path git can fetch); its new commits are applied.")
@click.option("--branch", help="Branch of --repo to follow (default: its default branch).")
@click.option("--interval", callback=_interval, help="Time between two runs, such as 60s or 5m (serve.interval; 60s).")
@click.pass_obj
def serve(
    opts: Options,
    listen: str,
    repo: str | None,
    branch: str | None,
    interval: float | None,
    tls_cert: str | None,
    tls_key: str | None,
    log_format: str,
) -> int:
    """Receive notifications and, on the replica that leads, reconcile the fleet continuously until stopped."""
    from reconciler.controller.serve import serve as serve_controller

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if branch is not None and repo is None:
        raise click.UsageError("--branch needs --repo")
    opened = open_workspace(opts.config, os.environ)
    serve_controller(
        opened,
        os.environ,
        host,
        port,
        sys.stdout,
        repo=repo,
        branch=branch,
        interval=interval,
        tls_cert=tls_cert,
        tls_key=tls_key,
        log_format=log_format,
    )
    return 0
