"""`state`: inspect the recorded state, repair it by hand (forget addresses, remove a stale lock), and move it
between backends (pull, push)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from reconciler.cli.common import Options
from reconciler.cli.signals import stop_on_signals
from reconciler.errors import StateError
from reconciler.operations import open_workspace, push_state
from reconciler.render.json import write_json
from reconciler.render.state import render_history
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


@state.command("pull")
@click.pass_obj
def state_pull(opts: Options) -> int:
    """Print the stored state as JSON (as a state file holds it): `state pull > state.json`. The outcomes the
    receiver recorded since the last writer are folded in, as plan and status show them (nothing is written)."""
    opened = open_workspace(opts.config, os.environ)
    recorded = opened.load_state(pending=True)
    if recorded is None or not recorded.serial:  # (serial 0: only the journal of a first run, never saved)
        raise StateError("there is no recorded state yet")
    unfinished = len(opened.backend.read_journal())
    if unfinished:
        click.echo(
            f"Warning: the journal of {opened.backend.name} holds {plural(unfinished, 'entry', 'entries')} of a "
            "run in progress or one that did not finish: what it recorded is in the pulled state, not the calls "
            "whose outcome is unknown. To move the state, let that run end (or run `reconciler refresh` after it "
            "was killed) and pull again",
            err=True,
        )
    json.dump(recorded.to_dict(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


@state.command("push")
@click.argument("state_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the stored state even with another lineage or a lower serial.")
@click.pass_obj
def state_push(opts: Options, state_file: Path, force: bool) -> int:
    """Upload a state file as the stored state (refused when it is another lineage or not newer, unless --force)."""
    opened = open_workspace(opts.config, os.environ)
    with stop_on_signals():
        serial, written = push_state(opened, state_file, force=force)
    if written:
        click.echo(f"Pushed {state_file} to {opened.backend.name}: state serial {serial}.")
    else:
        click.echo(f"{opened.backend.name} already holds {state_file} (serial {serial}); nothing pushed.")
    return 0


@state.command("history")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def state_history(opts: Options, limit: int, fmt: str) -> int:
    """The versions of the state kept, newest first (a file backend keeps the state and its .backup)."""
    opened = open_workspace(opts.config, os.environ)
    versions = opened.backend.history(limit)
    if fmt == "json":
        write_json({"versions": [asdict(version) for version in versions]}, sys.stdout, result="ok")
    else:
        render_history(versions, opened.backend.name, sys.stdout)
    return 0
