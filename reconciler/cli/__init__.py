"""The command line: the `reconciler` group, its commands (one module per command group), and `main`.

A command parses its flags, calls one operation, renders the result and returns an exit code. Exit codes are
the same on every command (see reconciler.errors.ExitCode); `main` maps every exception to one of them in one
place and never shows a traceback for the user's own mistakes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli import apply, fleet, imports, plan, sandbox, serve, state, validate, webhook
from reconciler.cli.common import Options, report_error
from reconciler.errors import ExitCode, ReconcilerError, exit_code_for

__all__ = ["cli", "main", "main_entry"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    default="reconciler.yaml",
    envvar="RECONCILER_CONFIG",
    show_default=True,
    help="Project settings file.",
)
@click.option(
    "--chdir",
    "-C",
    type=click.Path(exists=True, file_okay=False),
    envvar="RECONCILER_CHDIR",
    help="Change to this directory before doing anything else.",
)
@click.version_option(__version__, prog_name="reconciler")
@click.pass_context
def cli(ctx: click.Context, config: str, chdir: str | None) -> None:
    """Manage Stellantis fleet callbacks and preconditioning programs as code."""
    if chdir:
        os.chdir(chdir)
    ctx.obj = Options(Path(config))


for command in (
    validate.validate,
    plan.plan,
    plan.show,
    apply.apply,
    fleet.status,
    fleet.refresh,
    imports.import_,
    state.state,
    webhook.webhook,
    serve.serve,
    sandbox.sandbox,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.UsageError as error:
        error.show()
        return ExitCode.USAGE
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130
    except ReconcilerError as error:
        report_error(error)
        return int(exit_code_for(error))
    except Exception as error:  # a bug: say so briefly; RECONCILER_DEBUG shows the traceback
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        click.echo(f"Internal error: {type(error).__name__}: {error} (set RECONCILER_DEBUG=1 for details)", err=True)
        return ExitCode.ERROR
    return int(result) if isinstance(result, int) else ExitCode.OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
