"""Addresses in the recorded state: callback.NAME, vehicle.VIN and vehicle.VIN.slot.N."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reconciler.address import Address
from reconciler.errors import StateError, UsageError
from reconciler.state.model import State, program_text


def parse_address(text: str) -> tuple[str, str, int | None]:
    """(kind, name or VIN, slot) of an address given on the command line; UsageError when it is not one."""
    try:
        return tuple(Address.parse(text))  # type: ignore[return-value]
    except ValueError as error:
        raise UsageError(str(error)) from None


def addresses(state: State) -> Iterator[str]:
    for name in sorted(state.callbacks):
        yield str(Address.of_callback(name))
    for vin in sorted(state.slots):
        for slot in sorted(state.slots[vin]):
            yield str(Address.of_slot(vin, slot))


def describe(state: State, text: str) -> dict[str, Any]:
    """Everything the state records about one address (secrets only as fingerprints)."""
    kind, name, slot = parse_address(text)
    if kind == "callback":
        if name not in state.callbacks:
            raise StateError(f"{text} is not in the state")
        return {"address": text, **state.callbacks[name].to_dict()}
    slots = state.slots.get(name)
    if not slots or (slot is not None and slot not in slots):
        raise StateError(f"{text} is not in the state")
    chosen = [slot] if slot is not None else sorted(slots)
    result: dict[str, Any] = {"address": text, "vehicle_id": state.vehicles_index.get(name), "slots": {}}
    for number in chosen:
        record = slots[number]
        action = state.outcome(record)
        result["slots"][str(number)] = {
            "program": program_text(record.program),
            "callback": record.callback,
            "schedule": record.schedule,
            "kind": record.kind,
            "action_id": record.action,
            "action": action.to_dict() if action else None,
        }
    return result


def remove(state: State, text: str) -> int:
    """Forget an address without any API call; the number of slots or callbacks forgotten."""
    kind, name, slot = parse_address(text)
    if kind == "callback":
        if state.callbacks.pop(name, None) is None:
            raise StateError(f"{text} is not in the state")
        return 1
    slots = state.slots.get(name)
    if not slots or (slot is not None and slot not in slots):
        raise StateError(f"{text} is not in the state")
    if slot is None:
        del state.slots[name]
        return len(slots)
    del slots[slot]
    if not slots:
        del state.slots[name]
    return 1
