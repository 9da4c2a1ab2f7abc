"""`import`: adopt callbacks and vehicle programs that already exist, or write manifests describing them."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import click

from reconciler.cli.common import Options
from reconciler.cli.signals import stop_on_signals
from reconciler.operations import adopt_fleet, dump_fleet, open_workspace
from reconciler.render.imports import render_adopted, render_lines


@click.group("import", invoke_without_command=True)
@click.option(
    "--write-manifests",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write manifests describing the live fleet into this folder (changes no state).",
)
@click.pass_context
def import_(ctx: click.Context, folder: Path | None) -> int | None:
    """Adopt callbacks and vehicle programs that already exist, changing nothing on the API."""
    if folder is not None:
        if ctx.invoked_subcommand is not None:
            raise click.UsageError("--write-manifests goes alone")
        opened = open_workspace(ctx.obj.config, os.environ)
        stop = threading.Event()
        with stop_on_signals(stop):
            lines = dump_fleet(opened, folder, stop=stop)
        render_lines(lines, sys.stdout)
        return 0
    if ctx.invoked_subcommand is None:
        raise click.UsageError("name what to import: callback NAME ID, callbacks, vehicles, or --write-manifests DIR")
    return None


def _adopt(opts: Options, what: str, **kwargs: Any) -> int:
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()
    with stop_on_signals(stop):
        lines = adopt_fleet(opened, os.environ, what, stop=stop, **kwargs)
    render_adopted(lines, sys.stdout)
    return 0


@import_.command("callback")
@click.argument("name")
@click.argument("callback_id")
@click.pass_obj
def import_callback(opts: Options, name: str, callback_id: str) -> int:
    """Record the callback with this id as the manifests' callback NAME."""
    return _adopt(opts, "callback", name=name, callback_id=callback_id)


@import_.command("callbacks")
@click.pass_obj
def import_callbacks(opts: Options) -> int:
    """Record every live callback whose label is a manifest callback's name."""
    return _adopt(opts, "callbacks")


@import_.command("vehicles")
@click.option("--vins", multiple=True, metavar="VIN", help="Only these vehicles (default: every managed one).")
@click.pass_obj
def import_vehicles(opts: Options, vins: tuple[str, ...]) -> int:
    """Record the programs vehicles hold now in the slots the manifests manage."""
    return _adopt(opts, "vehicles", vins=vins)
