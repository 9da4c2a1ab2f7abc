"""`status` for people: the convergence figures that reconciler.status computes, as a few lines of text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from reconciler.words import plural


def render_status(status: Mapping[str, Any], out: TextIO) -> None:
    out.write(
        f"Vehicles: {status['vehicles']:,}: {status['converged']:,} converged, {status['in_flight']:,} in flight, "
        f"{status['to_change']:,} to change ({status['drifted']:,} drifted), {status['failed']:,} failed"
        f"{f', {held:,} held back' if (held := status['held']) else ''}.\n"
    )
    _health(status["fleet_health"], out)
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


HELD_SHOWN = 10  # held vehicles named before the rest is counted


def _counted(counts: Mapping[str, int], every: bool) -> str:
    return ", ".join(f"{count:,} {name}" for name, count in counts.items() if every or count)


def _health(health: Mapping[str, Any], out: TextIO) -> None:
    """Health (every state named) and sync counts of the fleet, then of each group (the states it has)."""
    out.write(f"Health: {_counted(health['health'], True)}. Sync: {_counted(health['sync'], True)}.\n")
    for name, group in health["groups"].items():
        out.write(
            f"  group {name} ({plural(group['vehicles'], 'vehicle')}): {_counted(group['health'], False) or 'none'}; "
            f"{_counted(group['sync'], False) or 'none'}\n"
        )
    held = health["held"]
    for hold in held[:HELD_SHOWN]:
        out.write(
            f"Held: {hold['vin']} until {hold['until']} ({hold['cause']}, {plural(hold['attempts'], 'failure')})\n"
        )
    if len(held) > HELD_SHOWN:
        out.write(f"Held: {plural(len(held) - HELD_SHOWN, 'more vehicle')} (every one: --format json)\n")
