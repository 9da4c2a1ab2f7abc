"""A sandbox and a webhook receiver for the repo's state (in this process, or `webhook serve` as a process of its
own), to follow notifications end to end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.operations import open_workspace
from reconciler.state.backend import StateBackend
from reconciler.webhook.app import create_app
from reconciler.webhook.serve import receiver
from tests.commands import SECRETS, backend_of, environment
from tests.servers import Sandbox, sandbox, serve_app


@contextmanager
def receiving(
    repo: Path, extra_env: dict[str, str] | None = None, **options: Any
) -> Iterator[tuple[Path, Sandbox, str, StateBackend]]:
    """A sandbox, and a receiver for the repo's state (whichever backend it names), with the callbacks'
    targets pointing at the receiver."""
    with sandbox(vehicles=40, asleep_rate=0.0, **options) as box:
        env = {**state_environment(), **SECRETS, **environment(box), **(extra_env or {})}
        with serve_app(create_app(receiver(open_workspace(repo / "reconciler.yaml", env), env))) as root:
            callbacks = repo / "manifests" / "callbacks.yaml"
            callbacks.write_text(callbacks.read_text().replace("http://127.0.0.1:8081", root))
            yield repo, box, root, backend_of(repo)


def state_environment() -> dict[str, str]:
    """The state backend's settings a test put in the environment ($STATE_DSN for PostgreSQL), for a receiver
    started with an environment of its own."""
    return {name: value for name, value in os.environ.items() if name == "STATE_DSN"}


def done_events(backend: StateBackend) -> list[dict[str, Any]]:
    """The outcomes the receiver recorded in the events file."""
    return [e for e in backend.read_events() if e["type"] == "Done"]


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    """The first true value of predicate(), asked every 50 ms; an AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return value


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FLEET_API_", "WEBHOOK_"))}
    return {**environ, **extra}


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    stdout: str = ""
    stderr: str = ""

    def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM, as a service manager stops it (or Ctrl-C's SIGINT); the exit code, with its output collected."""
        if self.process.poll() is None:
            self.process.send_signal(how)
        out, err = self.process.communicate(timeout=30)
        self.stdout += out
        self.stderr += err
        return self.process.returncode


@contextmanager
def serving(repo: Path, env: dict[str, str], *options: str) -> Iterator[Served]:
    command = [sys.executable, "-m", "reconciler", "webhook", "serve", "--listen", "127.0.0.1:0", *options]
    process = subprocess.Popen(
        command, cwd=repo, env=clean_environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = re.match(r"Receiving notifications on (http://127\.0\.0\.1:\d+)/ ", banner)
    if found is None:
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"webhook serve did not start: {banner!r} {err!r}")
    served = Served(process, found.group(1), banner)
    try:
        yield served
    finally:
        if process.poll() is None:
            served.stop()
