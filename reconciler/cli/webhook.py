"""`webhook serve`: receive the Fleet API's notifications and record the outcomes."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.common import Options, server_options
from reconciler.operations import open_workspace
from reconciler.sandbox.listen import parse_listen


@click.group()
def webhook() -> None:
    """Receive the Fleet API's notifications and record the outcomes."""


@webhook.command("serve")
@server_options("request")
@click.pass_obj
def webhook_serve(opts: Options, listen: str, tls_cert: str | None, tls_key: str | None, log_format: str) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM); every notification is recorded durably before it is acknowledged."""
    from reconciler.webhook.serve import serve as serve_webhook

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    opened = open_workspace(opts.config, os.environ)
    serve_webhook(opened, os.environ, host, port, sys.stdout, tls_cert, tls_key, log_format=log_format)
    return 0
