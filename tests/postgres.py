"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a free loopback port, password
authentication (so the tests see that a DSN's password is never shown), stopped at the end of the session.

initdb refuses to run as root, and CI runs as root: then the cluster belongs to the `postgres` user (made by
Debian's package), or `nobody`, and its commands run through runuser.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on the PATH, or Debian's /usr/lib/postgresql/N/bin (the newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    for folder in reversed(folders):
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    folder: Path
    bin: Path
    port: int
    password: str
    user: str | None  # the system user the server runs as, when this process is root
    durable: bool = False  # fsync: off for the tests (speed), on for benchmarks (figures of durable writes)

    @property
    def dsn(self) -> str:
        return f"postgresql://reconciler:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def kill(self) -> None:
        """Stop the server at once, as a crash or a lost network would (the data stays)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")

    def start(self) -> None:
        data = self.folder / "data"
        fsync = "on" if self.durable else "off"
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync={fsync}"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )


def start_cluster(durable: bool = False) -> Cluster:
    folder_bin = binaries()
    if folder_bin is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl)")
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
    folder = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    password = secrets.token_hex(12)
    (folder / "pwfile").write_text(password + "\n")
    if user is not None:
        record = pwd.getpwnam(user)
        os.chown(folder, record.pw_uid, record.pw_gid)
        os.chown(folder / "pwfile", record.pw_uid, record.pw_gid)
    cluster = Cluster(folder, folder_bin, _free_port(), password, user, durable)
    cluster._run(
        str(folder_bin / "initdb"),
        "-D",
        str(folder / "data"),
        "-U",
        "reconciler",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={folder / 'pwfile'}",
        "-E",
        "UTF8",
    )
    cluster.start()
    return cluster


def use_postgres(repo: Path, schema: str) -> None:
    """Point a config repo's state at PostgreSQL: the DSN from $STATE_DSN (the tests set it), tables in `schema`."""
    config = repo / "reconciler.yaml"
    text = config.read_text()
    file_state = "state:\n  backend: file\n  path: .reconciler/state.json\n"
    assert file_state in text, "the repo's reconciler.yaml does not name the file backend as examples/ does"
    config.write_text(
        text.replace(file_state, f"state:\n  backend: postgres\n  dsn: ${{env:STATE_DSN}}\n  schema: {schema}\n")
    )


def forget_state(repo: Path) -> None:
    """Lose a repo's state, as a user who deleted it would: the file backend's folder, or (PostgreSQL) a move
    to a schema of tables not used yet."""
    config = repo / "reconciler.yaml"
    text = config.read_text()
    if "backend: postgres" in text:
        config.write_text(re.sub(r"schema: (\w+)", lambda m: f"schema: {m.group(1)}_lost", text))
    else:
        shutil.rmtree(repo / ".reconciler")
