"""The one value-compare function of the planner.

Values here are shallow (a callback spec nests two levels) and their lists are atomic (days, remoteTypes): a
change to a list is shown as the whole list before and after. Flattening to dotted paths gives exactly the
paths people read in a plan (`retryPolicy.retryDelay`, `webhook.headers.X-Api-Key`) at a fraction of the cost
of a general structural differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from reconciler.plan import FieldDiff

_ABSENT = object()


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, path + "."))
        else:
            flat[path] = item
    return flat


def diff_values(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, ignore: Set[str] = frozenset()
) -> tuple[FieldDiff, ...]:
    """Every path whose value differs, sorted; a path missing on one side has the value None there."""
    old = flatten(before or {})
    new = flatten(after or {})
    found = []
    for path in sorted(old.keys() | new.keys()):
        if path in ignore:
            continue
        a, b = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if a != b:
            found.append(FieldDiff(path, None if a is _ABSENT else a, None if b is _ABSENT else b))
    return tuple(found)
