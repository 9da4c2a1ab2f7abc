"""Recording what happened into the state: callbacks created, remotes posted, outcomes learnt.

Apply records each call as it completes, the webhook receiver and polling record outcomes; all go through
these functions, so a state only ever changes in these few ways.

An outcome also holds its vehicle back, or lets it go (`holds`): a vehicle out of wake-ups for the month
(TooManyWakeUpsOverMonth) is held until the first day of the next month, 00:00 in the fleet's time zone; one
whose remote failed for a cause that may pass (a low battery, a timeout, a busy vehicle: every cause not in
PERMANENT_CAUSES) is retried after a wait that doubles with each failure in a row, from BACKOFF_BASE up to
BACKOFF_CAP. A Success or AlreadyDone lets it go. Only the remotes a vehicle's slots still point to count: an
outcome of a remote a later one replaced says nothing about the vehicle now.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from reconciler.clock import earlier, isotime, parse_time, utcnow
from reconciler.model import Program
from reconciler.state.model import (
    DONE,
    FINAL,
    MAX_CAUSE,
    MONTHLY_CAUSE,
    PERMANENT_CAUSES,
    UNKNOWN_CAUSE,
    ActionRecord,
    CallbackRecord,
    Hold,
    Outcome,
    SlotKind,
    SlotRecord,
    State,
)

BACKOFF_BASE = timedelta(minutes=5)
BACKOFF_CAP = timedelta(hours=6)
FUTURE = timedelta(days=366)  # how far ahead of the clock an outcome's date is believed


def record_callback(
    state: State, name: str, callback_id: str, spec: dict[str, Any], secrets: dict[str, str], status: str
) -> None:
    state.callbacks[name] = CallbackRecord(callback_id, spec, dict(secrets), status)


def forget_callback(state: State, name: str) -> None:
    state.callbacks.pop(name, None)


def record_remote(
    state: State,
    vin: str,
    callback: str,
    carried: Iterable[tuple[str, Program, str]],
    action_id: str,
    posted_at: str,
) -> None:
    """A remote the API accepted: its slots now hold (or are being cleared of) the programs it carried.

    `carried`: (actionsType Set or Delete, program, schedule that asked for it) of each slot in the remote.
    """
    slots = state.slots.setdefault(vin, {})
    for verb, program, schedule in carried:
        slots[program.slot] = SlotRecord(program, callback, action_id, SlotKind(verb), schedule)
    state.actions[action_id] = ActionRecord(vin, callback, posted_at)


def record_outcome(
    state: State,
    action_id: str,
    outcome: Outcome,
    *,
    status: str | None = None,
    cause: str | None = None,
    at: str | None = None,
    zone: tzinfo = UTC,
) -> bool:
    """Fold one outcome into the state; False when it changes nothing (unknown action, duplicate, stale).

    A Pending never overwrites a final outcome, nor a newer Pending. A delete that succeeded clears its slots.
    A final outcome of a remote the vehicle's slots point to sets or clears the vehicle's hold, counted from
    `at` (when the outcome happened; the remote's posting time when unknown); `zone` is the fleet's time zone,
    where a month begins.
    """
    action = state.actions.get(action_id)
    if action is None:
        return False
    if action.outcome in FINAL and outcome not in FINAL:
        return False
    if outcome not in FINAL and earlier(at, action.updated_at):
        return False  # an older Pending, delivered late
    if (action.outcome, action.status, action.cause) == (outcome, status, cause):
        return False
    again = action.outcome == Outcome.FAILED  # the same failure told again, another way: not one more
    action.outcome, action.status, action.cause, action.updated_at = outcome, status, cause, at
    slots = state.slots.get(action.vin, {})
    if outcome in FINAL and any(record.action == action_id for record in slots.values()):
        _hold(state, action, outcome, at, zone, again)
    if outcome in DONE:
        for number in [n for n, r in slots.items() if r.action == action_id and r.kind == SlotKind.DELETE]:
            del slots[number]
        if not slots:
            state.slots.pop(action.vin, None)
    return True


def _hold(state: State, action: ActionRecord, outcome: Outcome, at: str | None, zone: tzinfo, again: bool) -> None:
    vin = action.vin
    if outcome in DONE:
        state.holds.pop(vin, None)
        return
    cause = action.cause or UNKNOWN_CAUSE
    if cause in PERMANENT_CAUSES:
        return  # not retried at all (plan shows it as failed): nothing to wait for
    previous = state.holds.get(vin)
    attempts = 1 if previous is None else previous.attempts if again else previous.attempts + 1
    try:
        state.holds[vin] = hold_after(cause, attempts, _moment(at, action.posted_at), zone)
    except (OverflowError, ValueError):  # a time at the edge of the calendar: count from now instead
        state.holds[vin] = hold_after(cause, attempts, utcnow(), zone)


def hold_after(cause: str, attempts: int, failed_at: datetime, zone: tzinfo = UTC) -> Hold:
    """The hold a failure of `cause`, the vehicle's `attempts`-th in a row, sets at `failed_at`."""
    cause = cause[:MAX_CAUSE]
    if cause == MONTHLY_CAUSE:
        return Hold(isotime(next_month(failed_at, zone)), cause, attempts)
    wait = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempts - 1, 32))
    return Hold(isotime(failed_at + wait), cause, attempts)


def next_month(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The first day of the month after `moment`'s, 00:00 in `zone` (a wall-clock time: 23:00 UTC the day
    before for Europe/Paris in winter, 22:00 in summer)."""
    local = moment.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone)


def _moment(at: str | None, posted_at: str) -> datetime:
    """When the outcome happened: `at` (an event's date, as the API or a notification says), believed between
    the remote's posting (an earlier one is clock skew) and a year from now (a later one is not a date of
    this outcome, and would hold the vehicle for ever); the posting time when `at` is unknown."""
    now = utcnow()
    try:
        posted = parse_time(posted_at)
    except ValueError:
        posted = now
    try:
        moment = parse_time(at) if at else posted
    except ValueError:
        moment = posted
    return moment if posted <= moment <= now + FUTURE else posted if moment < posted else now


def outcome_of(status: str) -> Outcome:
    """Pending, Success, AlreadyDone or Failed for a RemoteAction.status (the API flattens the Pending ones,
    Accepted to SentToVehicle, into the same field) or an event's status."""
    return Outcome(status) if status in FINAL else Outcome.PENDING
