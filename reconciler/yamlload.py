"""The one YAML loader: every YAML file the tool reads goes through here.

It parses with libyaml when present, resolves scalars by the YAML 1.2 core schema (so `07:30` stays the
string "07:30" and `on` stays "on", where YAML 1.1 would give 450 and True), reports duplicate keys instead of
silently keeping the last, and keeps each document's node tree so any path can be mapped back to a file
position when a diagnostic needs one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from reconciler.diagnostics import Diagnostic, Source

try:  # the C parser is much faster; the pure-Python one is the fallback
    from yaml._yaml import CParser as _Parser

    LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)

    LIBYAML = False

Path = Sequence[str | int]


class _CoreResolver(BaseResolver):
    """Implicit tags of the YAML 1.2 core schema and nothing more."""


_CoreResolver.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (
        "tag:yaml.org,2002:int",
        r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
        list("-+0123456789"),
    ),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(_regexp), _first)


class _Constructor(SafeConstructor):
    """SafeConstructor with YAML 1.2 integers and duplicate keys reported, not overwritten."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[tuple[Node, Node]] = []

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # pragma: no cover - guarded by the caller
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        mapping: dict[Any, Any] = {}
        first_seen: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a key that is a list or a mapping",
                    key_node.start_mark,
                ) from None
            if key in first_seen:
                self.duplicates.append((key_node, first_seen[key]))
                continue
            first_seen[key] = key_node
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]


class _Loader(_Parser, _Constructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _Constructor.__init__(self)
        _CoreResolver.__init__(self)


def mark_source(file: str, node: Node) -> Source:
    mark = node.start_mark
    return Source(file, mark.line + 1, mark.column + 1)


@dataclass(slots=True)
class Document:
    """One YAML document: its value and the node tree that says where each part came from."""

    file: str
    index: int
    data: Any
    node: Node | None = field(repr=False)
    # values that came from elsewhere (environment overrides): path -> where they came from
    overrides: dict[tuple[str | int, ...], Source] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> Source:
        return self.position(())

    def position(self, path: Path, *, key: bool = False) -> Source:
        """The position of the value at `path`, or of its key with `key=True`.

        A path that leaves the tree (a missing field) gives the position of the deepest node it reached.
        """
        for length in range(len(path), 0, -1) if self.overrides else ():
            override = self.overrides.get(tuple(path[:length]))
            if override is not None:
                return override
        if self.node is None:
            return Source(self.file, 1, 1)
        node = self.node
        key_node: Node | None = None
        for step in path:
            child = _child(node, step)
            if child is None:
                return mark_source(self.file, node)
            key_node, node = child
        if key and key_node is not None:
            return mark_source(self.file, key_node)
        return mark_source(self.file, node)

    def release(self) -> None:
        """Drop the node tree once no more positions will be asked for."""
        self.node = None


def _child(node: Node, step: str | int) -> tuple[Node | None, Node] | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == str(step):
                return key_node, value_node
        return None
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return None, node.value[step]
    return None


@dataclass(slots=True)
class LoadResult:
    documents: list[Document]
    diagnostics: list[Diagnostic]
    digest: str = ""  # sha256 of the file's bytes


def load_text(text: str, file: str) -> LoadResult:
    """Parse every document of `text`; a syntax error stops the file and is the last diagnostic."""
    documents: list[Document] = []
    diagnostics: list[Diagnostic] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        for index in _count():
            if not loader.check_node():
                break
            node = loader.get_node()
            data = loader.construct_document(node)
            documents.append(Document(file, index, data, node))
    except yaml.MarkedYAMLError as error:
        diagnostics.append(_syntax_diagnostic(error, file, text))
    except yaml.YAMLError as error:  # reader errors carry no mark
        diagnostics.append(Diagnostic(Source(file, 1, 1), "yaml-syntax", f"YAML error: {error}"))
    finally:
        if loader is not None:
            loader.dispose()
    for key_node, first in sorted(
        loader.duplicates if loader is not None else (), key=lambda pair: pair[0].start_mark.index
    ):
        where = mark_source(file, first)
        diagnostics.append(
            Diagnostic(
                mark_source(file, key_node),
                "yaml-duplicate-key",
                f"duplicate key '{key_node.value}' (first at line {where.line})",
            )
        )
    return LoadResult(documents, diagnostics)


def load_file(path: str, display: str | None = None) -> LoadResult:
    """Read and parse one file; `display` is the name diagnostics use for it."""
    name = display or path
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        reason = error.strerror or str(error)
        return LoadResult([], [Diagnostic(Source(name), "file-unreadable", f"cannot read file: {reason}")])
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        return LoadResult(
            [],
            [
                Diagnostic(
                    Source(name, line, column),
                    "yaml-encoding",
                    f"file is not UTF-8 text (byte 0x{raw[error.start]:02x})",
                )
            ],
            digest,
        )
    result = load_text(text, name)
    result.digest = digest
    return result


def _count() -> Iterator[int]:
    index = 0
    while True:
        yield index
        index += 1


def _syntax_diagnostic(error: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    source = Source(file, mark.line + 1, mark.column + 1) if mark else Source(file, 1, 1)
    problem = error.problem or "invalid YAML"
    lines = text.splitlines()
    line = lines[source.line - 1] if 0 < source.line <= len(lines) else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in indent or "tab" in problem.lower():
        return Diagnostic(source, "yaml-tab", "tab character in indentation: YAML indents with spaces")
    message = f"YAML syntax error: {problem}"
    if error.context and error.context_mark and error.context_mark is not mark:
        message += f" ({error.context} at line {error.context_mark.line + 1})"
    return Diagnostic(source, "yaml-syntax", message)
