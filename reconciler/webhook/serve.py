"""`reconciler webhook serve`: the receiver under uvicorn, with the credentials of the managed callbacks."""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, TextIO

import uvicorn
from starlette.types import ASGIApp

from reconciler.errors import ReconcilerError
from reconciler.operations import Workspace
from reconciler.sandbox.listen import listen_socket, shown_address
from reconciler.webhook.app import Credentials, Receiver, announce_unauthenticated, create_app
from reconciler.webhook.credentials import ChildLoader, credentials, state_signature
from reconciler.webhook.log import log, logging_to


def receiver(
    workspace: Workspace,
    environ: Mapping[str, str],
    reload: Callable[[], Credentials] | None = None,
    **options: Any,
) -> Receiver:
    """A receiver for the workspace's callbacks, loaded now; `reload` loads them again (by default in this
    process, as loading them now does)."""

    def load() -> Credentials:
        return credentials(workspace, environ)

    def signature() -> Hashable:
        return state_signature(workspace)

    loaded_signature = signature()
    loaded = load()
    announce_unauthenticated(loaded)
    return Receiver(
        workspace.backend,
        reload or load,
        credentials=loaded,
        signature=signature,
        loaded_signature=loaded_signature,
        **options,
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


def server_config(app: ASGIApp, tls_cert: str | None, tls_key: str | None) -> uvicorn.Config:
    """uvicorn's settings for `app`, loaded now so a certificate that cannot serve https is a clear error."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    try:
        config.load()
    except (ssl.SSLError, OSError) as error:
        if isinstance(error, ssl.SSLError):
            reason = f"not a PEM certificate and its private key ({error.reason or error})"
        else:
            reason = error.strerror or str(error)
        raise ReconcilerError(f"cannot serve https with {tls_cert} and {tls_key}: {reason}") from None
    return config


def report_dropped(dropped: int) -> None:
    """The last log line of a server whose log stream could not keep up: how many lines it lost."""
    if dropped:
        message = f"{dropped} log lines were dropped: the log stream did not keep up"
        log(logging.WARNING, message, wait=True, dropped=dropped)


def serve(
    workspace: Workspace,
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
    loader = ChildLoader(workspace.settings.file.resolve(), environ)
    with logging_to(log_stream or sys.stderr, log_format) as lines, contextlib.closing(loader):
        made = receiver(workspace, environ, reload=loader)  # the first load here: its errors are the command's
        config = server_config(create_app(made), tls_cert, tls_key)
        sock = listen_socket(host, port)
        loader.start()
        server = uvicorn.Server(config)
        with stopped_by_signals(server):
            scheme = "https" if tls_cert else "http"
            address = shown_address(host, sock.getsockname()[1])
            out.write(
                f"Receiving notifications on {scheme}://{address}/ (health: /healthz); "
                f"recording into {workspace.backend.name}\n"
            )
            out.flush()
            try:
                server.run(sockets=[sock])
            finally:
                made.close()
                sock.close()
                counts = {f"http_{status}": count for status, count in sorted(made.answers.items())}
                recorded = {"events": made.received, "not_recorded": made.not_recorded}
                log(logging.INFO, made.summary(), wait=True, **recorded, **counts)
                report_dropped(lines.dropped)
