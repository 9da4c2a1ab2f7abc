"""`apply`: make a plan's API calls, asking first on a terminal, with progress and a summary."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path
from typing import Any

import click

from reconciler.cli import github
from reconciler.cli.common import Options, selection_options
from reconciler.cli.plan import render_plan
from reconciler.cli.signals import stop_on_signals
from reconciler.errors import ExitCode, ReconcilerError, exit_code_for
from reconciler.operations import apply_changes, open_workspace
from reconciler.plan import Plan
from reconciler.render.github import apply_summary

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
    stop = threading.Event()
    shown: list[dict[str, Any]] = []  # the plan shown, and applied unless an error stops the run

    def show(plan: Plan) -> None:
        data = plan.to_dict()
        shown.append(data)
        render_plan(data, "text", ExitCode.OK, allowed=allow)

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
    try:
        opened = open_workspace(opts.config, os.environ)
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
    except ReconcilerError as error:
        _summary(shown, f"Error: {error}\n", exit_code_for(error), allow)
        raise
    render_apply(
        run.report, sys.stdout, sys.stderr, waited=run.waited, leftovers=run.leftovers, recovered=run.recovered
    )
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        result = io.StringIO()
        render_apply(run.report, result, result, waited=run.waited, leftovers=run.leftovers, recovered=run.recovered)
        if run.report is None:
            result.write("Nothing to apply: the plan has no changes.\n")
        _summary(shown, result.getvalue(), run.exit_code, allow)
    return int(run.exit_code)


def _summary(shown: list[dict[str, Any]], result: str, code: ExitCode, allow: tuple[str, ...]) -> None:
    """The GitHub step summary, when the step has one: the result, then the plan shown (if one was)."""
    plan = shown[-1] if shown else None
    fleet = plan["fleet"] if plan is not None else None
    github.write_summary(os.environ, lambda budget: apply_summary(fleet, plan, result, code, budget, allowed=allow))
