"""GitHub Actions' step files, when a step runs the command: outputs (`$GITHUB_OUTPUT`) and the step summary
(`$GITHUB_STEP_SUMMARY`). Nothing happens when the variables are unset. The files are only appended to, and
never needed: one that cannot be written costs a warning line on stderr, never the command's result."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping

import click

from reconciler.render.github import PLAN_ROOM, SUMMARY_LIMIT, SUMMARY_MARGIN, output_text


def write_outputs(environ: Mapping[str, str], values: Mapping[str, str]) -> None:
    path = environ.get("GITHUB_OUTPUT")
    if path:
        _append(path, output_text(values), "step outputs")


def write_summary(environ: Mapping[str, str], render: Callable[[int], str]) -> None:
    """Append `render(budget)`: markdown in at most `budget` bytes, what keeps the file under GitHub's limit
    with what earlier commands of the step wrote to it."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        used = os.stat(path).st_size
    except FileNotFoundError:
        used = 0
    except OSError as error:
        _warn("step summary", path, error)
        return
    budget = SUMMARY_LIMIT - SUMMARY_MARGIN - used
    if budget < PLAN_ROOM:
        click.echo(
            f"Warning: the step summary {_one_line(path)} already holds {used:,} bytes; nothing added to it, "
            f"to keep it under GitHub's limit of {SUMMARY_LIMIT:,}.",
            err=True,
        )
        return
    _append(path, render(budget), "step summary")


def _append(path: str, text: str, what: str) -> None:
    """One append of the whole text. Non-blocking open: a FIFO nobody reads is an error, not a hang."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "nothing written")
                view = view[written:]
        finally:
            os.close(fd)
    except OSError as error:
        _warn(what, path, error)


def _warn(what: str, path: str, error: OSError) -> None:
    reason = error.strerror or str(error)
    click.echo(f"Warning: could not write the {what} to {_one_line(path)}: {_one_line(reason)}.", err=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())
