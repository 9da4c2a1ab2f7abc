"""Manifests: YAML files -> validated, normalised Desired model, or every diagnostic at once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.bulk import collector_paused
from reconciler.diagnostics import Diagnostic, Source, sort_key
from reconciler.errors import ManifestError
from reconciler.manifests.documents import Named, Parsed, identify, parse
from reconciler.manifests.files import read_manifests
from reconciler.manifests.fleet import build, check_names
from reconciler.model import Desired

__all__ = ["LoadOutcome", "load_desired", "load_manifests"]


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    """What loading found: the model (None when any error was found) and every diagnostic, sorted."""

    desired: Desired | None
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[str, ...]
    documents: int

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if not d.is_error)


def load_manifests(
    paths: Iterable[Path], environ: Mapping[str, str] | None = None, *, strict: bool = False
) -> LoadOutcome:
    """Load and check every manifest under `paths`.

    With `strict`, an unset `${env:...}` variable is an error rather than a warning: commands that send or
    fingerprint webhook secrets need the values, `validate` does not.
    """
    with collector_paused():  # a large fleet's documents and model are built in one go (see reconciler.bulk)
        return _load(paths, os.environ if environ is None else environ, strict)


def _load(paths: Iterable[Path], environ: Mapping[str, str], strict: bool) -> LoadOutcome:
    read = read_manifests(paths)
    found = list(read.diagnostics)
    if not read.files and not found:
        found.append(Diagnostic(Source("manifests"), "manifests-missing", "no manifest files (*.yaml, *.yml) found"))
    named: list[Named] = []
    parsed: list[Parsed] = []
    for document in read.documents:
        try:
            identity = identify(document, found)
            if identity is None:
                continue
            named.append(identity)
            item = parse(document, identity.kind, environ, strict, found)
            if item is not None:
                parsed.append(item)
        except RecursionError:
            found.append(
                Diagnostic(
                    document.source, "document-depth", "document nests too deeply (or an alias refers to itself)"
                )
            )
    check_names(named, found)
    desired = build(parsed, named, found, read.files, read.digest)
    for document in read.documents:
        document.release()
    errors = any(d.is_error for d in found)
    return LoadOutcome(
        None if errors else desired,
        tuple(sorted(found, key=sort_key)),
        tuple(read.files),
        len(read.documents),
    )


def load_desired(
    paths: Iterable[Path], environ: Mapping[str, str] | None = None, *, strict: bool = True
) -> tuple[Desired, tuple[Diagnostic, ...]]:
    """The Desired model and its warnings; ManifestError (exit 7) with every diagnostic on any error."""
    outcome = load_manifests(paths, environ, strict=strict)
    if outcome.desired is None:
        raise ManifestError(outcome.diagnostics)
    return outcome.desired, outcome.warnings
