"""The plan for tools: the canonical plan dict with its digest, plus the command's `result`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO


def render_json(plan: Mapping[str, Any], out: TextIO, *, result: str = "ok") -> None:
    json.dump({**plan, "result": result}, out, indent=2, sort_keys=True, ensure_ascii=False)
    out.write("\n")
