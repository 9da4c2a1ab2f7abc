"""Shared fixtures: no network beyond this machine, and throwaway config repos."""

from __future__ import annotations

import ipaddress
import os
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
EXAMPLES = REPO / "examples"
VENDOR = REPO / "vendor" / "stellantis"  # the official OpenAPI files, with a note of their origin

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


@pytest.fixture
def chdir(tmp_path: Path) -> Iterator[Path]:
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


WriteFiles = Callable[..., Path]


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
