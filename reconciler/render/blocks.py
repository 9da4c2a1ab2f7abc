"""The one walk over a plan's changes, shared by the text and markdown renderers.

It turns the canonical plan dict into blocks: one per callback change, one per vehicle, and one per group of
vehicles that get exactly the same change (so 400 vehicles with one new start time read as one block).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.address import Address
from reconciler.envsubst import SENSITIVE, SENSITIVE_CHANGED
from reconciler.plan import GuardCheck, NoticeKind
from reconciler.words import days_text, hhmm, plural, program_text

__all__ = ["Block", "build_blocks", "days_text", "hhmm", "notice_lines", "program_text", "value_text"]

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "status": "~", "retry": "!"}
SENSITIVE_MARKERS = (SENSITIVE, SENSITIVE_CHANGED)


@dataclass(slots=True)
class Block:
    symbol: str
    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    vins: list[str] = field(default_factory=list)


def value_text(path: str, value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and value in SENSITIVE_MARKERS:
        return value
    if path == "start":
        return hhmm(value)
    if path == "days":
        return days_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


def _slot_line(change: Mapping[str, Any]) -> tuple[str, str]:
    slot = Address.parse(change["address"]).slot
    action = change["action"]
    symbol = SYMBOLS[action]
    if action == "create":
        return symbol, f"slot {slot}: {program_text(change['after'])}"
    if action == "delete":
        return symbol, f"slot {slot}: {program_text(change['before'])}"
    if change.get("cause") == "takeover":
        return (
            symbol,
            f"slot {slot}: take over {program_text(change['before'])} (not set by reconciler) -> "
            + program_text(change["after"]),
        )
    if action == "retry":
        what = "set " + program_text(change["after"]) if change["after"] else "delete"
        return symbol, f"slot {slot}: retry {what} ({change['cause']})"
    diffs = ", ".join(
        f"{d['path']} {value_text(d['path'], d['before'])} -> {value_text(d['path'], d['after'])}"
        for d in change["diffs"]
    )
    return symbol, f"slot {slot}: {diffs}"


def _callback_block(change: Mapping[str, Any]) -> Block:
    action = change["action"]
    name = change["address"]
    titles = {
        "create": "will be created",
        "update": "will be updated",
        "delete": "will be deleted",
        "status": "status will change",
    }
    block = Block(SYMBOLS[action], f"{name} {titles[action]}")
    for diff in change["diffs"]:
        path = diff["path"]
        if action == "create":
            if diff["after"] != {}:
                block.lines.append(("+", f"{path} = {value_text(path, diff['after'])}"))
        else:
            before, after = value_text(path, diff["before"]), value_text(path, diff["after"])
            if after == SENSITIVE_CHANGED:
                block.lines.append(("~", f"{path}: {after}"))
            else:
                block.lines.append(("~", f"{path}: {before} -> {after}"))
    return block


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


def build_blocks(plan: Mapping[str, Any]) -> list[Block]:
    """Callback blocks in plan order, then vehicle blocks: identical vehicle changes share one block."""
    blocks: list[Block] = []
    by_vin: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for change in plan["changes"]:
        address = Address.parse(change["address"])
        if address.is_callback:
            blocks.append(_callback_block(change))
        else:
            by_vin[address.key].append(change)
    calls: dict[str, int] = defaultdict(int)
    for call in plan["calls"]:
        if call["vin"]:
            calls[call["vin"]] += 1
    groups: dict[Any, Block] = {}
    for vin, changes in by_vin.items():
        key = tuple(
            (c["action"], Address.parse(c["address"]).slot, _freeze(c["before"]), _freeze(c["after"]), c["cause"])
            for c in changes
        )
        block = groups.get(key)
        if block is None:
            callbacks = sorted({(c["after"] or c["before"])["callback"] for c in changes})
            block = Block("~", ", ".join(callbacks), [_slot_line(c) for c in changes])
            groups[key] = block
        block.vins.append(vin)
    for block in groups.values():
        count = len(block.vins)
        via = block.title
        per_vehicle = calls[block.vins[0]]
        if count == 1:
            block.title = f"vehicle {block.vins[0]} ({plural(per_vehicle, 'call')} via {via})"
        else:
            block.title = f"{count:,} vehicles, the same change each ({plural(per_vehicle * count, 'call')} via {via})"
        blocks.append(block)
    return blocks


def notice_lines(plan: Mapping[str, Any], pending_timeout: str = "") -> list[str]:
    """Lines about what the plan leaves alone: remotes in flight, permanent failures, changes left out."""
    lines = []
    in_flight = [n for n in plan["notices"] if n["kind"] == NoticeKind.IN_FLIGHT]
    if in_flight:
        vehicles = len({Address.parse(n["address"]).key for n in in_flight})
        lines.append(
            f"In flight: {plural(len(in_flight), 'slot')} on {plural(vehicles, 'vehicle is', 'vehicles are')} "
            "Pending; nothing to do yet."
        )
    foreign = [n for n in plan["notices"] if n["kind"] == NoticeKind.FOREIGN]
    for notice in foreign[:20]:
        lines.append(f"Left alone: {notice['address']} {notice['detail']}")
    if len(foreign) > 20:
        lines.append(f"Left alone: {plural(len(foreign) - 20, 'more slot')} holding programs reconciler did not set.")
    failed = [n for n in plan["notices"] if n["kind"] == NoticeKind.FAILED]
    for notice in failed:
        lines.append(f"Failed: {notice['address']}: {notice['detail']}")
    absent = [n for n in plan["notices"] if n["kind"] == NoticeKind.NOT_IN_FLEET]
    for notice in absent[:20]:
        lines.append(f"Not in the fleet: {Address.parse(notice['address']).key}: {notice['detail']}")
    if len(absent) > 20:
        lines.append(f"Not in the fleet: {len(absent) - 20:,} more vehicles.")
    if plan["left_out"]:
        lines.append(
            f"Targeted plan: {plural(plan['left_out'], 'other change')} left out "
            f"(targets: {', '.join(plan['options']['targets']) or 'all'}; "
            f"excludes: {', '.join(plan['options']['excludes']) or 'none'})."
        )
    for guard in plan["guards"]:
        if guard["exceeded"]:
            lines.append(
                f"Guard exceeded: {GuardCheck(**guard).describe()}; apply will refuse without --allow {guard['name']}."
            )
    return lines
