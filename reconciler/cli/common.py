"""What the commands share: the top-level options, errors as text or JSON, plan and apply's selection flags."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.diagnostics import Diagnostic
from reconciler.errors import InvalidInputError, ReconcilerError, exit_code_for
from reconciler.render.diagnostics import render_error_json

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class Options:
    """What the top-level options chose, shared with every command."""

    config: Path


def report_error(error: BaseException) -> None:
    """An error for people, on stderr: invalid input as its diagnostics (file:line:col each), else its message."""
    if isinstance(error, InvalidInputError):
        warn(error.diagnostics)
    else:
        click.echo(f"Error: {error}", err=True)
    for note in getattr(error, "__notes__", ()):  # what went wrong while stopping (a lock left behind)
        click.echo(note, err=True)


def warn(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        click.echo(diagnostic.format(), err=True)


def json_errors(command: F) -> F:
    """With `--format json`, an error still answers in JSON on stdout (`result`, `exit_code`, and the
    diagnostics of invalid manifests or settings), so a tool reading stdout never gets nothing; the text goes to
    stderr as usual."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ReconcilerError as error:
            if kwargs.get("fmt") != "json":
                raise
            report_error(error)
            render_error_json(error, sys.stdout)
            return int(exit_code_for(error))

    return wrapper  # type: ignore[return-value]


def selection_options(command: F) -> F:
    """--target, --exclude, --retry-failed and --takeover: what plan and apply share about choosing changes."""
    command = click.option(
        "--takeover", is_flag=True, help="Replace programs reconciler did not set in the slots it manages."
    )(command)
    command = click.option(
        "--retry-failed", is_flag=True, help="Also retry remotes that failed with a permanent cause."
    )(command)
    command = click.option("--exclude", multiple=True, metavar="SEL", help="Leave out changes matching the selector.")(
        command
    )
    return click.option(
        "--target", multiple=True, metavar="SEL", help="Only changes matching vin:, group:, schedule:, callback:."
    )(command)


def colour(stream: Any) -> bool:
    """Colour only on a terminal that shows it: not with NO_COLOR set, nor on TERM=dumb (editors, some CI)."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def server_options(logged: str) -> Callable[[F], F]:
    """--listen, --tls-cert, --tls-key and --log-format, shared by the commands that serve HTTP; `logged` says
    what the log has one line per."""

    def decorate(command: F) -> F:
        for option in reversed(
            (
                click.option("--listen", required=True, help="HOST:PORT to listen on."),
                click.option(
                    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Certificate, to serve https."
                ),
                click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its private key."),
                click.option(
                    "--log-format",
                    type=click.Choice(["text", "json"]),
                    default="text",
                    show_default=True,
                    help=f"One line per {logged} on stderr, as text or as one JSON object per line.",
                ),
            )
        ):
            command = option(command)
        return command

    return decorate
