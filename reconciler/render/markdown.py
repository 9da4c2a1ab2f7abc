"""The plan as a pull-request comment: a summary table, then collapsible sections, kept under the size limit
that code hosts put on comments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from reconciler.plan import Summary
from reconciler.render.blocks import build_blocks, notice_lines
from reconciler.words import plural

LIMIT = 60_000
VINS_SHOWN = 200


def render_markdown(plan: Mapping[str, Any], out: TextIO, *, limit: int = LIMIT) -> None:
    summary = Summary(**plan["summary"])
    head = [
        f"### reconciler plan for fleet `{plan['fleet']}`",
        "",
        f"**{summary.line(plan['state']['serial'], plan['left_out'])}**",
        "",
        "| | create | update | delete |",
        "|---|---:|---:|---:|",
        f"| callbacks | {summary.callbacks_create:,} | {summary.callbacks_update:,} | {summary.callbacks_delete:,} |",
        f"| slots | {_created(plan):,} | {summary.slots_set - _created(plan):,} | {summary.slots_deleted:,} |",
        "",
        f"{plural(summary.vehicles, 'vehicle changes', 'vehicles change')}, in {plural(summary.calls, 'call')}.",
        "",
    ]
    notes = notice_lines(plan)
    if notes:
        head += [f"> - {line}" for line in notes] + [""]
    text = "\n".join(head) + "\n"
    tail = f"\n<sub>plan {plan.get('digest', '')}</sub>\n"
    sections = [_section(block.symbol, block.title, block.lines, block.vins) for block in build_blocks(plan)]
    for index, section in enumerate(sections):
        cut = (
            f"\n_{plural(len(sections) - index, 'more section is', 'more sections are')} not shown, "
            "to stay under the comment size limit: "
            "the whole plan is in `reconciler plan --format json`._\n"
        )
        if len(text) + len(section) + len(cut) + len(tail) > limit:
            text += cut
            break
        text += section
    out.write(text + tail)


def _created(plan: Mapping[str, Any]) -> int:
    return sum(group["vehicles"] * sum(c["action"] == "create" for c in group["slots"]) for group in plan["groups"])


def _section(symbol: str, title: str, lines: list[tuple[str, str]], vins: list[str]) -> str:
    body = "\n".join(f"{s} {text}" for s, text in lines)
    parts = [f"<details><summary><code>{symbol}</code> {title}</summary>", "", "```diff", body, "```"]
    if len(vins) > 1:
        shown = ", ".join(f"`{vin}`" for vin in vins[:VINS_SHOWN])
        more = f" and {len(vins) - VINS_SHOWN:,} more" if len(vins) > VINS_SHOWN else ""
        parts += ["", f"VINs: {shown}{more}"]
    parts += ["", "</details>", ""]
    return "\n".join(parts) + "\n"
