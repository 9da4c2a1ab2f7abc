"""Words people read: counts with the right plural, and programs written as the plan writes them ("07:00 Mon-Fri").

A leaf module (it needs only the day names), so every output that counts or shows programs, core or renderer,
uses the same words without loading anything heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.model import DAYS, Program


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`1 slot`, `0 slots`, `1,236 slots`; `many` for a plural that is not `singular + "s"`."""
    return f"{count:,} {singular if count == 1 else (many or singular + 's')}"


def hhmm(start: str) -> str:
    """PT7H5M -> 07:05 (a start that is not `PTxHyM` is shown as written)."""
    if not start.startswith("PT"):
        return start
    body = start[2:]
    hours, _, rest = body.partition("H") if "H" in body else ("0", "", body)
    minutes = rest.rstrip("M") or "0"
    try:
        return f"{int(hours):02d}:{int(minutes):02d}"
    except ValueError:
        return start


def days_text(days: Sequence[str]) -> str:
    """Mon,Tue,Wed,Thu,Fri -> Mon-Fri; all seven -> daily."""
    chosen = [day for day in DAYS if day in days]
    if len(chosen) == 7:
        return "daily"
    runs: list[list[str]] = []
    for day in chosen:
        if runs and DAYS.index(day) == DAYS.index(runs[-1][-1]) + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(run) for run in runs)


def program_text(program: Program | Mapping[str, Any]) -> str:
    """`07:00 Mon-Fri`, then `, recurrence None` and `, disabled` when they apply: the one way a program reads.

    Takes a model Program or a plan's slot view (a mapping with start, days, recurrence and enabled).
    """
    if isinstance(program, Program):
        start, days, recurrence, enabled = program.start, program.days, program.recurrence, program.enabled
    else:
        start, days, recurrence, enabled = program["start"], program["days"], program["recurrence"], program["enabled"]
    text = f"{hhmm(start)} {days_text(days)}"
    if recurrence != "Daily":
        text += f", recurrence {recurrence}"
    if not enabled:
        text += ", disabled"
    return text
