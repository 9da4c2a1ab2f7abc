"""`reconciler sandbox` as a user starts it: a real process that prints where it serves, and its config."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reconciler.config import load_settings
from tests.commands import measured, run
from tests.files import REPO


def test_print_config_gives_a_usable_reconciler_yaml(tmp_path: Path) -> None:
    result = run("sandbox", "--listen", "127.0.0.1:9090", "--fleet", "f-42", "--password", "pw", "--print-config")
    assert result.returncode == 0
    (tmp_path / "reconciler.yaml").write_text(result.stdout)
    settings = load_settings(tmp_path / "reconciler.yaml", {})
    assert settings.require(settings.fleet, "fleet") == "f-42"
    assert settings.require(settings.api.url, "api.url") == "http://127.0.0.1:9090/connectedcar/v3"
    assert settings.require(settings.api.password, "api.password") == "pw"
    assert settings.require(settings.api.client_id, "api.client_id") == "sandbox-client"
    assert settings.diagnostics == ()
    # the schemas are inside the installed package: no relative schema path that would not exist beside the file
    assert "yaml-language-server" not in result.stdout


@pytest.mark.slow
def test_sandbox_serves_until_terminated() -> None:
    command = [
        sys.executable,
        "-m",
        "reconciler",
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--vehicles",
        "5",
        "--seed",
        "3",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Sandbox Fleet API: http://127.0.0.1:")
        api = first.split(": ", 1)[1].strip()
        assert "5 vehicles (seed 3)" in process.stdout.readline()
        assert "username sandbox, password sandbox-password, client_id sandbox-client" in process.stdout.readline()
        vehicles = httpx.get(
            f"{api}/fleets/0a123bc5d1e873066454b4d9/vehicles",
            auth=("sandbox", "sandbox-password"),
            params={"client_id": "sandbox-client"},
        ).json()
        assert vehicles["total"] == 5
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def test_bad_listen_address_is_a_usage_error() -> None:
    result = run("sandbox", "--listen", "8080")
    assert result.returncode == 64
    assert "listen address must be HOST:PORT" in result.stderr


@pytest.mark.slow
def test_the_readme_demo_runs_end_to_end(tmp_path: Path) -> None:
    import shutil
    import socket

    shutil.copytree(
        REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log")
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = measured(
        {
            "PATH": "/usr/bin:/bin",
            "RECONCILER": f"{sys.executable} -m reconciler",
            "SANDBOX_PORT": str(port),
            "PYTHONPATH": str(REPO),
        }
    )
    done = subprocess.run(
        ["bash", str(tmp_path / "examples" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Valid: 3 files, 1 callback, 2 vehicle groups, 2 schedules; 30 vehicles, 84 slots" in done.stdout
    assert "Apply: 31 calls done, 0 failed, 0 skipped" in done.stdout
    assert "Outcomes: 30 Success." in done.stdout
    assert re.search(r"No changes: the manifests match the recorded state \(serial \d+\)\.$", done.stdout.rstrip())


def _demo(tmp_path: Path, port: str) -> subprocess.CompletedProcess[str]:
    import shutil

    shutil.copytree(
        REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log")
    )
    env = measured(
        {
            "PATH": "/usr/bin:/bin",
            "RECONCILER": f"{sys.executable} -m reconciler",
            "SANDBOX_PORT": port,
            "PYTHONPATH": str(REPO),
        }
    )
    return subprocess.run(
        ["bash", str(tmp_path / "examples" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_the_demo_stops_when_the_port_is_busy(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _demo(tmp_path, str(port))
    assert done.returncode == 1
    assert done.stdout == ""  # nothing ran against a sandbox that is not there
    assert f"demo.sh: the sandbox did not start on 127.0.0.1:{port}; its output:" in done.stderr
    assert f"Error: cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr
    assert "SANDBOX_PORT" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_demo_stops_on_a_bad_port(tmp_path: Path) -> None:
    done = _demo(tmp_path, "99999")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "listen address must be HOST:PORT with a port from 0 to 65535, not '127.0.0.1:99999'" in done.stderr


@pytest.mark.slow
def test_a_sandbox_beyond_loopback_warns_of_its_fixed_credentials() -> None:
    command = [sys.executable, "-m", "reconciler", "sandbox", "--listen", "0.0.0.0:0", "--vehicles", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Sandbox Fleet API: http://0.0.0.0:")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert err.splitlines()[0] == (
        "warning: the sandbox listens on 0.0.0.0, not a loopback address: other machines may reach it, and its "
        "credentials are fixed (username sandbox, client_id sandbox-client). "
        "Use --listen 127.0.0.1:PORT unless that is what you want."
    )


@pytest.mark.slow
def test_a_loopback_sandbox_does_not_warn() -> None:
    command = [sys.executable, "-m", "reconciler", "sandbox", "--listen", "127.0.0.1:0", "--vehicles", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Sandbox Fleet API: http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert "warning" not in err
