"""Shared fixtures: no network beyond this machine, and throwaway config repos.

Helpers that are not fixtures live in plain modules beside this one (files, commands, servers, webhooks,
mockapi, planning, official); test modules import only from those, never from one another.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.state.backend import StateBackend
from reconciler.state.open import open_backend
from tests.files import WriteFiles, copy_examples
from tests.postgres import Cluster, start_cluster, use_postgres

_STARTED_IN = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_STARTED_IN] = os.getcwd()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Each test ends where it started, once its fixtures are gone: one that moved elsewhere would change what
    the tests after it read, and they would pass or fail by the order they run in."""
    result = yield
    before, after = item.stash.get(_STARTED_IN, None), os.getcwd()
    if before is not None and after != before:
        os.chdir(before)
        pytest.fail(f"the test left the working directory at {after}, not {before}: use monkeypatch.chdir")
    return result


_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local:
            raise AssertionError(f"tests must not reach the network: connect to {address!r}")
    _connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only loopback connections (the sandbox, test webhook servers) are allowed in tests."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def no_github_step_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite run as a GitHub Actions step must not append the plans of its tests to that step's outputs and
    summary: every command a test runs, in-process or as a subprocess, sees these unset unless it sets them."""
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def chdir(tmp_path: Path) -> Iterator[Path]:
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


@pytest.fixture
def write(tmp_path: Path) -> WriteFiles:
    """write({"path": "text", ...}) -> tmp_path, dedenting each text."""

    def _write(files: dict[str, str | bytes], root: Path = tmp_path) -> Path:
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return root

    return _write


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of examples/: a complete config repo, with no state yet."""
    return copy_examples(tmp_path / "repo")


# ---- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server for the session. Without its binaries the tests that need it are skipped, except in
    CI (`CI=true`), where .ci/run installs them and a skip would hide a broken install: there it fails."""
    try:
        cluster = start_cluster()
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        detail = error.stderr if isinstance(error, subprocess.CalledProcessError) else str(error)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed in CI and could not be started: {detail}")
        pytest.skip(f"PostgreSQL server binaries are not installed here ({detail})")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> str:
    return pg_cluster.dsn


@pytest.fixture
def pg_schema() -> str:
    """A schema of its own for each test: tests share the server, never their tables."""
    return "t_" + secrets.token_hex(6)


@pytest.fixture(params=["file", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    """Run a test on each state backend (the PostgreSQL one is skipped where the server is absent)."""
    if request.param == "postgres":
        request.getfixturevalue("pg_cluster")
    return str(request.param)


BACKEND_FLEET = "fleet-1"


@pytest.fixture
def backend(state_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StateBackend]:
    """A state backend of fleet BACKEND_FLEET, opened on each backend in turn (a module may define its own)."""
    if state_backend == "file":
        yield open_backend("file", BACKEND_FLEET, path=tmp_path / "state.json")
        return
    opened = open_backend(
        "postgres", BACKEND_FLEET, dsn=request.getfixturevalue("pg_dsn"), schema=request.getfixturevalue("pg_schema")
    )
    yield opened
    opened.close()  # type: ignore[attr-defined]


@pytest.fixture
def any_repo(
    state_backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of examples/ whose state lives on each backend in turn: a file, then PostgreSQL (its DSN in
    $STATE_DSN, which every command the test runs inherits; its tables in a schema of the test's own)."""
    repo = copy_examples(tmp_path / "repo")
    if state_backend == "postgres":
        monkeypatch.setenv("STATE_DSN", request.getfixturevalue("pg_dsn"))
        use_postgres(repo, request.getfixturevalue("pg_schema"))
    return repo
