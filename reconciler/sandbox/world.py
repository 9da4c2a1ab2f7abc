"""The simulated fleet: vehicles with four program slots, callbacks, remote actions. Deterministic by seed."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.vin import make_vin

DEFAULT_FLEET = "0a123bc5d1e873066454b4d9"
MOTORIZATIONS = ("Thermic", "Electric", "Hybrid")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def opaque_id(*parts: object, length: int = 40) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:length]


@dataclass(slots=True)
class SimVehicle:
    id: str
    vin: str
    motorization: str
    asleep: bool
    offline: bool
    programs: dict[int, dict[str, Any]] = field(default_factory=dict)
    active_remote: str | None = None
    awake_until: float = 0.0
    updated_at: str = field(default_factory=now_iso)
    fails_with: str | None = None  # a failureCause every remote to this vehicle ends with (set by tests)


@dataclass(slots=True)
class SimCallback:
    id: str
    subscribe: dict[str, Any]
    status: str = "Running"

    @property
    def label(self) -> str | None:
        label = self.subscribe.get("label")
        return label if isinstance(label, str) else None


@dataclass(slots=True)
class SimRemote:
    id: str
    vehicle: SimVehicle
    callback_id: str
    type: str
    raw: bytes  # the body as posted: a fraction of the memory of the parsed form, for the many kept remotes
    status: str = "Accepted"
    failure_cause: str | None = None
    done: bool = False
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def remote(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.raw)
        return body


@dataclass
class World:
    """Everything the sandbox holds; HTTP handlers and the engine both work on it, on one event loop."""

    fleet: str
    seed: int
    vehicles: dict[str, SimVehicle]
    by_vin: dict[str, SimVehicle]
    callbacks: dict[str, SimCallback] = field(default_factory=dict)
    remotes: dict[str, SimRemote] = field(default_factory=dict)
    counter: int = 0

    @classmethod
    def create(cls, fleet: str, count: int, seed: int, asleep_rate: float = 0.3, offline_rate: float = 0.0) -> World:
        rng = random.Random(seed)
        vehicles: dict[str, SimVehicle] = {}
        for index in range(1, count + 1):
            vin = make_vin(index)
            vehicle = SimVehicle(
                id=opaque_id("vehicle", seed, index, length=48),
                vin=vin,
                motorization=MOTORIZATIONS[rng.randrange(len(MOTORIZATIONS))],
                asleep=rng.random() < asleep_rate,
                offline=rng.random() < offline_rate,
            )
            vehicles[vehicle.id] = vehicle
        return cls(fleet, seed, vehicles, {v.vin: v for v in vehicles.values()})

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return opaque_id(kind, self.seed, self.counter)

    def pending_remotes(self, callback_id: str) -> int:
        return sum(1 for r in self.remotes.values() if r.callback_id == callback_id and not r.done)
