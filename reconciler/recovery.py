"""Recovery: what a run killed midway left in the journal, folded into the state and resolved on the API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.api import wire
from reconciler.api.client import FleetClient
from reconciler.clock import isotime, utcnow
from reconciler.errors import StateError
from reconciler.state.backend import StateBackend
from reconciler.state.journal import apply_result, fold, remote_of
from reconciler.state.model import State
from reconciler.state.record import record_remote


def recover(state: State, backend: StateBackend, client: FleetClient | None) -> int:
    """Fold what a previous run journalled into `state`, and resolve on the API the calls whose outcome is
    unknown: a callback create by its label, a remote by the label it was posted with.

    Returns how many journal entries were folded. Without a client (plan), unknown calls stay unknown and the
    next writer resolves them.
    """
    entries = backend.read_journal()
    if not entries:
        return 0
    unknown = fold(state, entries, str(getattr(backend, "journal_path", "the journal")))
    if client is not None:
        creates = [entry for entry in unknown if entry["op"] == "create-callback"]
        if creates:
            existing = client.callbacks()
            for entry in creates:
                found = wire.labelled(existing, str(entry.get("name")))
                if found is not None:  # created: recorded with the status the API shows, not the one wanted
                    apply_result(state, {**entry, "status": found[1]}, {"callback_id": found[0]})
        for entry in unknown:
            if entry["op"] == "remote" and isinstance(entry.get("label"), str):
                _adopt_remote(state, client, entry)
    try:  # whatever the journal held, the state it made must read back
        State.from_dict(state.to_dict(), "the state recovered from the journal")
    except StateError as error:
        raise StateError(f"{error}; nothing was saved") from error
    return len(entries)


def _adopt_remote(state: State, client: FleetClient, entry: Mapping[str, Any]) -> None:
    """A remote a killed run posted without learning the answer: when the API has it, record it as posted."""
    try:
        vin, callback, carried = remote_of(entry)
    except (KeyError, TypeError, ValueError) as error:
        raise StateError(f"the journal is corrupt: a remote intent cannot be read ({error})") from error
    record = state.callbacks.get(callback)
    vehicle = state.vehicles_index.get(vin)
    if record is None or vehicle is None:
        return
    found = client.find_remote(vehicle, record.id, entry["label"])
    if found is not None:
        record_remote(state, vin, callback, carried, found[0], str(entry.get("at") or isotime(utcnow())))
