"""Finding manifest files and reading their documents through the one YAML loader.

Nothing under a manifest path is skipped silently: a manifest left out makes plan propose deleting its
slots. A folder or file that cannot be read, a symbolic link that loops or leads nowhere, a FIFO, device or
socket named like a manifest, a file over the size limit, and (for the paths of a config repo) anything that
resolves outside the repo are each an error naming the path. Symbolic links to files and folders are
followed; a folder reached twice is read once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.diagnostics import Diagnostic, Source
from reconciler.yamlload import MAX_FILE_SIZE, Document, ReadError, file_kind, load_bytes, read_bounded

SUFFIXES = (".yaml", ".yml")
OUTSIDE_SETTING = "allow_manifests_outside_repo"


class ManifestPaths(tuple[Path, ...]):
    """The manifest paths of a config repo, and the folder everything they lead to must stay inside.

    `within` is None when reconciler.yaml allows manifests anywhere. Plain sequences of paths (tests, tools)
    are not confined.
    """

    within: Path | None

    def __new__(cls, paths: Iterable[Path], within: Path | None = None) -> ManifestPaths:
        self = super().__new__(cls, tuple(paths))
        self.within = within
        return self


def display_name(path: Path | str) -> str:
    """How a file is named in messages: relative to the working directory when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def inside(real: str, root: str) -> bool:
    """Whether the resolved path `real` is `root` or below it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


class _Walk:
    """One discovery: the files found, the problems found, the folders already read."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        self.files: list[Path] = []
        self.found: list[Diagnostic] = []
        self.read: set[tuple[int, int]] = set()

    def problem(self, path: Path, rule: str, message: str) -> None:
        self.found.append(Diagnostic(Source(display_name(path)), rule, message))

    def resolve(self, path: Path, *, given: bool = False) -> tuple[str, os.stat_result] | None:
        """The real path of `path` and what it is, following links; None once a problem is reported."""
        try:
            real = os.path.realpath(path, strict=True)
            info = os.stat(real)
        except FileNotFoundError:
            if given and not os.path.islink(path):
                self.problem(path, "manifests-missing", "manifest path does not exist")
            else:
                self.problem(path, "manifests-unreadable", "broken symbolic link: what it points to does not exist")
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                self.problem(path, "manifests-unreadable", "symbolic link loop: it never reaches a file or folder")
            else:
                self.problem(path, "manifests-unreadable", f"cannot read: {error.strerror or error}")
            return None
        if self.root is not None and not inside(real, self.root):
            self.problem(
                path,
                "manifests-outside",
                f"leads to {real}, outside the config repo {self.root} "
                f"(set {OUTSIDE_SETTING}: true in reconciler.yaml to read manifests from elsewhere)",
            )
            return None
        return real, info

    def top(self, path: Path) -> None:
        resolved = self.resolve(path, given=True)
        if resolved is None:
            return
        real, info = resolved
        if stat.S_ISDIR(info.st_mode):
            self.folder(path, real, info)
        elif stat.S_ISREG(info.st_mode):
            self.files.append(Path(real))
        else:
            self.problem(path, "manifests-unreadable", f"{file_kind(info.st_mode)}, not a manifest file or folder")

    def folder(self, path: Path, real: str, info: os.stat_result) -> None:
        """Every manifest below a folder, depth first: a folder's files (sorted by name), then its folders."""
        stack: list[tuple[Path, str, os.stat_result, tuple[tuple[tuple[int, int], Path], ...]]] = [
            (path, real, info, ())
        ]
        while stack:
            shown, real, info, above = stack.pop()
            identity = (info.st_dev, info.st_ino)
            for ancestor, ancestor_path in above:
                if ancestor == identity:
                    self.problem(
                        shown,
                        "manifests-unreadable",
                        f"symbolic link loop: leads back to {display_name(ancestor_path)}, a folder above it",
                    )
                    break
            else:
                if identity in self.read:
                    continue  # reached through another link: its files are listed already
                self.read.add(identity)
                folders = self._entries(shown, real)
                chain = (*above, (identity, shown))
                stack.extend((sub, sub_real, sub_info, chain) for sub, sub_real, sub_info in reversed(folders))

    def _entries(self, shown: Path, real: str) -> list[tuple[Path, str, os.stat_result]]:
        """Record the manifest files of one folder; return its subfolders (resolved) to walk."""
        try:
            with os.scandir(real) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            self.problem(shown, "manifests-unreadable", f"cannot read folder: {error.strerror or error}")
            return []
        folders: list[tuple[Path, str, os.stat_result]] = []
        for entry in entries:
            if entry.name.startswith("."):  # hidden, such as .reconciler/ and .git/
                continue
            path = shown / entry.name
            named = entry.name.endswith(SUFFIXES)
            try:
                link = entry.is_symlink()
                info = os.stat(entry.path) if link else entry.stat(follow_symlinks=False)
            except OSError as error:
                if not link:
                    self.problem(path, "manifests-unreadable", f"cannot read: {error.strerror or error}")
                elif named:  # a link that loops or leads nowhere matters when named like a manifest
                    self.resolve(path)  # says which
                continue
            if not named and not stat.S_ISDIR(info.st_mode):
                continue
            target = os.path.join(real, entry.name)
            if link:
                resolved = self.resolve(path)
                if resolved is None:
                    continue
                target, info = resolved
            if stat.S_ISDIR(info.st_mode):
                folders.append((path, target, info))
            elif stat.S_ISREG(info.st_mode):
                self.files.append(Path(target))
            else:
                self.problem(path, "manifests-unreadable", f"{file_kind(info.st_mode)}, not a manifest file")
        return folders


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Manifest files under `paths` (files, or folders searched recursively), in a stable order.

    Hidden files and folders (such as .reconciler/) are skipped. A path that does not exist is an error, and
    so is every problem the module docstring lists.
    """
    within = paths.within if isinstance(paths, ManifestPaths) else None
    walk = _Walk(os.path.realpath(within) if within is not None else None)
    for path in paths:
        walk.top(path)
    return list(dict.fromkeys(walk.files)), walk.found


@dataclass(slots=True)
class ManifestFiles:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    digest: str = ""


def read_manifests(paths: Iterable[Path], *, limit: int = MAX_FILE_SIZE) -> ManifestFiles:
    """Every non-empty document of every manifest file, with load diagnostics and a digest of the bytes."""
    result = ManifestFiles()
    files, result.diagnostics = discover(paths)
    digest = hashlib.sha256()
    for path in files:
        name = display_name(path)
        result.files.append(name)
        try:
            raw = read_bounded(str(path), limit)
        except ReadError as error:
            rule = "manifests-too-large" if error.too_large else "manifests-unreadable"
            result.diagnostics.append(Diagnostic(Source(name), rule, error.message))
            continue
        loaded = load_bytes(raw, name)
        del raw
        digest.update(name.encode() + b"\0" + loaded.digest.encode() + b"\0")
        result.diagnostics.extend(loaded.diagnostics)
        documents = [doc for doc in loaded.documents if doc.data is not None]
        if not documents and not loaded.diagnostics:
            result.diagnostics.append(Diagnostic(Source(name, 1, 1), "empty-file", "file holds no manifest documents"))
        result.documents.extend(documents)
    result.digest = digest.hexdigest()
    return result
