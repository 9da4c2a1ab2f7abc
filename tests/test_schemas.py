"""The published JSON Schemas: well-formed, usable by editors, and checked fast without changing verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from reconciler import schema
from reconciler.yamlload import load_file
from tests.files import EXAMPLES, REPO

SCHEMA_DIR = REPO / "schemas"


@pytest.mark.parametrize("name", schema.SCHEMA_FILES)
def test_schema_is_valid_2020_12_and_closed(name: str) -> None:
    document = json.loads((SCHEMA_DIR / name).read_text())
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    if name != "manifest.schema.json":
        assert document["additionalProperties"] is False


def editor_validator() -> Draft202012Validator:
    """The combined manifest schema as an editor resolves it: sibling files by relative reference."""
    resources = [
        (name, Resource.from_contents(json.loads((SCHEMA_DIR / name).read_text()))) for name in schema.SCHEMA_FILES
    ]
    registry: Registry = Registry().with_resources(resources)  # type: ignore[type-arg]
    return Draft202012Validator({"$ref": "manifest.schema.json"}, registry=registry)


def example_files() -> list[Path]:
    return sorted((EXAMPLES / "manifests").glob("*.yaml"))


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_name_their_schema_and_pass_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    assert (path.parent / match.group(1)).resolve() == (SCHEMA_DIR / "manifest.schema.json").resolve()
    validator = editor_validator()
    for document in load_file(str(path)).documents:
        assert list(validator.iter_errors(document.data)) == []


def test_editor_schema_rejects_what_validate_rejects() -> None:
    validator = editor_validator()
    bad = {"kind": "Preconditioning", "name": "x", "callback": "y", "vehicles": {"vins": []}, "programs": [{}]}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"kind": "Callbak"}))


def test_config_example_passes_config_schema() -> None:
    data = load_file(str(EXAMPLES / "reconciler.yaml")).documents[0].data
    assert list(schema.validator("config.schema.json").iter_errors(data)) == []


def _errors(validator: object, instance: object) -> list[tuple[str, tuple[object, ...]]]:
    # keyword and place: messages differ on purpose (ours show a long value cut short)
    return sorted((e.validator, tuple(e.absolute_path)) for e in validator.iter_errors(instance))  # type: ignore[attr-defined]


@given(
    st.lists(
        st.one_of(
            st.from_regex(r"[A-HJ-NPR-Z0-9]{17}", fullmatch=True),
            st.text(max_size=20),
            st.integers(),
            st.none(),
        ),
        max_size=30,
    )
)
def test_fast_vin_lists_agree_with_plain_jsonschema(vins: list[object]) -> None:
    document = {"kind": "VehicleGroup", "name": "g", "vins": vins}
    plain = Draft202012Validator(schema.load_schema("vehicle-group.schema.json"))
    assert _errors(schema.validator("vehicle-group.schema.json"), document) == _errors(plain, document)


def test_fast_path_is_in_use() -> None:
    vins_items = schema.load_schema("vehicle-group.schema.json")["properties"]["vins"]["items"]
    assert id(vins_items) in schema._FAST_ITEMS
