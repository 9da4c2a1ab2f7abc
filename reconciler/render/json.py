"""JSON for tools: the one way every command writes a JSON document, and the plan as one.

Every document is sorted and indented the same way and ends with a newline, and a command's documents carry its
`result` (ok, changes, partial, ...) as the exit code does, so a tool can read either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO


def write_json(document: Mapping[str, Any], out: TextIO, *, result: str, ensure_ascii: bool = True) -> None:
    """Write `document` with the command's `result` added, as every JSON output carries it (DESIGN.md 3)."""
    body = {**document, "result": result}
    json.dump(body, out, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)
    out.write("\n")


def render_json(plan: Mapping[str, Any], out: TextIO, *, result: str = "ok") -> None:
    """The plan: the canonical plan dict with its digest, plus the command's `result`. Names people wrote are
    kept as they wrote them, not escaped."""
    write_json(plan, out, result=result, ensure_ascii=False)
