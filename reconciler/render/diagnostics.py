"""Rendering `validate` results as text, JSON or GitHub Actions annotations."""

from __future__ import annotations

from typing import Any, TextIO

from reconciler.diagnostics import Report
from reconciler.errors import ExitCode, InvalidInputError, ReconcilerError, exit_code_for
from reconciler.render.json import write_json
from reconciler.words import plural

FORMAT_VERSION = "1.0"


def render_text(report: Report, out: TextIO) -> None:
    for diagnostic in report.diagnostics:
        out.write(diagnostic.format() + "\n")
    s = report.summary
    if report.exit_code is ExitCode.OK:
        warnings = f", {plural(s['warnings'], 'warning')}" if s["warnings"] else ""
        out.write(
            f"Valid: {plural(s['files'], 'file')}, {plural(s['callbacks'], 'callback')}, "
            f"{plural(s['groups'], 'vehicle group')}, {plural(s['schedules'], 'schedule')}; "
            f"{plural(s['vehicles'], 'vehicle')}, {plural(s['slots'], 'slot')}{warnings}.\n"
        )
    else:
        out.write(
            f"Invalid: {plural(s['errors'], 'error')}, {plural(s['warnings'], 'warning')} "
            f"in {plural(s['files'], 'file')}.\n"
        )


def render_json(report: Report, out: TextIO) -> None:
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "exit_code": int(report.exit_code),
        "summary": report.summary,
        "diagnostics": [d.to_dict() for d in report.diagnostics],
    }
    write_json(document, out, result=report.exit_code.result)


def render_error_json(error: ReconcilerError, out: TextIO) -> None:
    """What a `--format json` command prints when it stops on an error: `result` and `exit_code` as every JSON
    output carries them, the diagnostics of invalid manifests or settings (each with file, line, column,
    severity, rule and message, as `validate --format json` gives them), and the message of any other error."""
    code = exit_code_for(error)
    diagnostics = error.diagnostics if isinstance(error, InvalidInputError) else ()
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "exit_code": int(code),
        "diagnostics": [d.to_dict() for d in diagnostics],
    }
    if not diagnostics:
        document["message"] = str(error)
    write_json(document, out, result=code.result)


def _escape(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(report: Report, out: TextIO) -> None:
    """Workflow commands that GitHub Actions shows as annotations on the pull request's files."""
    for d in report.diagnostics:
        level = "error" if d.is_error else "warning"
        place = f"file={_escape(d.source.file, property_value=True)}"
        if d.source.line:
            place += f",line={d.source.line},col={d.source.column}"
        out.write(f"::{level} {place},title={_escape(d.rule, property_value=True)}::{_escape(d.message)}\n")
    render_text(Report((), report.exit_code, report.summary), out)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
