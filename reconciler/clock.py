"""Time as reconciler writes and reads it: UTC, RFC 3339 with a `Z`, one parser for every timestamp."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isotime(moment: datetime) -> str:
    """`2026-11-25T07:00:00Z`: how the state, the journal and events write a moment."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """A timestamp as the API and reconciler write them (`Z` or an offset); ValueError when it is not one."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def earlier(moment: str | None, than: str | None) -> bool:
    """True when both are timestamps and the first is before the second (unreadable ones compare as not)."""
    if not moment or not than:
        return False
    try:
        return parse_time(moment) < parse_time(than)
    except ValueError:
        return False
