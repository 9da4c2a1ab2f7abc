"""The desired model: frozen, normalised, and what the planner consumes.

Everything here is built once by `reconciler.manifests` from validated, normalised manifests. Identical
slot assignments are shared between vehicles, so a fleet of 100,000 vehicles in a few schedules costs one
dictionary entry per vehicle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.diagnostics import Source
from reconciler.envsubst import EnvValue

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
THERMAL = "ThermalPreconditioning"
MAX_SLOTS = 4
DAY_SETS = {
    "weekdays": DAYS[:5],
    "weekend": DAYS[5:],
    "daily": DAYS,
}


# ---- a program's canonical fields: manifests, the state and the API's answers all compare in this form ------

_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_ISO = re.compile(r"^PT(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?$")


def parse_start(text: str) -> tuple[int, int] | None:
    """(hours, minutes) from "HH:MM" or an ISO-8601 duration such as PT7H30M; None if unreadable.

    Out-of-range values are returned as written, for the caller to report.
    """
    clock = _CLOCK.match(text)
    if clock:
        return int(clock.group(1)), int(clock.group(2))
    iso = _ISO.match(text)
    if iso and text != "PT" and not (iso.group(3) and int(iso.group(3))):
        return int(iso.group(1) or 0), int(iso.group(2) or 0)
    return None


def start_in_range(hours: int, minutes: int) -> bool:
    return 0 <= hours <= 23 and 0 <= minutes <= 59


def canonical_start(text: str) -> str:
    """`PT{h}H{m}M` for a valid start; the planner and state compare starts only in this form."""
    parsed = parse_start(text)
    if parsed is None or not start_in_range(*parsed):
        raise ValueError(f"not a time of day: {text!r}")
    return f"PT{parsed[0]}H{parsed[1]}M"


def canonical_days(days: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """An ordered, duplicate-free tuple of day names from a shorthand or a list."""
    if isinstance(days, str):
        return DAY_SETS[days]
    chosen = set(days)
    return tuple(day for day in DAYS if day in chosen)


@dataclass(frozen=True, slots=True)
class Program:
    """One preconditioning program as the API takes it; `start` is canonical `PTxHyM`."""

    slot: int
    start: str
    days: tuple[str, ...]
    recurrence: str = "Daily"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Attribute:
    """A webhook attribute: `kind` is Header, Query or Body; header values are always sensitive."""

    kind: str
    key: str
    value: EnvValue

    @property
    def sensitive(self) -> bool:
        return self.kind == "Header" or self.value.sensitive


@dataclass(frozen=True, slots=True)
class Callback:
    name: str
    target: EnvValue
    webhook_name: str
    attributes: tuple[Attribute, ...]
    remote_types: tuple[str, ...]
    retry_policy: Mapping[str, Any] | None
    batch_notify: Mapping[str, Any] | None
    status: str
    source: Source = field(compare=False)


@dataclass(frozen=True, slots=True)
class SlotAssignment:
    """A program in a vehicle's slot, with the callback it goes through and the schedule that asked for it."""

    program: Program
    callback: str
    schedule: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """A Preconditioning manifest after group expansion."""

    name: str
    callback: str
    vins: frozenset[str]
    groups: tuple[str, ...]
    programs: tuple[Program, ...]
    source: Source = field(compare=False)
    takeover: bool = False


@dataclass(frozen=True, slots=True)
class Desired:
    """What the manifests ask for."""

    callbacks: Mapping[str, Callback]
    groups: Mapping[str, tuple[str, ...]]
    schedules: Mapping[str, Schedule]
    # VIN -> its assignments, ordered by slot
    vehicles: Mapping[str, tuple[SlotAssignment, ...]]
    files: tuple[str, ...] = ()
    digest: str = ""

    @property
    def slot_count(self) -> int:
        return sum(len(slots) for slots in self.vehicles.values())
