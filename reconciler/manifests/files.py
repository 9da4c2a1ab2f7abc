"""Finding manifest files and reading their documents through the one YAML loader."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.diagnostics import Diagnostic, Source
from reconciler.yamlload import Document, load_file

SUFFIXES = (".yaml", ".yml")


def display_name(path: Path) -> str:
    """How a file is named in messages: relative to the working directory when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Manifest files under `paths` (files, or folders searched recursively), in a stable order.

    Hidden files and folders (such as .reconciler/) are skipped. A path that does not exist is an error.
    """
    files: list[Path] = []
    found: list[Diagnostic] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(
                    Path(folder) / name
                    for name in sorted(names)
                    if name.endswith(SUFFIXES) and not name.startswith(".")
                )
        else:
            found.append(Diagnostic(Source(display_name(path)), "manifests-missing", "manifest path does not exist"))
    unique = list(dict.fromkeys(path.resolve() for path in files))
    return unique, found


@dataclass(slots=True)
class ManifestFiles:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    digest: str = ""


def read_manifests(paths: Iterable[Path]) -> ManifestFiles:
    """Every non-empty document of every manifest file, with load diagnostics and a digest of the bytes."""
    result = ManifestFiles()
    files, result.diagnostics = discover(paths)
    digest = hashlib.sha256()
    for path in files:
        name = display_name(path)
        loaded = load_file(str(path), name)
        digest.update(name.encode() + b"\0" + loaded.digest.encode() + b"\0")
        result.files.append(name)
        result.diagnostics.extend(loaded.diagnostics)
        documents = [doc for doc in loaded.documents if doc.data is not None]
        if not documents and not loaded.diagnostics:
            result.diagnostics.append(Diagnostic(Source(name, 1, 1), "empty-file", "file holds no manifest documents"))
        result.documents.extend(documents)
    result.digest = digest.hexdigest()
    return result
