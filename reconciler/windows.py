"""Sync windows: whether the fleet may be changed at a given moment (`serve.windows`, Argo CD's sync windows).

A window opens at each start of its cron schedule, in its time zone, and stays open for its duration. A deny
window that is open holds every write; otherwise, when allow windows are listed, one of them must be open; with
none listed any time is allowed. The moment is passed in, so tests choose it.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from reconciler.clock import isotime
from reconciler.config import SyncWindow
from reconciler.errors import GuardError


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether writes may go out now, and why not (the window that holds them, until when)."""

    allowed: bool
    reason: str = ""
    until: datetime | None = None


def opened(window: SyncWindow, now: datetime) -> tuple[datetime, datetime] | None:
    """(start, end) of the opening of `window` that holds `now`, or None when it is closed. Only the latest start
    matters: a later one ends later, so it covers `now` whenever an earlier one does."""
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone)).replace(microsecond=0)
    # compared and added in UTC: aware datetimes of one zone compare by wall clock, wrong across a DST change
    start = next(CronSim(window.schedule, local, reverse=True)).astimezone(UTC)
    end = start + timedelta(seconds=window.duration)
    return (start, end) if start <= now.astimezone(UTC) < end else None


def next_start(window: SyncWindow, now: datetime) -> datetime:
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone)).replace(microsecond=0)
    return next(CronSim(window.schedule, local)).astimezone(UTC)


def describe(window: SyncWindow) -> str:
    return f'{window.kind} window "{window.schedule}" for {_duration(window.duration)} ({window.timezone})'


def verdict(windows: Sequence[SyncWindow], now: datetime) -> Verdict:
    """Deny wins; with allow windows listed, one must be open; with none, any time not denied is allowed."""
    for window in windows:
        if window.kind == "deny" and (span := opened(window, now)) is not None:
            return Verdict(False, f"the {describe(window)} is open until {isotime(span[1])}", span[1])
    allows = [window for window in windows if window.kind == "allow"]
    if not allows or any(opened(window, now) is not None for window in allows):
        return Verdict(True)
    soonest = min(allows, key=lambda window: next_start(window, now))
    opens = next_start(soonest, now)
    return Verdict(False, f"no allow window is open; the next, the {describe(soonest)}, opens {isotime(opens)}", opens)


def check_windows(windows: Sequence[SyncWindow], now: datetime) -> None:
    """GuardError (exit 4) while the windows hold writes: a manual apply bound by them (windows_bind_manual_apply)."""
    found = verdict(windows, now)
    if not found.allowed:
        raise GuardError(
            f"apply refused by the sync windows: {found.reason}; nothing was changed "
            "(serve.windows_bind_manual_apply is true)"
        )


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
