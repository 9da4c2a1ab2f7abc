"""The one YAML loader: every YAML file the tool reads goes through here.

It parses with libyaml when present, resolves scalars by the YAML 1.2 core schema (so `07:30` stays the
string "07:30" and `on` stays "on", where YAML 1.1 would give 450 and True), reports duplicate keys instead of
silently keeping the last, and keeps a compact index of where each value was written, so any path can be
mapped back to a file position when a diagnostic needs one.

Values are built straight from the parser's events, never from a node tree: a node per value with its two
marks costs several hundred bytes and keeps the garbage collector busy, which made a 60 MB manifest take
gigabytes. Hostile input is bounded here, before anything walks the values: aliases may add at most
MAX_ALIAS_VALUES values to a document (an alias bomb of a few hundred bytes would otherwise expand to
billions), an alias may not refer to the value that contains it, nesting stops at MAX_DEPTH, integers at
MAX_INT_DIGITS digits, files at MAX_FILE_SIZE bytes, and only regular files are read (a FIFO would block
forever, /dev/zero never ends).

Longer than most modules, on purpose: the event builder, its position index and its bounds are one
mechanism; split apart, the bounds could be bypassed by a path that builds values without them.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import math
import os
import re
import stat
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from reconciler.diagnostics import Diagnostic, Source, clip

try:  # the C parser is much faster; the pure-Python one is the fallback
    from yaml._yaml import CParser as _Parser

    LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str | bytes) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

    LIBYAML = False

Path = Sequence[str | int]

MAX_FILE_SIZE = 128 * 1024 * 1024  # bytes; a fleet of millions of vehicles is some 60 MB of YAML
MAX_DEPTH = 64  # nested lists and mappings; manifests need 5, the vendor's OpenAPI file 16
MAX_ALIAS_VALUES = 100_000  # values aliases may add to one document
MAX_INT_DIGITS = 100

_CORE = "tag:yaml.org,2002:"
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
# a plain scalar starting with any other character is a string (the fast path for names and VINs)
_RESOLVED_FIRST = frozenset("~nNtTfF-+.0123456789")


def _packed(mark: Any) -> int:
    return int(mark.line) << 32 | int(mark.column)


def _source(file: str, packed: int) -> Source:
    return Source(file, (packed >> 32) + 1, (packed & 0xFFFFFFFF) + 1)


class _SeqIndex:
    """Where a list and each of its items were written (children: the items that are lists or mappings)."""

    __slots__ = ("children", "items", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.items = array("q")
        self.children: dict[int, _SeqIndex | _MapIndex] = {}


class _MapIndex:
    """Where a mapping and each of its keys and values were written, in the order the keys came."""

    __slots__ = ("_lookup", "children", "keys", "marks", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.keys: list[Any] = []
        self.marks = array("q")  # key position, value position, for each key
        self.children: dict[Any, _SeqIndex | _MapIndex] = {}
        self._lookup: dict[Any, int] | None = None

    def add(self, key: Any, key_at: int, value_at: int, child: _SeqIndex | _MapIndex | int) -> None:
        if self._lookup is not None:
            self._lookup[key] = len(self.keys)
        self.keys.append(key)
        self.marks.append(key_at)
        self.marks.append(value_at)
        if type(child) is not int:
            self.children[key] = child  # type: ignore[assignment]

    def find(self, key: Any) -> int | None:
        """The number of `key` among the keys; small mappings are scanned, large ones get an index once."""
        if self._lookup is None:
            if len(self.keys) <= 16:
                for number, known in enumerate(self.keys):
                    if known == key:
                        return number
                return None
            self._lookup = {known: number for number, known in enumerate(self.keys)}
        return self._lookup.get(key)


_Index = _SeqIndex | _MapIndex | int  # an int: a scalar's packed position


@dataclass(slots=True)
class Document:
    """One YAML document: its value and the index that says where each part came from."""

    file: str
    index: int
    data: Any
    where: _Index | None = field(repr=False)
    # values that came from elsewhere (environment overrides): path -> where they came from
    overrides: dict[tuple[str | int, ...], Source] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> Source:
        return self.position(())

    def position(self, path: Path, *, key: bool = False) -> Source:
        """The position of the value at `path`, or of its key with `key=True`.

        A path that leaves the tree (a missing field) gives the position of the deepest value it reached.
        """
        for length in range(len(path), 0, -1) if self.overrides else ():
            override = self.overrides.get(tuple(path[:length]))
            if override is not None:
                return override
        if self.where is None:
            return Source(self.file, 1, 1)
        node: _Index | None = self.where
        at = self.where if isinstance(self.where, int) else self.where.start
        key_at: int | None = None
        for step in path:
            if isinstance(node, _MapIndex):
                number = node.find(step)
                if number is None:
                    break
                key_at, at = node.marks[2 * number], node.marks[2 * number + 1]
                node = node.children.get(node.keys[number])
            elif isinstance(node, _SeqIndex) and type(step) is int and 0 <= step < len(node.items):
                key_at, at = None, node.items[step]
                node = node.children.get(step)
            else:
                break
        else:
            if key and key_at is not None:
                return _source(self.file, key_at)
        return _source(self.file, at)

    def release(self) -> None:
        """Drop the position index once no more positions will be asked for."""
        self.where = None


@dataclass(slots=True)
class LoadResult:
    documents: list[Document]
    diagnostics: list[Diagnostic]
    digest: str = ""  # sha256 of the file's bytes


class _Problem(Exception):
    """A document the loader refuses; the rest of the file is still read."""

    def __init__(self, packed: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.packed, self.rule, self.message = packed, rule, message


class _Frame:
    """A list or mapping being built, with what the limits need to know about it."""

    __slots__ = ("anchor", "height", "index", "is_map", "key", "key_at", "skip", "start", "value", "weight")

    def __init__(self, value: list[Any] | dict[Any, Any], index: _SeqIndex | _MapIndex, anchor: str | None) -> None:
        self.value = value
        self.index = index
        self.is_map = isinstance(value, dict)
        self.anchor = anchor
        self.start = index.start
        self.weight = 1  # values in it, counting what aliases repeat
        self.height = 1  # levels of nesting in it
        self.key: Any = _NO_KEY
        self.key_at = 0
        self.skip = False  # the value of a duplicate key: parsed, not kept


_NO_KEY = object()


@dataclass(frozen=True, slots=True)
class _Anchor:
    value: Any
    index: _Index
    weight: int
    height: int
    at: int


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _number(text: str, as_float: bool) -> int | float:
    if not as_float:
        digits = text.lstrip("+-")
        if len(digits) > MAX_INT_DIGITS:
            raise ValueError(f"integer of {len(digits):,} digits is too long (at most {MAX_INT_DIGITS})")
        if digits.startswith("0o"):
            return int(digits[2:], 8)
        if digits.startswith("0x"):
            return int(digits[2:], 16)
        return int(text, 10)
    lowered = text.lower()
    if lowered.endswith(".nan"):
        return math.nan
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    return float(text)


def _plain(text: str) -> Any:
    """A plain scalar by the YAML 1.2 core schema."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.fullmatch(text):
        return _number(text, False)
    if _FLOAT.fullmatch(text):
        return _number(text, True)
    return text


