"""The plan as a pull-request comment: a marker line, the summary and a table, then collapsible sections, kept
under the size limit that code hosts put on comments.

The marker (`<!-- reconciler-plan fleet=FID -->`, hidden when shown) lets a pipeline find the comment it made on
an earlier push and update it, rather than add one comment per push.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote

from reconciler.plan import Summary
from reconciler.render.blocks import Block, iter_blocks, notice_lines
from reconciler.render.counts import callback_counts, slot_counts
from reconciler.words import plural

LIMIT = 60_000  # GitHub refuses a comment over 65,536 characters; the rest is room for what a pipeline adds
VINS_SHOWN = 200
CUT_ROOM = 600  # kept free until the last section, for the line that says what was cut


def marker(fleet: str) -> str:
    """The hidden line a pipeline looks for. The fleet id is escaped so that no id can end the HTML comment
    early (real ids are hex and read as written)."""
    return f"<!-- reconciler-plan fleet={quote(fleet, safe='')} -->"


def render_markdown(
    plan: Mapping[str, Any],
    out: TextIO,
    *,
    limit: int = LIMIT,
    measure: Callable[[str], int] = len,
    where: str = "comment",
    allowed: Iterable[str] = (),
) -> None:
    """The plan in at most `limit`, as `measure` counts (characters by default; a byte budget passes a measure
    of encoded bytes). Sections go in order, the largest vehicle groups first, until the next would not fit; a
    line then says what is left out and where the whole plan is. `where` names the limit in that line;
    `allowed`, the guards the command lets through (`apply --allow`)."""
    summary = Summary(**plan["summary"])
    callbacks, slots = callback_counts(plan), slot_counts(plan)
    head = [
        marker(plan["fleet"]),
        f"### reconciler plan for fleet `{plan['fleet']}`",
        "",
        f"**{summary.line(plan['state']['serial'], plan['left_out'])}**",
        "",
        "| | create | update | delete |",
        "|---|---:|---:|---:|",
        f"| callbacks | {callbacks.create:,} | {callbacks.update:,} | {callbacks.delete:,} |",
        f"| slots | {slots.create:,} | {slots.update:,} | {slots.delete:,} |",
        "",
        f"{plural(summary.vehicles, 'vehicle changes', 'vehicles change')}, in {plural(summary.calls, 'call')}.",
        "",
    ]
    text = "\n".join(head) + "\n" + _notes(notice_lines(plan, allowed), limit // 4, measure)
    tail = f"\n<sub>plan {plan.get('digest', '')}</sub>\n"
    parts = [text]
    used = measure(text) + measure(tail)
    total = len(plan["callbacks"]) + len(plan["groups"])
    for index, block in enumerate(iter_blocks(plan)):
        section = _section(block)
        size = measure(section)
        last = index == total - 1
        if used + size + (0 if last else CUT_ROOM) > limit:
            parts.append(_cut(plan, index, total, where))
            break
        parts.append(section)
        used += size
    parts.append(tail)
    out.write("".join(parts))


def _notes(lines: list[str], room: int, measure: Callable[[str], int]) -> str:
    """The plan's notices as a quote, in at most `room`: each kind is already capped at a few lines, but a plan
    file may hold any number of guards."""
    if not lines:
        return ""
    shown: list[str] = []
    used = 0
    for line in lines:
        entry = f"> - {line}\n"
        if used + measure(entry) > room:
            shown.append(f"> - {plural(len(lines) - len(shown), 'more note')}: `--format json` has every one.\n")
            break
        shown.append(entry)
        used += measure(entry)
    return "".join(shown) + "\n"


def _cut(plan: Mapping[str, Any], index: int, total: int, where: str) -> str:
    """What a cut plan says in place of sections `index` on: how many, of which kind, and where they are.
    Blocks are the callbacks' first, then the vehicle groups' in plan order (build_blocks)."""
    callbacks = len(plan["callbacks"])
    left = []
    if index < callbacks:
        left.append(plural(callbacks - index, "callback change"))
    groups = plan["groups"][max(0, index - callbacks) :]
    if groups:
        vehicles = sum(group["vehicles"] for group in groups)
        left.append(f"{plural(len(groups), 'vehicle group')} ({plural(vehicles, 'vehicle')})")
    return (
        f"\n_{plural(total - index, 'more section is', 'more sections are')} not shown, to stay under the "
        f"{where} size limit: {' and '.join(left)}. The whole plan is in `reconciler plan --format json`, and in "
        "the plan file `plan --out` saves (keep it as the pipeline's artifact)._\n"
    )


def _section(block: Block) -> str:
    body = "\n".join(f"{s} {text}" for s, text in block.lines)
    parts = [f"<details><summary><code>{block.symbol}</code> {block.title}</summary>", "", "```diff", body, "```"]
    vins = block.vins
    if len(vins) > 1:
        shown = ", ".join(f"`{vin}`" for vin in vins[:VINS_SHOWN])
        more = f" and {len(vins) - VINS_SHOWN:,} more" if len(vins) > VINS_SHOWN else ""
        parts += ["", f"VINs: {shown}{more}"]
    parts += ["", "</details>", ""]
    return "\n".join(parts) + "\n"
