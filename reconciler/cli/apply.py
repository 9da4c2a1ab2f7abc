"""`apply`: make a plan's API calls, asking first on a terminal, with progress and a summary."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import click

from reconciler.cli.common import Options, selection_options
from reconciler.cli.plan import render_plan
from reconciler.cli.signals import stop_on_signals
from reconciler.errors import ExitCode
from reconciler.operations import apply_changes, open_workspace
from reconciler.plan import Plan

GUARDS = ("max_deleted_slots", "max_changed_vehicles")


@click.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking (CI).")
@click.option("--parallelism", type=click.IntRange(1, 256), help="Vehicles worked on at once (api.parallelism).")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(min=0),
    is_flag=False,
    flag_value=600,
    default=None,
    metavar="[SECONDS]",
    help="Wait for the outcome of every remote (600 s when no value is given).",
)
@click.option("--allow", multiple=True, type=click.Choice(GUARDS), help="Go on although this guard is exceeded.")
@selection_options
@click.pass_obj
def apply(
    opts: Options,
    plan_file: Path | None,
    auto_approve: bool,
    parallelism: int | None,
    wait_seconds: int | None,
    allow: tuple[str, ...],
    target: tuple[str, ...],
    exclude: tuple[str, ...],
    retry_failed: bool,
    takeover: bool,
) -> int:
    """Make the API calls of a plan (made now, or saved with plan --out) and record every result."""
    from reconciler.render.apply import render_apply
    from reconciler.render.progress import StreamProgress

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not auto_approve and not interactive:
        raise click.UsageError("apply needs --auto-approve when it cannot ask (no terminal)")
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()

    def show(plan: Plan) -> None:
        render_plan(plan.to_dict(), "text", ExitCode.OK, allowed=allow)

    def confirm(plan: Plan) -> bool:
        serve = opened.settings.serve
        if serve.windows_bind_manual_apply:  # held like serve's own runs (exit 4), once there is something to do
            from reconciler.clock import utcnow
            from reconciler.windows import check_windows

            check_windows(serve.windows, utcnow())
        if auto_approve:
            return True
        answer = click.prompt("Apply these changes? Only 'yes' applies them", default="", show_default=False)
        return bool(answer.strip() == "yes")

    # a live line rewrites itself with terminal controls: only where a terminal understands them
    progress = StreamProgress(sys.stderr, sys.stderr.isatty() and os.environ.get("TERM") != "dumb")
    with stop_on_signals(stop, "Stopping: finishing the calls in flight and saving the state (again to abort)."):
        run = apply_changes(
            opened,
            os.environ,
            plan_file=plan_file,
            allow=allow,
            targets=target,
            excludes=exclude,
            retry_failed=retry_failed,
            takeover=takeover,
            parallelism=parallelism,
            wait=wait_seconds,
            show=show,
            confirm=confirm,
            say=click.echo,
            progress=progress,
            stop=stop,
        )
    render_apply(
        run.report, sys.stdout, sys.stderr, waited=run.waited, leftovers=run.leftovers, recovered=run.recovered
    )
    return int(run.exit_code)
