"""Large plans made directly (no manifests, no planner): a fleet whose vehicles got many distinct changes, for
the size tests and the benchmark of what CI posts."""

from __future__ import annotations

from reconciler.model import DAYS, Program
from reconciler.plan import Action, ChangeGroup, FieldDiff, Plan, SlotChange, SlotView
from reconciler.vin import make_vin

FLEET = "0a123bc5d1e873066454b4d9"


def scattered_plan(vehicles: int, groups: int, fleet: str = FLEET) -> Plan:
    """`vehicles` VINs in `groups` groups of (nearly) the same size, each group getting its own change: slot
    `n % 4 + 1` moved to its own start time, and in every third group slot 4 deleted too."""
    vins = sorted(make_vin(i) for i in range(vehicles))
    made = []
    for n in range(groups):
        slot = n % 4 + 1
        minutes = (n // 4) % 1440
        start = f"PT{minutes // 60}H{minutes % 60}M"
        before = SlotView(Program(slot, "PT23H59M", DAYS[:5]), "fleet-ops", "shift")
        after = SlotView(Program(slot, start, DAYS[:5]), "fleet-ops", "shift")
        changes = [SlotChange(slot, Action.UPDATE, before, after, diffs=(FieldDiff("start", "PT23H59M", start),))]
        if n % 3 == 0 and slot != 4:
            old = SlotView(Program(4, "PT12H", DAYS[5:]), "fleet-ops", "shift")
            changes.append(SlotChange(4, Action.DELETE, old, None))
        made.append(ChangeGroup(tuple(vins[n::groups]), tuple(changes)))
    made.sort(key=lambda group: -len(group.vins))
    return Plan(fleet, "lineage-1", 7, "sha256:manifests", groups=tuple(made))
