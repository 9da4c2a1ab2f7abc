"""`reconciler serve` as a real subprocess in a test: a config repo made a git repository, the controller
started on a free port against the sandbox, its metrics read, its log kept, its stop awaited."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.commands import measured
from tests.files import edit
from tests.servers import free_socket

PUSH = "push-canary-5"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "manifests", "reconciler.yaml")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def prepare(repo: Path, port: int, serve: str = "") -> str:
    """The repo's callback sends to the controller on `port`; a git repository with one commit of it."""
    edit(repo / "manifests" / "callbacks.yaml", "http://127.0.0.1:8081", f"http://127.0.0.1:{port}")
    config = repo / "reconciler.yaml"
    config.write_text(config.read_text() + "serve:\n  push_secret: ${env:PUSH_SECRET}\n  lease_period: 3s\n" + serve)
    git(repo, "init", "--quiet", "--initial-branch=main")
    return commit(repo, "fleet")


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    stderr_path: Path
    stdout: str = ""
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.stderr_path.read_text()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        out, _ = self.process.communicate(timeout=60)
        self.stdout += out
        return self.process.returncode


@contextmanager
def serving(repo: Path, env: dict[str, str], port: int, *options: str) -> Iterator[Served]:
    command = [sys.executable, "-m", "reconciler", "serve", "--listen", f"127.0.0.1:{port}", *options]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FLEET_API_", "WEBHOOK_"))}
    stderr_path = repo.parent / f"serve-{port}.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=repo,
            env={**environ, **measured(env), "PUSH_SECRET": PUSH},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = re.match(r"Serving on (http://127\.0\.0\.1:\d+)/ ", banner)
    if found is None:
        process.kill()
        raise AssertionError(f"serve did not start: {banner!r} {stderr_path.read_text()!r}")
    served = Served(process, found.group(1), stderr_path, banner)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.1)


def all_runs(served: Served) -> float:
    """Runs the controller made so far, whatever their result."""
    return sum(value for (name, _), value in served.metrics().items() if name == "reconciler_runs_total")


def runs(served: Served, result: str) -> float:
    return served.value("reconciler_runs_total", result=result)
