"""Selectors: what `--target` and `--exclude` keep of a plan (vin:, group:, schedule:, callback:)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.errors import UsageError
from reconciler.model import Desired
from reconciler.plan import Action, Change
from reconciler.state.model import State

SELECTOR_KINDS = ("vin", "group", "schedule", "callback")


@dataclass(frozen=True, slots=True)
class Selector:
    kind: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        kind, _, value = text.partition(":")
        if kind not in SELECTOR_KINDS or not value:
            raise UsageError(f"invalid selector '{text}': use vin:VIN, group:NAME, schedule:NAME or callback:NAME")
        return cls(kind, value.upper() if kind == "vin" else value)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def check_selectors(
    desired: Desired, state: State | None, targets: Sequence[Selector], excludes: Sequence[Selector]
) -> None:
    """UsageError (exit 64) for a selector that can match nothing: a typo must not pass for "no changes"."""
    for selector in (*targets, *excludes):
        if selector.kind == "vin":
            if selector.value not in desired.vehicles and (state is None or selector.value not in state.slots):
                raise UsageError(
                    f"unknown vehicle '{selector.value}' in selector {selector}: no schedule selects it "
                    "and the state records nothing for it"
                )
            continue
        if selector.kind == "callback":
            if selector.value not in desired.callbacks and (state is None or selector.value not in state.callbacks):
                raise UsageError(
                    f"unknown callback '{selector.value}' in selector {selector}: the manifests do not define it "
                    "and the state records nothing for it"
                )
            continue
        if selector.kind == "schedule" and selector.value not in desired.schedules:
            recorded = state is not None and any(
                record.schedule == selector.value for records in state.slots.values() for record in records.values()
            )
            if not recorded:  # a removed schedule's slots are still recorded until they are deleted
                raise UsageError(f"unknown schedule '{selector.value}' in selector {selector}")
        if selector.kind == "group" and selector.value not in desired.groups:
            raise UsageError(f"unknown group '{selector.value}' in selector {selector}")


def _matches(change: Change, selector: Selector, desired: Desired) -> bool:
    if change.address.is_callback:
        return selector.kind == "callback" and change.address.key == selector.value
    vin = change.address.key
    views = [view for view in (change.before, change.after) if view is not None]
    if selector.kind == "vin":
        return vin == selector.value
    if selector.kind == "group":
        return vin in desired.groups[selector.value]
    return any(view[selector.kind] == selector.value for view in views)


def select(
    changes: list[Change], desired: Desired, targets: Sequence[Selector], excludes: Sequence[Selector]
) -> list[Change]:
    """The changes the selectors keep, with the creation of any callback a kept vehicle call needs."""
    if not targets and not excludes:
        return changes
    kept = [
        change
        for change in changes
        if (not targets or any(_matches(change, s, desired) for s in targets))
        and not any(_matches(change, s, desired) for s in excludes)
    ]
    # a vehicle call needs its callback to exist: keep the creation of any callback a kept slot goes through
    needed = {change.after["callback"] for change in kept if change.kind == "slot" and change.after}
    chosen = {change.address for change in kept}
    for change in changes:
        wanted = change.action is Action.CREATE and change.address.is_callback and change.address.key in needed
        if wanted and change.address not in chosen:
            kept.append(change)
    order = {id(change): index for index, change in enumerate(changes)}
    return sorted(kept, key=lambda change: order[id(change)])
