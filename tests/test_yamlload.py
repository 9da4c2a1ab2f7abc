"""The one YAML loader: YAML 1.2 scalars, duplicate keys, positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.diagnostics import Source
from reconciler.yamlload import LIBYAML, load_file, load_text


def one(text: str) -> object:
    result = load_text(text, "f.yaml")
    assert result.diagnostics == []
    return result.documents[0].data


def test_libyaml_is_used() -> None:
    assert LIBYAML


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("07:30", "07:30"),  # YAML 1.1 would read the sexagesimal 450
        ("on", "on"),
        ("yes", "yes"),
        ("No", "No"),
        ("None", "None"),
        ("2024-01-08", "2024-01-08"),
        ("010", 10),
        ("0o10", 8),
        ("0x1f", 31),
        ("-7", -7),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("true", True),
        ("FALSE", False),
        ("~", None),
        ("null", None),
        ("'07:30'", "07:30"),
        ("'true'", "true"),
    ],
)
def test_core_schema_scalars(text: str, value: object) -> None:
    assert one(f"v: {text}\n") == {"v": value}


def test_special_floats() -> None:
    data = one("a: .inf\nb: -.Inf\n")
    assert data == {"a": float("inf"), "b": float("-inf")}
    nan = one("c: .nan\n")
    assert isinstance(nan, dict)
    assert nan["c"] != nan["c"]


def test_duplicate_keys_reported_at_each_repeat_first_value_kept() -> None:
    result = load_text("a: 1\nb:\n  x: 1\n  x: 2\na: 3\n", "f.yaml")
    assert result.documents[0].data == {"a": 1, "b": {"x": 1}}
    assert [(d.source, d.message) for d in result.diagnostics] == [
        (Source("f.yaml", 4, 3), "duplicate key 'x' (first at line 3)"),
        (Source("f.yaml", 5, 1), "duplicate key 'a' (first at line 1)"),
    ]


def test_positions_of_values_keys_and_missing_paths() -> None:
    document = load_text("a:\n  b: [x, {c: 1}]\n  d: 2\n", "f.yaml").documents[0]
    assert document.position(["a", "b", 1, "c"]) == Source("f.yaml", 2, 14)
    assert document.position(["a", "d"], key=True) == Source("f.yaml", 3, 3)
    assert document.position(["a", "nope", "deeper"]) == Source("f.yaml", 2, 3)
    assert document.position(["a", "b", 9]) == Source("f.yaml", 2, 6)
    assert document.source == Source("f.yaml", 1, 1)
    document.release()
    assert document.position(["a"]) == Source("f.yaml", 1, 1)


def test_multi_document_and_aliases() -> None:
    result = load_text("a: &x [1, 2]\nb: *x\n---\n---\nc: 3\n", "f.yaml")
    assert [d.data for d in result.documents] == [{"a": [1, 2], "b": [1, 2]}, None, {"c": 3}]
    assert [d.index for d in result.documents] == [0, 1, 2]


def test_unhashable_key_is_a_diagnostic() -> None:
    result = load_text("? [a, b]\n: 1\n", "f.yaml")
    assert result.documents == []
    assert [d.rule for d in result.diagnostics] == ["yaml-syntax"]
    assert "found a key that is a list or a mapping" in result.diagnostics[0].message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = load_file(str(tmp_path / "none.yaml"), "none.yaml")
    assert [(d.rule, d.message) for d in missing.diagnostics] == [
        ("file-unreadable", "cannot read file: No such file or directory")
    ]
    (tmp_path / "bom.yaml").write_bytes("\ufeffa: 1\n".encode())
    assert load_file(str(tmp_path / "bom.yaml")).documents[0].data == {"a": 1}
    (tmp_path / "nul.yaml").write_bytes(b"a: \x00\n")
    nul = load_file(str(tmp_path / "nul.yaml"), "nul.yaml")
    assert nul.diagnostics[0].rule == "yaml-syntax"
