"""The desired model: frozen, normalised, and what the planner consumes.

Everything here is built once by `reconciler.manifests` from validated, normalised manifests. Identical
slot assignments are shared between vehicles, so a fleet of 100,000 vehicles in a few schedules costs one
dictionary entry per vehicle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.diagnostics import Source
from reconciler.envsubst import EnvValue

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
THERMAL = "ThermalPreconditioning"
MAX_SLOTS = 4


@dataclass(frozen=True, slots=True)
class Program:
    """One preconditioning program as the API takes it; `start` is canonical `PTxHyM`."""

    slot: int
    start: str
    days: tuple[str, ...]
    recurrence: str = "Daily"
    enabled: bool = True

    def to_api(self, action: str = "Set") -> dict[str, Any]:
        """The program entry of a remote body (`actionsType` Set or Delete)."""
        return {
            "actionsType": action,
            "slot": self.slot,
            "enabled": self.enabled,
            "recurrence": self.recurrence,
            "start": self.start,
            "occurence": {"day": list(self.days)},
        }


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
