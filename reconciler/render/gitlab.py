"""The plan as GitLab's merge-request widget reads it (`artifacts:reports:terraform`): one JSON object,
`{"create": N, "update": N, "delete": N}`, counted as reconciler.render.counts says."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

from reconciler.render.counts import change_counts


def render_gitlab(plan: Mapping[str, Any], out: TextIO) -> None:
    out.write(json.dumps(change_counts(plan).to_dict()) + "\n")
