"""`reconciler webhook serve`: the receiver under uvicorn, with the credentials of the managed callbacks."""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from reconciler.errors import ReconcilerError
from reconciler.manifests import load_desired
from reconciler.manifests.documents import API_VARIABLES
from reconciler.project import Project
from reconciler.sandbox.listen import listen_socket, shown_address
from reconciler.state.file import FileBackend
from reconciler.state.journal import fold
from reconciler.state.model import State
from reconciler.webhook.app import Credentials, Receiver, announce_unauthenticated, create_app
from reconciler.webhook.log import log, logging_to

CALLBACK_OPS = frozenset({"create-callback", "update-callback", "callback-status", "delete-callback"})


def known_callbacks(project: Project) -> dict[str, str]:
    """Callback name -> id, as the saved state and the journal of a running apply hold them.

    The journal matters: during the very first apply there is no state file yet, and the callback that apply
    created is already posting notifications. Only the callback entries are folded (a large apply journals a
    remote per vehicle, which the receiver does not need).
    """
    state = project.load_state() or State.new(project.fleet)
    entries = [e for e in project.backend.read_journal() if isinstance(e, dict)]
    wanted = {e.get("id") for e in entries if e.get("kind") == "intent" and e.get("op") in CALLBACK_OPS}
    fold(state, [e for e in entries if e.get("id") in wanted])
    return {name: record.id for name, record in state.callbacks.items()}


def credentials(project: Project, environ: Mapping[str, str]) -> Credentials:
    """What each recorded callback's notifications must carry: its Header and Query attributes' values."""
    desired, _ = load_desired(project.settings.manifests, environ, strict=True)
    found = Credentials()
    for name, callback_id in known_callbacks(project).items():
        callback = desired.callbacks.get(name)
        if callback is None:
            continue
        expected = [
            (a.kind, a.key, a.value.value or "")
            for a in callback.attributes
            # $vin and the other API variables vary per notification; ${env:...} values are constants
            if a.kind in ("Header", "Query") and a.value.raw not in API_VARIABLES
        ]
        found.by_id[callback_id] = (name, expected)
    return found


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def state_signature(project: Project) -> Hashable:
    """What tells that the recorded callbacks may have changed: the state and journal files' signatures (None
    for a backend whose files cannot be watched, whose credentials are then reloaded at every opportunity)."""
    backend = project.backend
    if isinstance(backend, FileBackend):
        return (_file_signature(backend.path), _file_signature(backend.journal_path))
    return None


def receiver(project: Project, environ: Mapping[str, str], **options: Any) -> Receiver:
    def load() -> Credentials:
        return credentials(project, environ)

    def signature() -> Hashable:
        return state_signature(project)

    loaded_signature = signature()
    loaded = load()
    announce_unauthenticated(loaded)
    return Receiver(
        project.backend, load, credentials=loaded, signature=signature, loaded_signature=loaded_signature, **options
    )


@contextlib.contextmanager
def stopped_by_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGINT and SIGTERM stop the server gracefully, from the moment the address is printed until the summary
    is logged: uvicorn handles them while it runs, then raises them again for the handler it found, which ends
    the command normally instead of killing it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    project: Project,
    environ: Mapping[str, str],
    host: str,
    port: int,
    out: TextIO,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_format: str = "text",
    log_stream: TextIO | None = None,
) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM). The address and state go to `out`, the log to `log_stream`
    (stderr by default)."""
    with logging_to(log_stream or sys.stderr, log_format) as lines:
        made = receiver(project, environ)
        config = uvicorn.Config(
            create_app(made),
            log_level="warning",
            access_log=False,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
        )
        try:
            config.load()
        except (ssl.SSLError, OSError) as error:
            if isinstance(error, ssl.SSLError):
                reason = f"not a PEM certificate and its private key ({error.reason or error})"
            else:
                reason = error.strerror or str(error)
            raise ReconcilerError(f"cannot serve https with {tls_cert} and {tls_key}: {reason}") from None
        sock = listen_socket(host, port)
        server = uvicorn.Server(config)
        with stopped_by_signals(server):
            scheme = "https" if tls_cert else "http"
            address = shown_address(host, sock.getsockname()[1])
            out.write(
                f"Receiving notifications on {scheme}://{address}/ (health: /healthz); "
                f"recording into {project.backend.name}\n"
            )
            out.flush()
            try:
                server.run(sockets=[sock])
            finally:
                made.close()
                sock.close()
                counts = {f"http_{status}": count for status, count in sorted(made.answers.items())}
                log(logging.INFO, made.summary(), wait=True, events=made.received, **counts)
                if lines.dropped:
                    message = f"{lines.dropped} log lines were dropped: the log stream did not keep up"
                    log(logging.WARNING, message, wait=True, dropped=lines.dropped)
