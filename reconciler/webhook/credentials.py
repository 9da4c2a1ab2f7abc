"""The credentials notifications must carry: each recorded callback's Header and Query attribute values.

Callbacks come from the saved state and from the journal of a running apply; their credentials from the
manifests. Reloading them is what a notification for an unknown callback costs, so it reads only the files
that changed, and `webhook serve` runs it in a separate process (ChildLoader).
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import threading
from collections.abc import Hashable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from reconciler.errors import ReconcilerError
from reconciler.manifests import load_desired
from reconciler.manifests.documents import API_VARIABLES
from reconciler.operations import Workspace, open_workspace
from reconciler.state.journal import fold
from reconciler.state.model import CallbackRecord, State
from reconciler.webhook.app import Credentials, Expected

CALLBACK_OPS = frozenset({"create-callback", "update-callback", "callback-status", "delete-callback"})


class SavedCallbacks:
    """The callbacks of the last state read, by where it lives, kept while the backend's signature says it is
    unchanged: during an apply the journal changes all the time, the state every few seconds, and a large state
    takes seconds to read (a reload then folds the journal into these)."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[Hashable, dict[str, CallbackRecord]]] = {}

    def read(self, workspace: Workspace) -> dict[str, CallbackRecord]:
        backend = workspace.backend
        where = backend.name
        signature = backend.signature()
        kept = self.kept.get(where)
        if kept is not None and kept[0] == signature:
            callbacks = kept[1]
        else:
            state = workspace.load_state()  # refuses another fleet's state
            callbacks = dict(state.callbacks) if state else {}
            self.kept = {where: (signature, callbacks)}  # taken before reading: a newer state is read again
        return {name: copy.copy(record) for name, record in callbacks.items()}


SAVED = SavedCallbacks()


def known_callbacks(workspace: Workspace) -> dict[str, str]:
    """Callback name -> id, as the saved state and the journal of a running apply hold them.

    The journal matters: during the very first apply there is no state file yet, and the callback that apply
    created is already posting notifications. Only the callback entries are folded (a large apply journals a
    remote per vehicle, which the receiver does not need).
    """
    state = State.new(workspace.fleet)
    state.callbacks = SAVED.read(workspace)
    entries = [e for e in workspace.backend.read_journal() if isinstance(e, dict)]
    wanted = {e.get("id") for e in entries if e.get("kind") == "intent" and e.get("op") in CALLBACK_OPS}
    fold(state, [e for e in entries if e.get("id") in wanted])
    return {name: record.id for name, record in state.callbacks.items()}


def manifests_signature(paths: tuple[Path, ...]) -> Hashable:
    """Every file and folder under the manifest paths, with its inode, time and size: any edit changes it."""
    found: list[tuple[str, tuple[int, int, int] | None]] = []
    for path in paths:
        found.append((str(path), _file_signature(path)))
        for folder, dirs, names in os.walk(path):
            dirs.sort()
            found += [(os.path.join(folder, name), _file_signature(Path(folder, name))) for name in sorted(names)]
            found += [(os.path.join(folder, name), _file_signature(Path(folder, name))) for name in dirs]
    return tuple(found)


class DesiredCredentials:
    """What the manifests ask each callback's notifications to carry, kept while no manifest file changed
    (reading a large fleet's manifests takes a while, and a reload needs only the callbacks)."""

    def __init__(self) -> None:
        self.kept: tuple[Hashable, dict[str, Expected]] | None = None

    def read(self, workspace: Workspace, environ: Mapping[str, str]) -> dict[str, Expected]:
        paths = workspace.settings.manifests
        signature = (paths, manifests_signature(paths), tuple(sorted(environ.items())))
        if self.kept is not None and self.kept[0] == signature:
            return self.kept[1]
        desired, _ = load_desired(paths, environ, strict=True)
        expected = {
            name: [
                (a.kind, a.key, a.value.value or "")
                for a in callback.attributes
                # $vin and the other API variables vary per notification; ${env:...} values are constants
                if a.kind in ("Header", "Query") and a.value.raw not in API_VARIABLES
            ]
            for name, callback in desired.callbacks.items()
        }
        self.kept = (signature, expected)
        return expected


DESIRED = DesiredCredentials()


def credentials(workspace: Workspace, environ: Mapping[str, str]) -> Credentials:
    """What each recorded callback's notifications must carry: its Header and Query attributes' values."""
    expected = DESIRED.read(workspace, environ)
    found = Credentials()
    for name, callback_id in known_callbacks(workspace).items():
        if name in expected:
            found.by_id[callback_id] = (name, expected[name])
    return found


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def state_signature(workspace: Workspace) -> Hashable:
    """What tells that the recorded callbacks may have changed: the backend's signature of its state and
    journal."""
    return workspace.backend.signature()


def load_in_child(config: str, environ: dict[str, str]) -> Credentials | str:
    """What the loader process runs: the credentials, or why they could not be loaded (as text: an exception
    carrying diagnostics does not survive the way back)."""
    try:
        return credentials(open_workspace(Path(config), environ), environ)
    except Exception as error:
        return "; ".join(str(error).splitlines()) or type(error).__name__


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the receiver decides


class ChildLoader:
    """Reloads the credentials in a separate, long-lived process.

    Parsing the state and manifests of a large fleet takes seconds, and json and YAML parse in C without
    releasing the GIL: from a worker thread of this process that would still stall the event loop for as long.
    """

    def __init__(self, config: Path, environ: Mapping[str, str]) -> None:
        self.config = str(config)
        self.environ = dict(environ)
        self.lock = threading.Lock()
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        with self.lock:
            if self.pool is None:
                context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
                self.pool = ProcessPoolExecutor(1, mp_context=context, initializer=_ignore_interrupts)
            return self.pool

    def start(self) -> None:
        """Start the process now, so that the first reload does not wait for it."""
        self._pool().submit(os.getpid).result()

    def __call__(self) -> Credentials:
        pool = self._pool()
        try:
            loaded = pool.submit(load_in_child, self.config, self.environ).result()
        except BrokenProcessPool:
            with self.lock:
                self.pool = None  # the next reload starts another process
            raise ReconcilerError("the process loading the credentials stopped") from None
        if isinstance(loaded, str):
            raise ReconcilerError(loaded)
        return loaded

    def close(self) -> None:
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(cancel_futures=True)
