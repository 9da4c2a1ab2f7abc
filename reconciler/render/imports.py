"""What `import` recorded, one line per callback or vehicle, and what `import --write-manifests` wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from reconciler.words import plural


def render_adopted(lines: Sequence[str], out: TextIO) -> None:
    """The lines adoption produced (one per item recorded), then the count and the next step."""
    render_lines(lines, out)
    out.write(f"Imported {plural(len(lines), 'item')}; run plan to see what still differs.\n")


def render_lines(lines: Sequence[str], out: TextIO) -> None:
    """Lines as they are: the files written and the variables to set, from writing manifests."""
    for line in lines:
        out.write(line + "\n")
