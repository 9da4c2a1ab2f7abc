"""A measured run (`pytest --cov`) counts the subprocesses the tests start, wherever they run and however they
stop: most commands are tested as users run them, in a process of their own, and would count as unexercised."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import coverage
import pytest

import reconciler
from tests.commands import run

PACKAGE = Path(reconciler.__file__).parent


@pytest.fixture
def data_files(cov: coverage.Coverage | None, request: pytest.FixtureRequest) -> Path:
    """The folder of the run's data files; the test is skipped when this run does not measure coverage."""
    if cov is None:
        pytest.skip("this run does not measure coverage (pytest --cov does)")
    return (request.config.invocation_params.dir / cov.config.data_file).parent


def measured_since(folder: Path, before: set[Path], module: str) -> set[int]:
    """Lines of reconciler/`module` recorded by the data files written in `folder` since `before` was listed."""
    lines: set[int] = set()
    for path in set(folder.glob(".coverage.*")) - before:
        data = coverage.CoverageData(str(path))
        data.read()
        lines |= set(data.lines(str(PACKAGE / module)) or ())
    return lines


def test_a_cli_run_in_another_folder_is_measured_into_the_runs_data(data_files: Path, tmp_path: Path) -> None:
    before = set(data_files.glob(".coverage.*"))
    result = run("validate", cwd=tmp_path)  # no reconciler.yaml there: exit 7, through cli.main
    assert result.returncode == 7
    assert measured_since(data_files, before, "cli/__init__.py")


@pytest.mark.slow
def test_a_sandbox_stopped_with_sigterm_is_measured(data_files: Path) -> None:
    before = set(data_files.glob(".coverage.*"))
    command = [sys.executable, "-m", "reconciler", "sandbox", "--listen", "127.0.0.1:0", "--vehicles", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Sandbox Fleet API: ")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert measured_since(data_files, before, "sandbox/server.py")
