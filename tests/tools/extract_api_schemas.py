"""Extracts the request-body schemas the sandbox validates from the official api-b2b.yaml.

The sandbox ships the extract (reconciler/sandbox/fleet-api.schema.json) because the official file is not part
of the package; tests/test_sandbox_validation.py checks that the extract still equals a fresh one.

    python -m tests.tools.extract_api_schemas vendor/stellantis/api-b2b.yaml > reconciler/sandbox/fleet-api.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from reconciler.yamlload import load_file

ROOTS = ("RemoteCallbackSubscribe", "RemoteCallbacksStatusSetter", "Remote")
PREFIX = "#/components/schemas/"


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            found.add(ref[len(PREFIX) :])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                "#/definitions/" + value[len(PREFIX) :] if key == "$ref" and isinstance(value, str) else _rewrite(value)
            )
            for key, value in node.items()
            if key != "example"
        }
    if isinstance(node, list):
        return [_rewrite(value) for value in node]
    return node


def extract(path: str) -> dict[str, Any]:
    loaded = load_file(path)
    if loaded.diagnostics:
        raise SystemExit(f"cannot read {path}: {loaded.diagnostics[0].format()}")
    document = loaded.documents[0].data
    schemas = document["components"]["schemas"]
    wanted: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(_refs(schemas[name]) - wanted)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"Extracted from the Fleet Owner Web API OpenAPI {document['info']['version']} (api-b2b.yaml).",
        "definitions": {name: _rewrite(schemas[name]) for name in sorted(wanted)},
    }


if __name__ == "__main__":
    json.dump(extract(sys.argv[1]), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")
