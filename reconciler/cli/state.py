"""`state`: inspect the recorded state and repair it by hand (forget addresses, remove a stale lock)."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.common import Options
from reconciler.cli.signals import stop_on_signals
from reconciler.errors import StateError
from reconciler.operations import open_workspace
from reconciler.render.json import write_json
from reconciler.state.addresses import addresses, describe, remove
from reconciler.state.lock import Lease
from reconciler.words import plural


@click.group()
def state() -> None:
    """Inspect and repair the recorded state."""


@state.command("list")
@click.pass_obj
def state_list(opts: Options) -> int:
    """Every address the state records."""
    recorded = open_workspace(opts.config, os.environ).load_state()
    for address in addresses(recorded) if recorded else ():
        click.echo(address)
    return 0


@state.command("show")
@click.argument("address")
@click.pass_obj
def state_show(opts: Options, address: str) -> int:
    """What the state records about one address."""
    recorded = open_workspace(opts.config, os.environ).load_state()
    if recorded is None:
        raise StateError("there is no recorded state yet")
    write_json(describe(recorded, address), sys.stdout, result="ok")  # like every JSON output (DESIGN.md 3)
    return 0


@state.command("rm")
@click.argument("address", nargs=-1, required=True)
@click.pass_obj
def state_rm(opts: Options, address: tuple[str, ...]) -> int:
    """Forget addresses without calling the API (the next plan creates them again if still desired)."""
    opened = open_workspace(opts.config, os.environ)
    with stop_on_signals(), Lease(opened.backend, "state rm") as lease:
        recorded = opened.load_state()
        if recorded is None:
            raise StateError("there is no recorded state yet")
        loaded = recorded.serial
        forgotten = sum(remove(recorded, text) for text in address)
        serial = opened.backend.save(recorded, loaded, lock=lease.id)
    click.echo(f"Forgot {plural(forgotten, 'item')}; state serial {serial}.")
    return 0


@state.command("unlock")
@click.argument("lock_id")
@click.pass_obj
def state_unlock(opts: Options, lock_id: str) -> int:
    """Remove a lock left by a run that is gone. Make sure it is gone: two writers corrupt nothing, but race."""
    opened = open_workspace(opts.config, os.environ)
    holder = opened.backend.force_unlock(lock_id)
    click.echo(f"Removed the lock {holder.describe()}.")
    return 0
