"""The one error tree of reconciler, and the exit code each error maps to.

    ReconcilerError                 exit 1
    +-- UsageError                  exit 64 (command-line usage)
    +-- ConfigError                 exit 7  (reconciler.yaml, missing ${env:...})
    +-- ManifestError               exit 7  (carries every diagnostic found)
    +-- PlanError                   exit 1
    |   +-- GuardError              exit 4  (a guard blocks apply)
    +-- StateError                  exit 1
    |   +-- LockedError             exit 5  (another writer holds the lock)
    |       +-- LockLostError       exit 5  (the lock was taken over during the run)
    +-- ApiError                    exit 1
    |   +-- ApiRequestError         (no answer: connection, timeout; `sent` when the outcome is unknown)
    |   +-- ApiStatusError          (an error answer: status, code, uuid, message)
    |   +-- ApiAnswerError          (an answer that is not what the API documents)
    |   +-- ApiUnavailableError     (a systemic failure stopped the run: unreachable, refused, quota)
    +-- RunInterrupted              exit 130 (Ctrl-C or SIGTERM: the run stopped sending)

The CLI turns these into exit codes through `exit_code_for`, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.diagnostics import Diagnostic


class ExitCode(IntEnum):
    """Exit codes shared by every command (DESIGN.md 3)."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    PARTIAL = 3
    GUARD = 4
    LOCKED = 5
    INVALID = 7
    USAGE = 64
    INTERRUPTED = 130

    @property
    def result(self) -> str:
        """The word JSON outputs carry in their `result` field."""
        return _RESULTS[self]


_RESULTS = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "error",
    ExitCode.CHANGES: "changes",
    ExitCode.PARTIAL: "partial",
    ExitCode.GUARD: "blocked",
    ExitCode.LOCKED: "locked",
    ExitCode.INVALID: "invalid",
    ExitCode.USAGE: "usage",
    ExitCode.INTERRUPTED: "interrupted",
}


class ReconcilerError(Exception):
    """Root of every error the tool reports to its user (no traceback shown)."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ReconcilerError):
    exit_code = ExitCode.USAGE


class InvalidInputError(ReconcilerError):
    """Base of the errors that carry diagnostics with file, line and column."""

    exit_code = ExitCode.INVALID

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class ConfigError(InvalidInputError):
    """reconciler.yaml is unreadable or invalid, or a needed ${env:...} is missing."""


class ManifestError(InvalidInputError):
    """One or more manifests are invalid."""


class PlanError(ReconcilerError):
    pass


class GuardError(PlanError):
    """A guard blocks apply. `plan`: the plan it blocked (a reconciler.plan.Plan), when a plan's guard did."""

    exit_code = ExitCode.GUARD
    plan: object | None = None


class StateError(ReconcilerError):
    pass


class LockedError(StateError):
    exit_code = ExitCode.LOCKED


class LockLostError(LockedError):
    """Another writer took the lock over while this run held it: this run must not save any more."""


class ApiError(ReconcilerError):
    """The Fleet API could not be used for a call."""


class ApiRequestError(ApiError):
    """The request did not get an answer: connection refused or cut, timeout.

    `sent` says whether the API may have received it (a write whose outcome is unknown).
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ApiStatusError(ApiError):
    """The API answered with an error status, and said why in its error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int | None = None,
        uuid: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        detail = f"HTTP {status}" + (f" (code {code})" if code else "") + f": {message}"
        super().__init__(detail + (f" [uuid {uuid}]" if uuid else ""))
        self.status, self.code, self.uuid, self.api_message, self.retry_after = status, code, uuid, message, retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class ApiAnswerError(ApiError):
    """The API answered 2xx with something that is not what it documents (not JSON, a field missing...)."""


class ApiUnavailableError(ApiError):
    """A systemic failure stopped the run: nothing more is sent (the API unreachable, the credentials refused,
    a quota wait longer than api.max_retry_wait, or api.daily_budget spent). `resets_at`: for a quota, when
    sending may start again. `call_sent` as for RunInterrupted."""

    call_sent = True

    def __init__(self, message: str, *, resets_at: datetime | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class RunInterrupted(ReconcilerError):
    """The first Ctrl-C or SIGTERM: the run stops sending; what is in flight finishes and is recorded.

    `call_sent` is False when the call it stopped never had a request sent (the API surely did nothing), True
    when an earlier attempt of it may have reached the API."""

    exit_code = ExitCode.INTERRUPTED
    call_sent = True


def exit_code_for(error: BaseException) -> ExitCode:
    """Map any exception to the exit code the CLI returns."""
    if isinstance(error, ReconcilerError):
        return error.exit_code
    return ExitCode.ERROR
