"""Finding manifest files: nothing under a manifest path is skipped silently, nothing outside it is read.

Tests run as root in CI, where permissions do not stop a read: unreadable folders and files are simulated by
making os.scandir and os.open fail as they would, and checked for real where the tests are not root.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.errors import ExitCode, ManifestError
from reconciler.manifests import load_desired, load_manifests
from reconciler.manifests.files import ManifestPaths, discover, read_manifests
from reconciler.yamlload import MAX_FILE_SIZE
from tests.commands import SECRETS, record_converged, run
from tests.files import EXAMPLES, WriteFiles

GROUP = "kind: VehicleGroup\nname: {name}\nvins: [VF3UHNKF5RL000005]\n"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _errors(paths: Any) -> list[tuple[str, str, str]]:
    outcome = load_manifests(paths, {})
    return [(d.rule, d.source.file, d.message) for d in outcome.errors]


def _failing(monkeypatch: pytest.MonkeyPatch, name: str, victim: Path) -> None:
    """Make os.<name> fail with EACCES for `victim`, as it does for a user without permission."""
    real: Callable[..., Any] = getattr(os, name)

    def refuse(path: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(path) == str(victim):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, refuse)


@pytest.fixture
def tree(write: WriteFiles, chdir: Path) -> Path:
    write(
        {
            "m/a.yaml": GROUP.format(name="a"),
            "m/sub/b.yaml": GROUP.format(name="b"),
            "m/c.yml": GROUP.format(name="c"),
            "m/notes.txt": "not a manifest",
            "m/.hidden/d.yaml": "not: read",
        }
    )
    return chdir / "m"


def test_files_are_found_in_order_files_first_then_folders(tree: Path) -> None:
    files, found = discover([Path("m")])
    assert found == []
    assert [str(p.relative_to(tree)) for p in files] == ["a.yaml", "c.yml", "sub/b.yaml"]


def test_an_unreadable_folder_is_an_error_not_fewer_manifests(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing(monkeypatch, "scandir", tree / "sub")
    assert _errors([Path("m")]) == [("manifests-unreadable", "m/sub", "cannot read folder: Permission denied")]
    with pytest.raises(ManifestError) as raised:
        load_desired([Path("m")], {})
    assert raised.value.exit_code is ExitCode.INVALID


def test_an_unreadable_file_is_an_error(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing(monkeypatch, "open", tree / "a.yaml")
    assert _errors([Path("m")]) == [("manifests-unreadable", "m/a.yaml", "cannot read file: Permission denied")]


@pytest.mark.skipif(AS_ROOT, reason="root reads whatever the permissions say")
def test_unreadable_for_real(tree: Path) -> None:  # pragma: no cover - CI runs as root
    (tree / "sub").chmod(0)
    (tree / "a.yaml").chmod(0)
    try:
        assert _errors([Path("m")]) == [
            ("manifests-unreadable", "m/a.yaml", "cannot read file: Permission denied"),
            ("manifests-unreadable", "m/sub", "cannot read folder: Permission denied"),
        ]
    finally:
        (tree / "sub").chmod(0o755)
        (tree / "a.yaml").chmod(0o644)


def test_plan_refuses_rather_than_delete_the_slots_of_an_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo, ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log"))
    record_converged(repo)
    (repo / "manifests" / "depots").mkdir()
    (repo / "manifests" / "schedules.yaml").rename(repo / "manifests" / "depots" / "schedules.yaml")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(repo)
    assert main(["plan", "--detailed-exitcode"]) == 0  # the move alone changes nothing
    capsys.readouterr()
    _failing(monkeypatch, "scandir", repo / "manifests" / "depots")
    assert main(["plan", "--detailed-exitcode"]) == ExitCode.INVALID
    out, err = capsys.readouterr()
    assert "manifests/depots: cannot read folder: Permission denied" in err
    assert "delete" not in out + err


def test_symbolic_link_loops_are_errors_naming_the_path(tree: Path) -> None:
    (tree / "x.yaml").symlink_to("y.yaml")
    (tree / "y.yaml").symlink_to("x.yaml")
    (tree / "sub" / "up").symlink_to("..")
    (tree / "self").symlink_to("self")  # loops too, but is not named like a manifest: ignored
    assert _errors([Path("m")]) == [
        ("manifests-unreadable", "m/sub/up", "symbolic link loop: leads back to m, a folder above it"),
        ("manifests-unreadable", "m/x.yaml", "symbolic link loop: it never reaches a file or folder"),
        ("manifests-unreadable", "m/y.yaml", "symbolic link loop: it never reaches a file or folder"),
    ]


def test_links_are_followed_and_each_file_read_once(tree: Path, write: WriteFiles) -> None:
    write({"common/e.yaml": GROUP.format(name="e")})
    (tree / "common").symlink_to("../common")
    (tree / "again").symlink_to("common")
    (tree / "alias.yaml").symlink_to("a.yaml")
    (tree / "broken.yaml").symlink_to("nowhere.yaml")
    files, found = discover([Path("m"), Path("m/a.yaml")])
    assert [str(p.relative_to(tree.parent)) for p in files] == [
        "m/a.yaml",
        "m/c.yml",
        "common/e.yaml",
        "m/sub/b.yaml",
    ]
    assert [(d.rule, d.source.file, d.message) for d in found] == [
        ("manifests-unreadable", "m/broken.yaml", "broken symbolic link: what it points to does not exist")
    ]


def _make_special_files(tree: Path) -> socket.socket:
    os.mkfifo(tree / "pipe.yaml")
    os.mkfifo(tree / "pipe.txt")  # not named like a manifest: ignored
    (tree / "zero.yaml").symlink_to("/dev/zero")
    (tree / "folder.yaml").mkdir()
    (tree / "folder.yaml" / "f.yaml").write_text(GROUP.format(name="f"))
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tree / "sock.yaml"))
    return server


def test_only_regular_files_are_read_and_reading_never_blocks(tree: Path) -> None:
    server = _make_special_files(tree)
    result: list[list[tuple[str, str, str]]] = []
    try:
        reader = threading.Thread(target=lambda: result.append(_errors([Path("m")])), daemon=True)
        reader.start()
        reader.join(20)
    finally:
        server.close()
    assert result, "reading the manifests blocked"
    assert result[0] == [
        ("manifests-unreadable", "m/pipe.yaml", "a FIFO (named pipe), not a manifest file"),
        ("manifests-unreadable", "m/sock.yaml", "a socket, not a manifest file"),
        ("manifests-unreadable", "m/zero.yaml", "a character device, not a manifest file"),
    ]
    assert _errors([Path("/dev/zero")]) == [
        ("manifests-unreadable", "/dev/zero", "a character device, not a manifest file or folder")
    ]
    assert "folder.yaml/f.yaml" in "\n".join(load_manifests([Path("m/folder.yaml")], {}).files)


def test_size_limit_names_the_file_and_the_limit(tree: Path) -> None:
    size = len(GROUP.format(name="a"))
    (tree / "c.yml").write_text("kind: VehicleGroup\nname: c\nvins: []\n")  # under the limit
    read = read_manifests([Path("m")], limit=size - 1)
    assert [(d.rule, d.source.file, d.message) for d in read.diagnostics] == [
        ("manifests-too-large", "m/a.yaml", f"file of {size} bytes is larger than the limit of {size - 1} bytes"),
        ("manifests-too-large", "m/sub/b.yaml", f"file of {size} bytes is larger than the limit of {size - 1} bytes"),
    ]
    assert [document.data["name"] for document in read.documents] == ["c"]
    assert MAX_FILE_SIZE == 128 * 1024 * 1024  # a 60 MB manifest (millions of vehicles) is read


def test_paths_of_a_config_repo_stay_inside_it(tree: Path, write: WriteFiles) -> None:
    write({"outside/o.yaml": GROUP.format(name="o")})
    (tree / "sub" / "out").symlink_to(tree.parent / "outside")
    (tree / "o.yaml").symlink_to(tree.parent / "outside" / "o.yaml")
    confined = ManifestPaths([Path("m")], within=tree)
    assert [(d.rule, d.source.file) for d in discover(confined)[1]] == [
        ("manifests-outside", "m/o.yaml"),
        ("manifests-outside", "m/sub/out"),
    ]
    assert discover(confined)[1][0].message == (
        f"leads to {tree.parent / 'outside' / 'o.yaml'}, outside the config repo {tree} "
        "(set allow_manifests_outside_repo: true in reconciler.yaml to read manifests from elsewhere)"
    )
    assert discover(ManifestPaths([Path("m")], within=None))[1] == []


def test_validate_a_fifo_and_a_loop_as_a_real_command(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "fleet: f\n", "manifests/a.yaml": GROUP.format(name="a")})
    os.mkfifo(tmp_path / "manifests" / "pipe.yaml")
    (tmp_path / "manifests" / "loop.yaml").symlink_to("loop.yaml")
    result = run("validate", cwd=tmp_path)  # a blocked read would hit run()'s timeout
    assert result.returncode == 7, result.stdout + result.stderr
    assert result.stdout.splitlines()[:2] == [
        "manifests/loop.yaml: symbolic link loop: it never reaches a file or folder",
        "manifests/pipe.yaml: a FIFO (named pipe), not a manifest file",
    ]
    assert "Traceback" not in result.stderr
    root = run("validate", cwd=tmp_path, env={"RECONCILER_MANIFESTS": "/"})
    assert root.returncode == 7
    assert root.stdout.startswith("$RECONCILER_MANIFESTS: manifest path '/' is outside the config repo")
