"""Selectors: what `--target` and `--exclude` keep of a plan (vin:, group:, schedule:, callback:)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.errors import UsageError
from reconciler.model import Desired
from reconciler.plan import SlotChange
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


class Selection:
    """What `--target` and `--exclude` keep: a callback's change by its name; a vehicle slot's change by the
    vehicle (vin:, group:) or by what the slot held or will hold (schedule:, callback:)."""

    def __init__(self, desired: Desired, targets: Sequence[Selector], excludes: Sequence[Selector]) -> None:
        self.targets, self.excludes = tuple(targets), tuple(excludes)
        self.active = bool(self.targets or self.excludes)
        self.groups = {
            s.value: frozenset(desired.groups[s.value]) for s in (*self.targets, *self.excludes) if s.kind == "group"
        }
        # vin: selectors as sets, so that thousands of them (serve leaves each drifted vehicle out by one) cost
        # a lookup per vehicle, not a pass over the list
        self._target_vins = frozenset(s.value for s in self.targets if s.kind == "vin")
        self._exclude_vins = frozenset(s.value for s in self.excludes if s.kind == "vin")
        self._target_others = tuple(s for s in self.targets if s.kind not in ("vin", "callback"))
        self._exclude_others = tuple(s for s in self.excludes if s.kind not in ("vin", "callback"))
        self._target_callbacks = frozenset(s.value for s in self.targets if s.kind == "callback")
        self._exclude_callbacks = frozenset(s.value for s in self.excludes if s.kind == "callback")

    def keeps_callback(self, name: str) -> bool:
        return (not self.targets or name in self._target_callbacks) and name not in self._exclude_callbacks

    def keeps_slot(self, vin: str, change: SlotChange) -> bool:
        views = [view for view in (change.before, change.after) if view is not None]

        def matches(vins: frozenset[str], callbacks: frozenset[str], others: tuple[Selector, ...]) -> bool:
            if vin in vins or any(view.callback in callbacks for view in views):
                return True
            for selector in others:
                if selector.kind == "group":
                    if vin in self.groups[selector.value]:
                        return True
                elif any(view.schedule == selector.value for view in views):
                    return True
            return False

        kept = not self.targets or matches(self._target_vins, self._target_callbacks, self._target_others)
        return kept and not matches(self._exclude_vins, self._exclude_callbacks, self._exclude_others)
