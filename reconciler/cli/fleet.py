"""`status` and `refresh`: how far the fleet has converged, and what it really holds (drift)."""

from __future__ import annotations

import os
import sys
import threading

import click

from reconciler.cli.common import Options, json_errors
from reconciler.cli.signals import stop_on_signals
from reconciler.errors import ExitCode
from reconciler.operations import open_workspace, plan_changes, refresh_fleet
from reconciler.render.json import write_json
from reconciler.render.refresh import render_refresh, render_refresh_json
from reconciler.render.status import render_status
from reconciler.status import fleet_status


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
@json_errors
def status(opts: Options, fmt: str) -> int:
    """How far the fleet has converged: vehicles converged, in flight, failed (by cause), still to change."""
    opened = open_workspace(opts.config, os.environ)
    result, desired, state, _ = plan_changes(opened, os.environ)
    report = fleet_status(desired, state, result, opened.backend.read_events())
    if fmt == "json":
        write_json(report, sys.stdout, result="ok")
    else:
        render_status(report, sys.stdout)
    return 0


@click.command()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when drift was found, 0 when none.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def refresh(opts: Options, detailed_exitcode: bool, fmt: str) -> int:
    """Read back the live callbacks and vehicle programs, record them, and report drift by class."""
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()
    with stop_on_signals(stop, "Stopping: finishing the reads in flight (again to abort)."):
        found = refresh_fleet(opened, os.environ, stop=stop)
    code = ExitCode.CHANGES if detailed_exitcode and found.drift else ExitCode.OK
    if found.unread:
        code = ExitCode.PARTIAL  # the drift reported is incomplete
    if fmt == "json":
        render_refresh_json(found.drift, found.unread, sys.stdout, result=code.result)
    else:
        render_refresh(found.drift, found.unread, sys.stdout)
    return int(code)