def _tagged(text: str, tag: str) -> Any:
    """A scalar with an explicit tag: the core schema's, holding a value of that type."""
    if tag == "!" or tag == _CORE + "str":
        return text
    value = _plain(text)
    expected: dict[str, Callable[[Any], bool]] = {
        _CORE + "null": lambda v: v is None,
        _CORE + "bool": lambda v: type(v) is bool,
        _CORE + "int": lambda v: type(v) is int,
        _CORE + "float": lambda v: type(v) in (int, float),
    }
    check = expected.get(tag)
    if check is None:
        raise ValueError(
            f"unsupported tag {clip(_tag_name(tag))}: YAML here holds strings, numbers, true/false, lists and mappings"
        )
    if not check(value):
        raise ValueError(f"'{clip(text)}' is not a {_tag_name(tag)} value")
    return float(value) if tag == _CORE + "float" else value


def _compose_document(get_event: Callable[[], Any], file: str, number: int, found: list[Diagnostic]) -> Document | None:
    """Build one document from the parser's events, up to and including its DocumentEndEvent."""
    stack: list[_Frame] = []
    anchors: dict[str, _Anchor] = {}
    building: set[str] = set()  # anchors of lists and mappings not closed yet
    added = 0  # values aliases added to the document
    root: tuple[Any, _Index] | None = None
    try:
        while True:
            event = get_event()
            kind = type(event)
            child: _Index
            if kind is ScalarEvent:
                value = event.value
                tag = event.tag
                mark = event.start_mark
                at = mark.line << 32 | mark.column
                if tag is not None or (event.implicit[0] and (not value or value[0] in _RESOLVED_FIRST)):
                    try:
                        value = _tagged(value, tag) if tag is not None else _plain(value)
                    except ValueError as error:
                        raise _Problem(at, "yaml-value", str(error)) from None
                if event.anchor is not None:
                    anchors[event.anchor] = _Anchor(value, at, 1, 0, at)
                child, weight, height, text = at, 1, 0, event.value
            elif kind is SequenceStartEvent or kind is MappingStartEvent:
                at = _packed(event.start_mark)
                tag = event.tag
                if tag not in (None, "!", _CORE + ("map" if kind is MappingStartEvent else "seq")):
                    raise _Problem(at, "yaml-value", f"unsupported tag {clip(_tag_name(tag))} on a list or mapping")
                if len(stack) >= MAX_DEPTH:
                    raise _Problem(at, "document-depth", f"document nests deeper than {MAX_DEPTH} levels")
                if event.anchor is not None:
                    building.add(event.anchor)
                if kind is MappingStartEvent:
                    stack.append(_Frame({}, _MapIndex(at), event.anchor))
                else:
                    stack.append(_Frame([], _SeqIndex(at), event.anchor))
                continue
            elif kind is SequenceEndEvent or kind is MappingEndEvent:
                frame = stack.pop()
                value, child, weight, height, at, text = (
                    frame.value,
                    frame.index,
                    frame.weight,
                    frame.height,
                    frame.start,
                    "",
                )
                if frame.anchor is not None:
                    building.discard(frame.anchor)
                    anchors[frame.anchor] = _Anchor(value, child, weight, height, at)
            elif kind is AliasEvent:
                at = _packed(event.start_mark)
                name = event.anchor
                if name in building:
                    raise _Problem(
                        at,
                        "yaml-aliases",
                        f"alias *{clip(name)} is inside the value it names: it would repeat without end",
                    )
                anchor = anchors.get(name)
                if anchor is None:
                    raise _Problem(at, "yaml-syntax", f"YAML syntax error: found undefined alias '{clip(name)}'")
                added += anchor.weight
                if added > MAX_ALIAS_VALUES:
                    raise _Problem(
                        at,
                        "yaml-aliases",
                        f"aliases add more than {MAX_ALIAS_VALUES:,} values to this document: *{clip(name)} "
                        f"repeats the {anchor.weight:,} values of &{clip(name)} "
                        f"(line {(anchor.at >> 32) + 1}); write the values out instead",
                    )
                if len(stack) + anchor.height > MAX_DEPTH:
                    raise _Problem(at, "document-depth", f"document nests deeper than {MAX_DEPTH} levels")
                value, child, weight, height, text = anchor.value, anchor.index, anchor.weight, anchor.height, ""
            elif kind is DocumentEndEvent:
                data, where = root if root is not None else (None, None)
                return Document(file, number, data, where)
            else:  # pragma: no cover - the parser sends no other event inside a document
                continue

            if not stack:
                root = (value, child)
                continue
            parent = stack[-1]
            parent.weight += weight
            if height >= parent.height:
                parent.height = height + 1
            if not parent.is_map:
                items: list[Any] = parent.value  # type: ignore[assignment]
                index: _SeqIndex = parent.index  # type: ignore[assignment]
                if type(child) is not int:
                    index.children[len(items)] = child  # type: ignore[assignment]
                items.append(value)
                index.items.append(at)
            elif parent.key is _NO_KEY:
                _take_key(parent, value, at, text, file, found)
            else:
                if not parent.skip:
                    parent.value[parent.key] = value
                    parent.index.add(parent.key, parent.key_at, at, child)  # type: ignore[union-attr]
                parent.key = _NO_KEY
                parent.skip = False
    except _Problem as problem:
        found.append(Diagnostic(_source(file, problem.packed), problem.rule, problem.message))
        _skip_document(get_event)
        return None


