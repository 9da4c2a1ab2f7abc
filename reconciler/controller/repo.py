"""The config repo `serve --repo` follows: fetched into a bare clone the controller owns, each new commit
extracted into a folder of its own (never the operator's checkout, never a half-written folder).

Git runs as a subprocess with a time limit and no prompt; whatever fails (the repo unreachable, a branch that
does not exist) is a RepoError with git's own words, and the commit in force stays in force.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from reconciler.errors import ReconcilerError

GIT_TIMEOUT = 120.0  # seconds for one git command (a fetch of a large repo over a slow link)


class RepoError(ReconcilerError):
    """The config repo could not be fetched or a commit could not be checked out."""


class GitSource:
    def __init__(self, url: str, branch: str | None, workdir: Path, stop: threading.Event | None = None) -> None:
        self.url = url
        self.branch = branch
        self.workdir = workdir
        self.bare = workdir / "repo.git"
        self.commits = workdir / "commits"
        # set when serve stops: a git command in progress (a fetch from a server that does not answer) is
        # ended at once, so a stop is not held up for GIT_TIMEOUT
        self.stop = stop if stop is not None else threading.Event()

    @property
    def ref(self) -> str:
        return self.branch or "HEAD"

    def _git(self, *args: str) -> str:
        environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
        try:
            process = subprocess.Popen(
                ["git", "--git-dir", str(self.bare), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environ,
                start_new_session=True,  # its helpers (git-remote-https) in a group of their own, ended with it
            )
        except FileNotFoundError:
            raise RepoError("git is not installed: serve --repo needs it") from None
        deadline = time.monotonic() + GIT_TIMEOUT
        while True:
            try:
                out, err = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if self.stop.is_set() or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # git and the helpers that hold its pipes
                    process.communicate()
                    why = "serve is stopping" if self.stop.is_set() else f"it took longer than {GIT_TIMEOUT:g} s"
                    raise RepoError(f"git {args[0]} was ended: {why}") from None
        if process.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise RepoError(f"git {args[0]} failed: {' '.join(said)[-500:] or f'exit {process.returncode}'}")
        return out.decode(errors="replace").strip()

    def fetch(self) -> str:
        """The commit the branch points at now (fetched first)."""
        if not (self.bare / "HEAD").exists():
            self.bare.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "--quiet")
        self._git("fetch", "--quiet", "--no-tags", "--force", "--", self.url, self.ref)
        return self._git("rev-parse", "--verify", "FETCH_HEAD^{commit}")

    def checkout(self, commit: str) -> Path:
        """The folder holding `commit`'s files, extracted whole before it gets its name."""
        target = self.commits / commit
        if target.is_dir():
            return target
        self.commits.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.commits, prefix=".extract-") as scratch:
            archive = Path(scratch) / "commit.tar"
            self._git("archive", "--format=tar", f"--output={archive}", commit)
            files = Path(scratch) / "files"
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(files, filter="data")  # nothing outside the folder, no devices, no odd modes
            except (tarfile.TarError, OSError) as error:  # a link out of the repository, say: the commit is refused
                raise RepoError(f"commit {commit[:12]} cannot be extracted: {error}") from None
            os.replace(files, target)
        return target

    def subject(self, commit: str) -> str:
        """The first line of a fetched commit's message."""
        return self._git("log", "-1", "--format=%s", commit)

    def keep_only(self, *commits: str | None) -> None:
        """Remove the extracted commits other than these (the one in force, the one being tried)."""
        if not self.commits.is_dir():
            return
        wanted = {commit for commit in commits if commit}
        for folder in self.commits.iterdir():
            if folder.name not in wanted:
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder)
