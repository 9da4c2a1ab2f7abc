"""validate's renderers are pure functions of a Report, checked on a StringIO."""

from __future__ import annotations

import io
import json

from reconciler.diagnostics import Diagnostic, Report, Severity, Source
from reconciler.errors import ExitCode
from reconciler.render.diagnostics import render_github, render_json, render_text

SUMMARY = dict(files=2, documents=3, callbacks=1, groups=1, schedules=1, vehicles=1, slots=2, errors=1, warnings=1)
DIAGNOSTICS = [
    Diagnostic(Source("m/a.yaml", 3, 5), "slot-range", "slot 9 is out of range: a vehicle has slots 1 to 4"),
    Diagnostic(Source("m/b,c.yaml", 1, 1), "duplicate-vin", "VIN X is listed twice\n(100%)", Severity.WARNING),
]


def test_text() -> None:
    out = io.StringIO()
    render_text(Report(DIAGNOSTICS, ExitCode.INVALID, SUMMARY), out)
    assert out.getvalue() == (
        "m/a.yaml:3:5: slot 9 is out of range: a vehicle has slots 1 to 4\n"
        "m/b,c.yaml:1:1: warning: VIN X is listed twice\n(100%)\n"
        "Invalid: 1 error, 1 warning in 2 files.\n"
    )
    ok = io.StringIO()
    render_text(Report([], ExitCode.OK, {**SUMMARY, "errors": 0, "warnings": 0}), ok)
    assert ok.getvalue() == "Valid: 2 files, 1 callback, 1 vehicle group, 1 schedule; 1 vehicle, 2 slots.\n"


def test_json() -> None:
    out = io.StringIO()
    render_json(Report(DIAGNOSTICS, ExitCode.INVALID, SUMMARY), out)
    data = json.loads(out.getvalue())
    assert data["format_version"] == "1.0"
    assert data["result"] == "invalid"
    assert data["exit_code"] == 7
    assert data["summary"] == SUMMARY
    assert data["diagnostics"][1] == {
        "file": "m/b,c.yaml",
        "line": 1,
        "column": 1,
        "severity": "warning",
        "rule": "duplicate-vin",
        "message": "VIN X is listed twice\n(100%)",
    }


def test_github_escapes_properties_and_messages() -> None:
    out = io.StringIO()
    render_github(Report(DIAGNOSTICS, ExitCode.INVALID, SUMMARY), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "::error file=m/a.yaml,line=3,col=5,title=slot-range::slot 9 is out of range: a vehicle has slots 1 to 4"
    )
    assert lines[1] == "::warning file=m/b%2Cc.yaml,line=1,col=1,title=duplicate-vin::VIN X is listed twice%0A(100%25)"
    assert lines[2] == "Invalid: 1 error, 1 warning in 2 files."