def _take_key(frame: _Frame, key: Any, at: int, text: str, file: str, found: list[Diagnostic]) -> None:
    if isinstance(key, list | dict):
        raise _Problem(at, "yaml-syntax", "YAML syntax error: found a key that is a list or a mapping")
    mapping: dict[Any, Any] = frame.value  # type: ignore[assignment]
    frame.key, frame.key_at, frame.skip = key, at, key in mapping
    if frame.skip:
        index: _MapIndex = frame.index  # type: ignore[assignment]
        number = index.find(key)
        first = index.marks[2 * number] if number is not None else at
        found.append(
            Diagnostic(
                _source(file, at),
                "yaml-duplicate-key",
                f"duplicate key '{clip(text or str(key))}' (first at line {(first >> 32) + 1})",
            )
        )


def _skip_document(get_event: Callable[[], Any]) -> None:
    """Read past the rest of a refused document (a syntax error on the way still stops the file)."""
    while not isinstance(get_event(), DocumentEndEvent):
        pass


def load_text(text: str | bytes, file: str) -> LoadResult:
    """Parse every document of `text`; a syntax error stops the file and is the last diagnostic."""
    documents: list[Document] = []
    diagnostics: list[Diagnostic] = []
    parser = _Parser(text)
    try:
        get_event = parser.get_event
        get_event()  # StreamStartEvent
        for number in itertools.count():
            if isinstance(parser.peek_event(), StreamEndEvent):
                break
            get_event()  # DocumentStartEvent
            document = _compose_document(get_event, file, number, diagnostics)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        diagnostics.append(_syntax_diagnostic(error, file, text))
    except yaml.YAMLError as error:  # reader errors carry no mark
        diagnostics.append(Diagnostic(Source(file, 1, 1), "yaml-syntax", f"YAML error: {clip(str(error), 200)}"))
    finally:
        parser.dispose()
    return LoadResult(documents, diagnostics)


