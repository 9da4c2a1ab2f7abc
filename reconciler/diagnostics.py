"""Diagnostics: one finding about the user's input, tied to a file position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.errors import ExitCode

# no value a user wrote may make a message unbounded: values are clipped, and a message is cut past this
MAX_MESSAGE = 2000


def clip(text: str, limit: int = 60) -> str:
    """`text` as a message shows it: at most `limit` characters, cut ones marked by "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Source:
    """A position in a user's file; line and column count from 1."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    source: Source
    rule: str
    message: str
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE:
            object.__setattr__(self, "message", self.message[: MAX_MESSAGE - 12] + " (truncated)")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """`file:line:col: message`, with `warning: ` before the message of a warning."""
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.source}: {prefix}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source.file,
            "line": self.source.line,
            "column": self.source.column,
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
        }


def sort_key(diagnostic: Diagnostic) -> tuple[Source, str, str]:
    return (diagnostic.source, diagnostic.rule, diagnostic.message)


@dataclass(frozen=True, slots=True)
class Report:
    """What `validate` found, ready to render."""

    diagnostics: Sequence[Diagnostic]
    exit_code: ExitCode
    summary: dict[str, int]
