"""Addresses: the identity of what reconciler manages, written `callback.NAME`, `vehicle.VIN` or
`vehicle.VIN.slot.N`. Parsed and written here only; everywhere else an Address is typed data."""

from __future__ import annotations

from typing import NamedTuple

CALLBACK = "callback"
VEHICLE = "vehicle"
SLOTS = ("1", "2", "3", "4")


class Address(NamedTuple):
    kind: str  # CALLBACK or VEHICLE
    key: str  # the callback's name, or the VIN
    slot: int | None = None  # a vehicle's slot, 1..4

    @classmethod
    def of_callback(cls, name: str) -> Address:
        return cls(CALLBACK, name)

    @classmethod
    def of_vehicle(cls, vin: str) -> Address:
        return cls(VEHICLE, vin)

    @classmethod
    def of_slot(cls, vin: str, slot: int) -> Address:
        return cls(VEHICLE, vin, slot)

    @property
    def is_callback(self) -> bool:
        return self.kind == CALLBACK

    @property
    def vin(self) -> str | None:
        return self.key if self.kind == VEHICLE else None

    def __str__(self) -> str:
        if self.slot is not None:
            return f"{self.kind}.{self.key}.slot.{self.slot}"
        return f"{self.kind}.{self.key}"

    @staticmethod
    def parse(text: str) -> Address:
        """The address `text` writes; ValueError when it is not one."""
        return _parse(text)


def _parse(text: str) -> Address:
    parts = text.split(".")
    if len(parts) == 2 and parts[0] == CALLBACK and parts[1]:
        return Address(CALLBACK, parts[1])
    if len(parts) == 2 and parts[0] == VEHICLE and parts[1]:
        return Address(VEHICLE, parts[1].upper())
    if len(parts) == 4 and parts[0] == VEHICLE and parts[1] and parts[2] == "slot" and parts[3] in SLOTS:
        return Address(VEHICLE, parts[1].upper(), int(parts[3]))
    raise ValueError(f"invalid address '{text[:100]}': use callback.NAME, vehicle.VIN or vehicle.VIN.slot.N")
