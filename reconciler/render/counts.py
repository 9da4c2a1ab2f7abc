"""How many resources a plan creates, updates and deletes: the one count the markdown table, the GitLab report
and the GitHub step outputs share, so a merge-request widget and a comment never disagree.

Callbacks count once each (a callback both updated and paused is one update). Slots count per vehicle: a group
of 100,000 vehicles counts 100,000 times each of its slot changes. A takeover replaces a program in place and a
retry makes a call again (its last one failed, was lost, or stayed Pending too long): both count as updates,
a retried deletion included, since neither is a change the manifests ask for anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Counts:
    create: int = 0
    update: int = 0
    delete: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.create + other.create, self.update + other.update, self.delete + other.delete)

    @property
    def total(self) -> int:
        return self.create + self.update + self.delete

    def to_dict(self) -> dict[str, int]:
        """In the order GitLab's report lists them: create, update, delete."""
        return {"create": self.create, "update": self.update, "delete": self.delete}


def callback_counts(plan: Mapping[str, Any]) -> Counts:
    """Callbacks created, updated (settings or status: paused, resumed) and deleted, each callback once."""
    created, updated, deleted = set(), set(), set()
    for change in plan["callbacks"]:
        action, address = change["action"], change["address"]
        if action == "create":
            created.add(address)
        elif action == "delete":
            deleted.add(address)
        else:  # update, status
            updated.add(address)
    return Counts(len(created), len(updated - created), len(deleted))


def slot_counts(plan: Mapping[str, Any]) -> Counts:
    """Slots newly set, changed (updates, takeovers, retries) and deleted, per vehicle of each group."""
    totals = {"create": 0, "update": 0, "delete": 0}
    for group in plan["groups"]:
        vehicles = group["vehicles"]
        for change in group["slots"]:
            action = change["action"]
            totals[action if action in ("create", "delete") else "update"] += vehicles
    return Counts(**totals)


def change_counts(plan: Mapping[str, Any]) -> Counts:
    """Callbacks and slots together: what GitLab's widget and the GitHub step outputs report."""
    return callback_counts(plan) + slot_counts(plan)
