"""The plan for people at a terminal or in a CI log: Terraform-like symbols, grouped vehicles, a summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from reconciler.plan import Summary
from reconciler.render.blocks import build_blocks, notice_lines

VINS_SHOWN = 10  # of a group: a 100,000-vehicle change still fits on one screen
VINS_ALL = 15  # a group this small is listed whole
VINS_PER_LINE = 5
_COLOURS = {"+": "32", "~": "33", "-": "31", "!": "35"}


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def render_text(plan: Mapping[str, Any], out: TextIO, *, colour: bool = False, allowed: Iterable[str] = ()) -> None:
    blocks = build_blocks(plan)
    if blocks:
        out.write(f"reconciler will make these changes to fleet {plan['fleet']}:\n")
    for block in blocks:
        out.write(f"\n  {_paint(block.symbol, _COLOURS[block.symbol], colour)} {block.title}\n")
        for symbol, text in block.lines:
            out.write(f"      {_paint(symbol, _COLOURS.get(symbol, '0'), colour)} {text}\n")
        if len(block.vins) > 1:
            shown = block.vins if len(block.vins) <= VINS_ALL else block.vins[:VINS_SHOWN]
            for start in range(0, len(shown), VINS_PER_LINE):
                out.write("      " + ", ".join(shown[start : start + VINS_PER_LINE]) + "\n")
            if len(block.vins) > len(shown):
                out.write(f"      ... and {len(block.vins) - len(shown):,} more (every VIN: --format json)\n")
    notes = notice_lines(plan, allowed)
    if blocks or notes:
        out.write("\n")
    for line in notes:
        out.write(line + "\n")
    out.write(_paint(Summary(**plan["summary"]).line(plan["state"]["serial"], plan["left_out"]), "1", colour) + "\n")
