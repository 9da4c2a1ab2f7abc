"""`validate`: the settings and manifests checked offline."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.common import Options, json_errors
from reconciler.render.diagnostics import RENDERERS
from reconciler.validate import validate_project


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
    help="text for people, json for tools, github for pull-request annotations.",
)
@click.option("--strict", is_flag=True, help="Treat warnings, unset ${env:...} variables among them, as errors.")
@click.pass_obj
@json_errors
def validate(opts: Options, fmt: str, strict: bool) -> int:
    """Check reconciler.yaml and the manifests offline: schema and domain rules, no credentials needed."""
    report = validate_project(opts.config, os.environ, strict=strict)
    RENDERERS[fmt](report, sys.stdout)
    return int(report.exit_code)
