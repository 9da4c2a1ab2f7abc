"""The one YAML loader: YAML 1.2 scalars, duplicate keys, positions."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from reconciler.diagnostics import Source
from reconciler.yamlload import (
    LIBYAML,
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    MAX_FILE_SIZE,
    MAX_INT_DIGITS,
    LoadResult,
    ReadError,
    load_file,
    load_text,
    read_bounded,
)


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


def bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level lists the one before `width` times; a few hundred bytes in all."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_the_alias_in_bounded_time_and_memory() -> None:
    text = bomb()
    assert len(text) < 600
    tracemalloc.start()
    started = time.perf_counter()
    result = load_text(text, "f.yaml")
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.documents == []
    assert [(d.rule, d.source) for d in result.diagnostics] == [("yaml-aliases", Source("f.yaml", 6, 10))]
    assert result.diagnostics[0].message == (
        f"aliases add more than {MAX_ALIAS_VALUES:,} values to this document: *a4 repeats the 66,430 values of "
        "&a4 (line 5); write the values out instead"
    )
    assert peak < 20_000_000 and elapsed < 5, (peak, elapsed)


def test_aliases_within_the_budget_are_shared_not_copied() -> None:
    result = load_text("p: &p {slot: 1, days: [Mon]}\nq: [*p, *p]\n", "f.yaml")
    assert result.diagnostics == []
    data = result.documents[0].data
    assert data["q"] == [{"slot": 1, "days": ["Mon"]}] * 2
    assert data["q"][0] is data["p"]


def test_alias_inside_the_value_it_names_is_refused() -> None:
    result = load_text("a: &a [1, *a]\n---\nb: 2\n", "f.yaml")
    assert [(d.rule, str(d.source), d.message) for d in result.diagnostics] == [
        ("yaml-aliases", "f.yaml:1:11", "alias *a is inside the value it names: it would repeat without end")
    ]
    assert [d.data for d in result.documents] == [{"b": 2}]  # the next document is still read


def test_undefined_alias_refuses_its_document_only() -> None:
    result = load_text("a: *nowhere\n---\nb: 2\n", "f.yaml")
    assert [(d.rule, str(d.source)) for d in result.diagnostics] == [("yaml-syntax", "f.yaml:1:4")]
    assert "undefined alias 'nowhere'" in result.diagnostics[0].message
    assert [(d.index, d.data) for d in result.documents] == [(1, {"b": 2})]


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep = "[" * 70 + "]" * 70
    result = load_text(f"a: {deep}\n", "f.yaml")
    assert [(d.rule, str(d.source), d.message) for d in result.diagnostics] == [
        ("document-depth", f"f.yaml:1:{MAX_DEPTH + 3}", f"document nests deeper than {MAX_DEPTH} levels")
    ]
    block = "".join(f"{'  ' * n}- \n" for n in range(100)) + "  " * 100 + "- x\n"
    assert [d.rule for d in load_text(block, "f.yaml").diagnostics] == ["document-depth"]
    deeper = "[" * 100_000 + "]" * 100_000  # libyaml stops this one itself
    assert [d.rule for d in load_text(deeper, "f.yaml").diagnostics] == ["yaml-syntax"]
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert load_text(f"a: {ok}\n", "f.yaml").diagnostics == []


def test_alias_cannot_nest_past_the_depth_limit() -> None:
    half = MAX_DEPTH // 2 + 1
    text = f"a: &a {'[' * half}{']' * half}\nb: {'[' * half}*a{']' * half}\n"
    assert [d.rule for d in load_text(text, "f.yaml").diagnostics] == ["document-depth"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v: " + "9" * 5000, f"integer of 5,000 digits is too long (at most {MAX_INT_DIGITS})"),
        ("v: 0x" + "f" * 5000, f"integer of 5,002 digits is too long (at most {MAX_INT_DIGITS})"),
        (
            "v: !!binary aGVsbG8=",
            "unsupported tag !!binary: YAML here holds strings, numbers, true/false, lists and mappings",
        ),
        (
            "v: !!timestamp 2024-01-01",
            "unsupported tag !!timestamp: YAML here holds strings, numbers, true/false, lists and mappings",
        ),
        ("v: !!set {a: null}", "unsupported tag !!set on a list or mapping"),
        ("v: !!int twelve", "'twelve' is not a !!int value"),
        ("v: !custom 1", "unsupported tag !custom: YAML here holds strings, numbers, true/false, lists and mappings"),
    ],
)
def test_values_the_loader_cannot_hold(text: str, message: str) -> None:
    result = load_text(text + "\n", "f.yaml")
    assert [(d.rule, str(d.source), d.message) for d in result.diagnostics] == [("yaml-value", "f.yaml:1:4", message)]
    assert result.documents == []


def test_core_tags_convert() -> None:
    assert one("a: !!int '12'\nb: !!str 12\nc: !!float 1\nd: !!bool 'true'\ne: !!null ''\nf: ! 12\n") == {
        "a": 12,
        "b": "12",
        "c": 1.0,
        "d": True,
        "e": None,
        "f": "12",
    }


def test_alias_is_placed_where_it_is_written() -> None:
    document = load_text("a: &x [1, 2]\nb: *x\n", "f.yaml").documents[0]
    assert document.position(["b"]) == Source("f.yaml", 2, 4)
    assert document.position(["b", 1]) == Source("f.yaml", 1, 11)  # inside: where the anchor's items are


def test_positions_in_a_large_mapping_and_its_duplicates() -> None:
    text = "".join(f"k{n}: {n}\n" for n in range(1000)) + "k500: again\n"
    result = load_text(text, "f.yaml")
    document = result.documents[0]
    assert document.position(["k777"]) == Source("f.yaml", 778, 7)
    assert document.position(["k777"], key=True) == Source("f.yaml", 778, 1)
    assert document.data["k500"] == 500
    assert [(d.source, d.message) for d in result.diagnostics] == [
        (Source("f.yaml", 1001, 1), "duplicate key 'k500' (first at line 501)")
    ]


def test_special_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    outcome: list[LoadResult] = []
    reader = threading.Thread(target=lambda: outcome.append(load_file(str(tmp_path / "fifo.yaml"), "fifo.yaml")))
    reader.daemon = True
    reader.start()
    reader.join(10)
    assert outcome, "reading a FIFO blocked"
    assert [(d.rule, d.message) for d in outcome[0].diagnostics] == [
        ("file-unreadable", "a FIFO (named pipe), not a regular file")
    ]
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    zero = load_file(str(tmp_path / "zero.yaml"), "zero.yaml")
    assert [d.message for d in zero.diagnostics] == ["a character device, not a regular file"]
    folder = load_file(str(tmp_path), "dir.yaml")
    assert [d.message for d in folder.diagnostics] == ["a folder, not a regular file"]


def test_size_limit_is_checked_before_and_while_reading(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("a: " + "x" * 200 + "\n")
    big = load_file(str(tmp_path / "big.yaml"), "big.yaml", limit=100)
    assert [d.message for d in big.diagnostics] == ["file of 204 bytes is larger than the limit of 100 bytes"]
    with pytest.raises(ReadError) as raised:  # /proc files say they are empty, then give more
        read_bounded("/proc/self/maps", limit=10)
    assert raised.value.message == "file grows past the limit of 10 bytes"
    assert raised.value.too_large
    assert MAX_FILE_SIZE >= 60 * 1024 * 1024 * 2


def test_a_bad_byte_is_placed_exactly_in_a_large_file(tmp_path: Path) -> None:
    line = "- é€😀 " + "x" * 50 + "\n"  # characters of 2, 3 and 4 bytes fall across the checked slices
    head = line * 40_000  # some 2.6 MB
    (tmp_path / "big.yaml").write_bytes(head.encode() + b"- ab\xffc\n")
    result = load_file(str(tmp_path / "big.yaml"), "big.yaml")
    assert [(d.rule, d.source, d.message) for d in result.diagnostics] == [
        ("yaml-encoding", Source("big.yaml", 40_001, 5), "file is not UTF-8 text (byte 0xff)")
    ]
