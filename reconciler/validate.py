"""`reconciler validate`: settings and manifests checked offline, every finding reported at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.config import load_settings
from reconciler.diagnostics import Diagnostic, Report, Severity, sort_key
from reconciler.errors import ConfigError, ExitCode
from reconciler.manifests import load_manifests


def validate_project(config: Path, environ: Mapping[str, str], *, strict: bool = False) -> Report:
    """Check reconciler.yaml and every manifest it names. No credentials or network needed.

    With `strict`, warnings (an unset `${env:...}` variable among them) count as errors.
    """
    summary = dict.fromkeys(
        ("files", "documents", "callbacks", "groups", "schedules", "vehicles", "slots", "errors", "warnings"), 0
    )
    try:
        settings = load_settings(config, environ)
    except ConfigError as error:
        diagnostics = list(error.diagnostics)
    else:
        outcome = load_manifests(settings.manifests, environ)
        diagnostics = [*settings.diagnostics, *outcome.diagnostics]
        summary["files"] = len(outcome.files)
        summary["documents"] = outcome.documents
        if outcome.desired is not None:
            desired = outcome.desired
            summary.update(
                callbacks=len(desired.callbacks),
                groups=len(desired.groups),
                schedules=len(desired.schedules),
                vehicles=len(desired.vehicles),
                slots=desired.slot_count,
            )
    if strict:
        diagnostics = [
            Diagnostic(d.source, d.rule, d.message, Severity.ERROR) if not d.is_error else d for d in diagnostics
        ]
    diagnostics.sort(key=sort_key)
    summary["errors"] = sum(1 for d in diagnostics if d.is_error)
    summary["warnings"] = len(diagnostics) - summary["errors"]
    code = ExitCode.INVALID if summary["errors"] else ExitCode.OK
    return Report(diagnostics, code, summary)
