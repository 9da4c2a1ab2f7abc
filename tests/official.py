"""The vendor's official OpenAPI files (vendor/stellantis), as JSON Schemas tests validate against.

Loaded through the project's YAML 1.2 loader, so keys like `on` (RemoteLights) stay strings.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from reconciler.yamlload import load_file
from tests.files import VENDOR

API = VENDOR / "api-b2b.yaml"
WEBHOOK = VENDOR / "api-b2b-webhook-template-v3.yaml"
_URI = "urn:stellantis:api-b2b"


@cache
def spec(path: str = str(API)) -> dict[str, Any]:
    loaded = load_file(path)
    assert not loaded.diagnostics, loaded.diagnostics
    data: dict[str, Any] = loaded.documents[0].data
    return data


def official_errors(component: str, instance: Any, path: str = str(API)) -> list[str]:
    """Messages of every way `instance` breaks the official schema `components.schemas.<component>`."""
    document = spec(path)
    registry: Registry = Registry().with_resource(_URI, Resource.from_contents(document, DRAFT7))  # type: ignore[type-arg]
    validator = Draft7Validator({"$ref": f"{_URI}#/components/schemas/{component}"}, registry=registry)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
