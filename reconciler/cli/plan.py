"""`plan` and `show`: the changes apply would make, now or as saved, and the recorded state."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from reconciler.cli import github
from reconciler.cli.common import Options, colour, json_errors, selection_options, warn
from reconciler.errors import ExitCode
from reconciler.operations import open_workspace, plan_changes
from reconciler.plan import read_plan_file, write_plan_file
from reconciler.render.github import plan_outputs, plan_summary
from reconciler.render.gitlab import render_gitlab
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from reconciler.render.state import render_state, render_state_json, render_state_markdown
from reconciler.render.text import render_text

PLAN_FORMATS = ("text", "markdown", "json", "gitlab")


def render_plan(data: dict[str, Any], fmt: str, code: ExitCode, allowed: tuple[str, ...] = ()) -> None:
    """A plan dict on stdout in `fmt`; text in colour where the terminal shows it. `allowed`: the guards the
    command lets through (`apply --allow`), said so instead of "apply will refuse"."""
    if fmt == "json":
        render_json(data, sys.stdout, result=code.result)
    elif fmt == "markdown":
        render_markdown(data, sys.stdout)
    elif fmt == "gitlab":
        render_gitlab(data, sys.stdout)
    else:
        render_text(data, sys.stdout, colour=colour(sys.stdout), allowed=allowed)


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for `apply PLAN`.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when there are none.")
@selection_options
@click.pass_obj
@json_errors
def plan(
    opts: Options,
    out: Path | None,
    fmt: str,
    detailed_exitcode: bool,
    target: tuple[str, ...],
    exclude: tuple[str, ...],
    retry_failed: bool,
    takeover: bool,
) -> int:
    """Compare the manifests with the recorded state and show the API calls apply would make."""
    opened = open_workspace(opts.config, os.environ)
    result, _, _, warnings = plan_changes(
        opened, os.environ, targets=target, excludes=exclude, retry_failed=retry_failed, takeover=takeover
    )
    warn(warnings)
    if out is not None:
        write_plan_file(result, out)
    code = ExitCode.CHANGES if detailed_exitcode and result.has_changes else ExitCode.OK
    data = result.to_dict()
    render_plan(data, fmt, code)
    github.write_outputs(os.environ, plan_outputs(data))
    github.write_summary(os.environ, lambda budget: plan_summary(data, budget))
    if out is not None:
        click.echo(f"Saved the plan to {out}; apply exactly this plan with: reconciler apply {out}", err=True)
    return int(code)


@click.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--state", "show_state", is_flag=True, help="Show the recorded state instead of a plan.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.pass_obj
@json_errors
def show(opts: Options, plan_file: Path | None, show_state: bool, fmt: str) -> int:
    """Render a saved plan file, or the recorded state with --state."""
    if show_state == (plan_file is not None):
        raise click.UsageError("give either a plan file or --state")
    if plan_file is not None:
        saved = read_plan_file(plan_file)
        render_plan(saved.to_dict(), fmt, ExitCode.OK)
        return 0
    if fmt == "gitlab":
        raise click.UsageError("--format gitlab reports a plan's changes; show --state takes text, markdown or json")
    opened = open_workspace(opts.config, os.environ)
    # outcomes the receiver recorded and journal entries are folded in memory, as plan and status see them
    state = opened.load_state(pending=True)
    lock = opened.backend.current_lock()
    if fmt == "json":
        render_state_json(state, lock, sys.stdout)
    elif fmt == "markdown":
        render_state_markdown(state, opened.backend.name, lock, sys.stdout)
    else:
        render_state(state, opened.backend.name, lock, sys.stdout)
    return 0