class ReadError(Exception):
    """A file that cannot be read safely: `too_large` says whether its size is the reason."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message, self.too_large = message, too_large


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"  # pragma: no cover - doors and whiteouts


def size_words(size: int) -> str:
    return f"{size / 1024 / 1024:,.0f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def read_bounded(path: str, limit: int = MAX_FILE_SIZE) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ReadError otherwise.

    The type is checked before opening (opening a tape device can rewind it) and again on the open file (it
    may have been swapped); O_NONBLOCK keeps a FIFO swapped in meanwhile from blocking the open, and the read
    stops past `limit` whatever the file claims its size is.
    """
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise ReadError(f"{file_kind(before.st_mode)}, not a regular file")
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise ReadError(f"{file_kind(info.st_mode)}, not a regular file")
            if info.st_size > limit:
                raise ReadError(
                    f"file of {size_words(info.st_size)} is larger than the limit of {size_words(limit)}",
                    too_large=True,
                )
            chunks: list[bytes] = []
            total = 0
            want = info.st_size + 1  # the whole file in one read (and one copy), then the end
            while chunk := os.read(descriptor, min(max(want, 65536), limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise ReadError(f"file grows past the limit of {size_words(limit)}", too_large=True)
                want = 1024 * 1024
        finally:
            os.close(descriptor)
    except OSError as error:
        raise ReadError(f"cannot read file: {error.strerror or error}") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def load_bytes(raw: bytes, file: str) -> LoadResult:
    """Check that `raw` is UTF-8 and parse it; the result carries the sha256 of the bytes."""
    digest = hashlib.sha256(raw).hexdigest()
    bad = _first_bad_byte(raw)
    if bad is not None:
        line = raw.count(b"\n", 0, bad) + 1
        column = bad - (raw.rfind(b"\n", 0, bad) + 1) + 1
        message = f"file is not UTF-8 text (byte 0x{raw[bad]:02x})"
        return LoadResult([], [Diagnostic(Source(file, line, column), "yaml-encoding", message)], digest)
    result = load_text(raw, file)
    result.digest = digest
    return result


def _first_bad_byte(raw: bytes) -> int | None:
    """Where `raw` stops being UTF-8, or None. The parser decodes by itself: this checks a slice at a time,
    so a large file is never held as text too (up to four bytes a character)."""
    if raw.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1024 * 1024
    for offset in range(0, len(raw), step):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous slice
        try:
            decoder.decode(raw[offset : offset + step], final=offset + step >= len(raw))
        except UnicodeDecodeError as error:
            return offset - pending + error.start
    return None


def load_file(path: str, display: str | None = None, *, limit: int = MAX_FILE_SIZE) -> LoadResult:
    """Read and parse one file; `display` is the name diagnostics use for it."""
    name = display or path
    try:
        raw = read_bounded(path, limit)
    except ReadError as error:
        return LoadResult([], [Diagnostic(Source(name), "file-unreadable", error.message)])
    return load_bytes(raw, name)


def _line(text: str | bytes, number: int) -> str:
    """Line `number` (from 1) of `text`, found without splitting a large file into lines."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    start = 0
    for _ in range(number - 1):
        start = raw.find(b"\n", start) + 1
        if start == 0:
            return ""
    end = raw.find(b"\n", start)
    return raw[start : end if end >= 0 else len(raw)].decode("utf-8", "replace")


def _syntax_diagnostic(error: yaml.MarkedYAMLError, file: str, text: str | bytes) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    source = Source(file, mark.line + 1, mark.column + 1) if mark else Source(file, 1, 1)
    problem = clip(error.problem or "invalid YAML", 200)
    line = _line(text, source.line) if source.line > 0 else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in indent or "tab" in problem.lower():
        return Diagnostic(source, "yaml-tab", "tab character in indentation: YAML indents with spaces")
    message = f"YAML syntax error: {problem}"
    if error.context and error.context_mark and error.context_mark is not mark:
        message += f" ({clip(error.context, 200)} at line {error.context_mark.line + 1})"
    return Diagnostic(source, "yaml-syntax", message)
