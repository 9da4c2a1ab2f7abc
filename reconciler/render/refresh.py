"""What `refresh` found: drift by class and the vehicles it could not read, as text or as JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from reconciler.render.json import write_json

if TYPE_CHECKING:  # the types only: rendering loads no HTTP client
    from reconciler.live import Drift

UNREAD_SHOWN = 10


def render_refresh(drift: Sequence[Drift], unread: Mapping[str, str], out: TextIO) -> None:
    """One line per drift and a count by class; the first vehicles that could not be read, since drift on them
    is unknown: "no drift" is said only when every vehicle was read."""
    for item in drift:
        out.write(f"  {item.kind:16s} {item.address}: {item.detail}\n")
    counts = Counter(item.kind for item in drift)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    if drift:
        out.write(f"Drift: {summary}. The next plan repairs it.\n")
    if unread:
        shown = sorted(unread.items())[:UNREAD_SHOWN]
        out.write(f"Could not read {len(unread):,} vehicle(s); drift on them is unknown:\n")
        for vin, error in shown:
            out.write(f"  {vin}: {error}\n")
        if len(unread) > len(shown):
            out.write(f"  ... and {len(unread) - len(shown):,} more (--format json lists them all)\n")
    elif not drift:
        out.write("No drift: the fleet holds what was recorded.\n")


def render_refresh_json(drift: Sequence[Drift], unread: Mapping[str, str], out: TextIO, *, result: str) -> None:
    """Every drift and every vehicle that could not be read, with the error that stopped the read."""
    items = [{"kind": d.kind.value, "address": str(d.address), "detail": d.detail} for d in drift]
    vehicles = [{"vin": vin, "error": error} for vin, error in sorted(unread.items())]
    write_json({"drift": items, "unread": vehicles}, out, result=result)
