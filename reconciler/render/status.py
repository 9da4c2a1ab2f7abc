"""`status` for people: the convergence figures that reconciler.status computes, as a few lines of text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from reconciler.words import plural


def render_status(status: Mapping[str, Any], out: TextIO) -> None:
    out.write(
        f"Vehicles: {status['vehicles']:,}: {status['converged']:,} converged, {status['in_flight']:,} in flight, "
        f"{status['to_change']:,} to change ({status['drifted']:,} drifted), {status['failed']:,} failed.\n"
    )
    if status["not_in_fleet"]:
        out.write(f"Not in the fleet: {status['not_in_fleet']:,} vehicles the manifests name (run apply to recheck)\n")
    for cause, count in status["failed_by_cause"].items():
        out.write(f"  failed {cause}: {plural(count, 'slot')}\n")
    if status["oldest_pending"]:
        out.write(f"Oldest remote in flight: posted {status['oldest_pending']}\n")
    else:
        out.write("Nothing in flight.\n")
    out.write(f"Last outcome received: {status['last_event'] or 'none yet'}\n")
    if status["unmatched_events"]:
        out.write(
            f"Events for remote actions reconciler did not send: {plural(status['unmatched_events'], 'event')} kept\n"
        )
    if status["other_callback_events"]:
        out.write(
            "Events from another callback than their remote action's: "
            f"{plural(status['other_callback_events'], 'event')} ignored\n"
        )
    if status["malformed_events"]:
        out.write(f"Malformed events in the events file: {plural(status['malformed_events'], 'event')} ignored\n")
