"""The one interface every state backend offers; the rest of the code does not know which one it talks to.

A writer (apply, refresh, import, state rm) takes the lock, loads, works, appends its journal as it goes,
saves with the serial it loaded (so a lost update is refused, not silently merged), then releases the lock.
Readers (plan, show) only load. The webhook receiver only appends events, which writers fold in.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from reconciler.clock import isotime, parse_time, utcnow
from reconciler.state.model import State

LOCK_TTL = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds the writers' lock, and until when unless renewed."""

    id: str
    holder: str
    host: str
    pid: int
    command: str
    started: str
    expires: str

    UNREADABLE: ClassVar[str] = "unreadable"

    @classmethod
    def unreadable(cls, since: str) -> LockInfo:
        """A lock file that holds no readable lock (its writer was killed while taking it): expired at once."""
        return cls(cls.UNREADABLE, "unknown", "unknown", 0, "unknown", since, since)

    @classmethod
    def for_this_process(cls, command: str, ttl: timedelta = LOCK_TTL) -> LockInfo:
        now = utcnow()
        try:
            holder = getpass.getuser()
        except (KeyError, OSError):  # pragma: no cover - no user name in some containers
            holder = str(os.getuid())
        return cls(
            str(uuid.uuid4()), holder, socket.gethostname(), os.getpid(), command, isotime(now), isotime(now + ttl)
        )

    def renewed(self, ttl: timedelta = LOCK_TTL) -> LockInfo:
        """The same holder, expiring `ttl` from now."""
        return LockInfo(self.id, self.holder, self.host, self.pid, self.command, self.started, isotime(utcnow() + ttl))

    def expired(self, now: datetime | None = None) -> bool:
        return parse_time(self.expires) <= (now or utcnow())

    def holder_is_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # pragma: no cover - alive, another user's
            return False
        return False

    def describe(self) -> str:
        if self.id == self.UNREADABLE:
            return f"an unreadable lock file (a writer killed while taking the lock) since {self.started}"
        return (
            f"held by {self.holder}@{self.host} (pid {self.pid}) running '{self.command}' since {self.started}, "
            f"expires {self.expires} unless renewed; lock id {self.id}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        data = json.loads(text)
        fields = {key: data[key] for key in ("id", "holder", "host", "pid", "command", "started", "expires")}
        if type(fields["pid"]) is not int or any(type(fields[key]) is not str for key in fields if key != "pid"):
            raise TypeError("a lock field has the wrong type")
        parse_time(fields["expires"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Version:
    """One saved version of the state: `state history` lists them."""

    serial: int
    lineage: str
    saved_at: str
    writer: str  # the command and holder of the lock that saved it, when known


class StateBackend(Protocol):
    """Storage for one fleet's state, lock, journal and events."""

    @property
    def name(self) -> str:
        """Where the state lives, for messages."""
        ...

    def load(self) -> State | None:
        """The saved state, or None when there is none yet. StateError when it cannot be trusted."""
        ...

    def save(
        self,
        state: State,
        expected_serial: int | None,
        lock: str | None = None,
        serial: int | None = None,
        force: bool = False,
    ) -> int:
        """Save `state` as the successor of serial `expected_serial` (None: no state yet); return the new serial
        (`serial` when given and higher than the next one: `state push` keeps the serial of what it pushes).

        StateError when the stored serial or lineage moved since it was loaded (`force`: a state of another
        lineage may replace it, as `state push --force` asks); LockLostError when `lock` (the id of the lock the
        writer took) no longer holds the lock: another run took it over.
        """
        ...

    def history(self, limit: int = 20) -> list[Version]:
        """The versions of the state kept, newest first."""
        ...

    def signature(self) -> Hashable:
        """A token that changes whenever the saved state or the journal does (what a reader caches against)."""
        ...

    def acquire_lock(self, info: LockInfo) -> None:
        """Take the writers' lock, or LockedError saying who holds it. An expired lock is taken over."""
        ...

    def renew_lock(self, info: LockInfo) -> None:
        """Extend the lock we hold; LockLostError when it is no longer ours."""
        ...

    def release_lock(self, lock_id: str) -> None:
        """Give up the lock if `lock_id` still holds it."""
        ...

    def current_lock(self) -> LockInfo | None: ...

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the lock with this id whoever holds it (`state unlock`); StateError if it is not the current one."""
        ...

    def claim_lease(self, info: LockInfo, ttl: timedelta) -> LockInfo:
        """The controller's leader lease (`serve`), apart from the writers' lock: taken when free, expired or
        its holder's process is gone, renewed for `ttl` when `info` already holds it. Returns who holds it now:
        `info` (renewed) when this process leads, else the other holder."""
        ...

    def release_lease(self, lease_id: str) -> None:
        """Give up the leader lease if `lease_id` still holds it (another replica takes over at once)."""
        ...

    def append_journal(self, entries: Sequence[dict[str, Any]], wait: bool = True) -> None:
        """Durably append entries before and after API calls: once they are durable (fsync, commit) when
        `wait`; else with the next batch that waits (a call's result, whose loss costs a lookup on the API)."""
        ...

    def read_journal(self) -> list[dict[str, Any]]: ...

    def clear_journal(self) -> None:
        """Drop journal entries once a saved state holds them."""
        ...

    def append_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Durably record outcome events (webhook, polling); safe alongside a writer."""
        ...

    def read_events(self) -> list[Any]:
        """Every recorded entry, as written: folding checks each one's shape (anything may be in the file)."""
        ...

    def replace_events(self, count: int, kept: Sequence[dict[str, Any]]) -> None:
        """Once a saved state holds them: drop the first `count` entries the last `read_events` returned, and keep
        `kept` instead (what folding set aside, flagged). Entries recorded since that read are never touched."""
        ...
