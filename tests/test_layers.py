"""The core stays light: importing the planner loads no YAML, schema, HTTP, server or CLI library."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("yaml", "jsonschema", "httpx", "click", "starlette", "uvicorn", "deepdiff")


def test_importing_the_planner_loads_no_library_of_the_edges() -> None:
    code = "import json, sys; import reconciler.planner; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [name for name in loaded if name.split(".")[0] in HEAVY] == []
