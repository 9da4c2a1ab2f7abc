"""The one walk over a plan's changes, shared by the text and markdown renderers.

It turns the canonical plan dict into blocks: one per callback change and one per group of vehicles that get
exactly the same change (so 100,000 vehicles with one new start time read as one block).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.envsubst import SENSITIVE, SENSITIVE_CHANGED
from reconciler.plan import GuardCheck, NoticeKind
from reconciler.words import days_text, hhmm, plural, program_text

__all__ = ["Block", "build_blocks", "days_text", "hhmm", "iter_blocks", "notice_lines", "program_text", "value_text"]

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "status": "~", "retry": "!"}
SENSITIVE_MARKERS = (SENSITIVE, SENSITIVE_CHANGED)
NOTICES_SHOWN = 20  # notice lines of one kind before the rest is counted
VINS_IN_NOTICE = 3


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
    slot = change["slot"]
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


def build_blocks(plan: Mapping[str, Any]) -> list[Block]:
    """Callback blocks in plan order, then one block per group of vehicles that get the same change (the
    largest first, so the change most of a fleet gets leads and the exceptions follow)."""
    return list(iter_blocks(plan))


def iter_blocks(plan: Mapping[str, Any]) -> Iterator[Block]:
    """The blocks of build_blocks one at a time, for a renderer that stops at a size limit."""
    for change in plan["callbacks"]:
        yield _callback_block(change)
    for group in plan["groups"]:
        count, vins = group["vehicles"], group["vins"]
        calls = len(group["calls"]) * count
        via = ", ".join(call["callback"] for call in group["calls"])
        if count == 1:
            title = f"vehicle {vins[0]} ({plural(calls, 'call')} via {via})"
        else:
            title = f"{count:,} vehicles, the same change each ({plural(calls, 'call')} via {via})"
        yield Block("~", title, [_slot_line(change) for change in group["slots"]], vins)


def notice_lines(plan: Mapping[str, Any], allowed: Iterable[str] = ()) -> list[str]:
    """Lines about what the plan leaves alone: remotes in flight, permanent failures, held vehicles, changes left
    out; and the guards it exceeds (`allowed`: those the command was told to let through)."""
    lines = []
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for notice in plan["notices"]:
        groups[notice["kind"]].append(notice)
    in_flight = groups[NoticeKind.IN_FLIGHT]
    if in_flight:
        slots = sum(n["vehicles"] * len(n["slots"]) for n in in_flight)
        vehicles = len({vin for n in in_flight for vin in n["vins"]})
        lines.append(
            f"In flight: {plural(slots, 'slot')} on {plural(vehicles, 'vehicle is', 'vehicles are')} "
            "Pending; nothing to do yet."
        )
    for kind, label, shown in (
        (NoticeKind.FOREIGN, "Left alone", "holding programs reconciler did not set"),
        (NoticeKind.FAILED, "Failed", "whose last remote failed"),
        (NoticeKind.HELD, "Held", "held back until their hold ends"),
        (NoticeKind.NOT_IN_FLEET, "Not in the fleet", "not in the fleet"),
    ):
        lines += _noticed(groups[kind], label, shown)
    if plan["left_out"]:
        lines.append(
            f"Targeted plan: {plural(plan['left_out'], 'other change')} left out "
            f"(targets: {', '.join(plan['options']['targets']) or 'all'}; "
            f"excludes: {', '.join(plan['options']['excludes']) or 'none'})."
        )
    let_through = set(allowed)
    for guard in plan["guards"]:
        if guard["exceeded"]:
            verdict = (
                f"allowed by --allow {guard['name']}"
                if guard["name"] in let_through
                else f"apply will refuse without --allow {guard['name']}"
            )
            lines.append(f"Guard exceeded: {GuardCheck(**guard).describe()}; {verdict}.")
    return lines


def _noticed(notices: list[Mapping[str, Any]], label: str, what: str, limit: int = NOTICES_SHOWN) -> list[str]:
    """One line per notice group, the first VINs of each named; past `limit` lines, a count of the rest."""
    lines = []
    for notice in notices[:limit]:
        slots = notice["slots"]
        where = f" slot{'s' if len(slots) > 1 else ''} {', '.join(map(str, slots))}" if slots else ""
        lines.append(f"{label}: {_vins_text(notice['vins'])}{where}: {notice['detail']}")
    rest = notices[limit:]
    if rest:
        vehicles = sum(n["vehicles"] for n in rest)
        lines.append(f"{label}: {plural(vehicles, 'more vehicle')} {what} (every one: --format json).")
    return lines


def _vins_text(vins: list[str]) -> str:
    if len(vins) == 1:
        return vins[0]
    more = len(vins) - VINS_IN_NOTICE
    shown = ", ".join(vins[:VINS_IN_NOTICE])
    return f"{len(vins):,} vehicles ({shown}{f' and {more:,} more' if more > 0 else ''})"
