"""`reconciler webhook serve`: the receiver under uvicorn, with the credentials of the managed callbacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

import uvicorn

from reconciler.manifests import load_desired
from reconciler.manifests.documents import API_VARIABLES
from reconciler.project import Project
from reconciler.webhook.app import Credentials, Receiver, create_app


def credentials(project: Project, environ: Mapping[str, str]) -> Credentials:
    """What each recorded callback's notifications must carry: its Header and Query attributes' values."""
    desired, _ = load_desired(project.settings.manifests, environ, strict=True)
    state = project.load_state(pending=True)  # with the journal: a callback apply has just created is known
    found = Credentials()
    for name, record in (state.callbacks if state else {}).items():
        callback = desired.callbacks.get(name)
        if callback is None:
            continue
        expected = [
            (a.kind, a.key, a.value.value or "")
            for a in callback.attributes
            # $vin and the other API variables vary per notification; ${env:...} values are constants
            if a.kind in ("Header", "Query") and a.value.raw not in API_VARIABLES
        ]
        found.by_id[record.id] = (name, expected)
    return found


def receiver(project: Project, environ: Mapping[str, str]) -> Receiver:
    def load() -> Credentials:
        return credentials(project, environ)

    return Receiver(project.backend, load, credentials=load())


def serve(
    project: Project,
    environ: Mapping[str, str],
    host: str,
    port: int,
    out: TextIO,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    app = create_app(receiver(project, environ))
    scheme = "https" if tls_cert else "http"
    out.write(
        f"Receiving notifications on {scheme}://{host}:{port}/ (health: /healthz); "
        f"recording into {project.backend.name}\n"
    )
    out.flush()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, ssl_certfile=tls_cert, ssl_keyfile=tls_key
    )
    uvicorn.Server(config).run()
