"""`${env:NAME}` references in settings and manifests.

A value that uses a reference is sensitive: it is resolved when loaded, kept out of every repr, and a
missing variable is only an error for the commands that need that value (`validate` just warns).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.diagnostics import Diagnostic, Severity, Source
from reconciler.errors import ConfigError

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
SENSITIVE = "(sensitive)"  # what people see in place of a sensitive value
SENSITIVE_CHANGED = "(sensitive, changed)"  # ... and in place of one that changed


@dataclass(frozen=True, slots=True)
class EnvValue:
    """A string as written (`raw`) and as resolved (`value`, None while a variable it names is unset)."""

    raw: str
    value: str | None = field(repr=False)
    source: Source
    missing: tuple[str, ...] = ()

    @property
    def sensitive(self) -> bool:
        return ENV_REF.search(self.raw) is not None

    def __repr__(self) -> str:
        shown = SENSITIVE if self.sensitive else repr(self.raw)
        return f"EnvValue({shown}, source={self.source})"

    def missing_diagnostic(self, what: str, severity: Severity = Severity.ERROR) -> Diagnostic:
        names = ", ".join(self.missing)
        plural = "s" if len(self.missing) > 1 else ""
        return Diagnostic(
            self.source,
            "env-missing",
            f"{what}: environment variable{plural} {names} not set",
            severity,
        )

    def require(self, what: str) -> str:
        """The resolved value; a ConfigError naming the variable and position when one is unset."""
        if self.value is None:
            raise ConfigError([self.missing_diagnostic(what)])
        return self.value


def resolve(raw: str, source: Source, environ: Mapping[str, str]) -> EnvValue | Diagnostic:
    """Resolve every `${env:NAME}` in `raw`; a malformed reference is a Diagnostic."""
    if "${" not in raw:
        return EnvValue(raw, raw, source)
    leftover = ENV_REF.sub("", raw)
    if "${" in leftover:
        bad = leftover[leftover.index("${") :].split("}")[0] + "}"
        return Diagnostic(
            source,
            "env-syntax",
            f"malformed reference '{bad[:40]}': write ${{env:NAME}} with a variable name",
        )
    missing = tuple(dict.fromkeys(name for name in ENV_REF.findall(raw) if name not in environ))
    if missing:
        return EnvValue(raw, None, source, missing)
    return EnvValue(raw, ENV_REF.sub(lambda m: environ[m.group(1)], raw), source)
