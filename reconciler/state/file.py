"""The file backend: state.json written atomically beside its .backup, .lock, .journal and .events.

Every file is read only when it is a regular file (a FIFO or a device in its place is refused, never waited
on); a corrupt file is refused with a message, never rewritten; temporary files a killed save left behind are
removed by the next writer.

Longer than most modules, on purpose: the file backend is one protocol (state/backend.py) over one folder, and
its lock, journal, events and lease files share the same rules for reading and writing safely.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
import uuid
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.atomic import sync_directory, temporary, write_atomic, write_synced
from reconciler.bulk import collector_paused
from reconciler.clock import isotime, utcnow
from reconciler.errors import LockedError, LockLostError, StateError
from reconciler.state.backend import LockInfo, Version
from reconciler.state.commit import GroupCommit
from reconciler.state.model import State

STALE_TEMP = 60.0  # seconds after which a temporary lock file is a leftover, not a writer taking the lock


class FileBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup = path.with_name(path.name + ".backup")
        self.lock_path = path.with_name(path.name + ".lock")
        self.journal_path = path.with_name(path.name + ".journal")
        self.events_path = path.with_name(path.name + ".events")
        self.lease_path = path.with_name(path.name + ".lease")
        self._journal = GroupCommit(self._write_journal, f"the journal {self.journal_path}")
        self._journal_fd: int | None = None  # kept open: one writer process owns the journal (it holds the lock)
        # (file signature, lineage, serial) of the last state this backend saved or loaded
        self._written: tuple[tuple[int, int, int] | None, str, int] | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    # ---- state ------------------------------------------------------------------------------------------

    def load(self) -> State | None:
        signature = _signature(self.path)  # before reading: a file replaced meanwhile will not match it
        raw = _read_regular(self.path, "state")
        if raw is None:
            return None
        with collector_paused():
            state = self._decode(raw)
        # saving over what was loaded need not read it again (a large state takes half a second to read)
        self._written = (signature, state.lineage, state.serial)
        return state

    def _decode(self, raw: bytes) -> State:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise StateError(f"{self.path} is corrupt (not JSON: {str(error)[:200]}){self._backup_hint()}") from error
        try:
            return State.from_dict(data, str(self.path))
        except StateError as error:
            if "is corrupt" not in str(error):
                raise  # not ours, or newer: nothing to restore
            raise StateError(f"{error}{self._backup_hint()}") from error

    def _backup_hint(self) -> str:
        if self.backup.is_file():
            return f"; the previous version is in {self.backup}: check it, then copy it over {self.path.name}"
        return ""

    def save(
        self,
        state: State,
        expected_serial: int | None,
        lock: str | None = None,
        serial: int | None = None,
        force: bool = False,
    ) -> int:
        if lock is not None:
            holder = self._read_lock()
            if holder is None or holder.id != lock:
                raise LockLostError(
                    f"the lock on {self.path} was taken over by another run "
                    f"({holder.describe() if holder else 'now released'}); nothing saved"
                )
        current = self._current(state, expected_serial)
        if current is not None:
            if expected_serial is None or (current.lineage != state.lineage and not force):
                raise StateError(
                    f"{self.path} now holds lineage {current.lineage}, not {state.lineage}: another state was "
                    "written here; nothing saved"
                )
            if current.serial != expected_serial:
                raise StateError(
                    f"{self.path} moved to serial {current.serial} since serial {expected_serial} was loaded; "
                    "nothing saved"
                )
        elif expected_serial is not None:
            raise StateError(f"{self.path} disappeared since serial {expected_serial} was loaded; nothing saved")
        following = current.serial + 1 if current is not None else 1
        state.serial = max(following, serial or 0)
        payload = state.to_json().encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = temporary(self.path)
        try:
            write_synced(temp, payload)
            if current is not None and self.path.exists():
                # keep the previous version; state.json itself is never absent
                staged = temporary(self.backup)
                os.link(self.path, staged)
                os.replace(staged, self.backup)
            os.replace(temp, self.path)
            sync_directory(self.path.parent)
            self._written = (_signature(self.path), state.lineage, state.serial)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return state.serial

    def _current(self, state: State, expected_serial: int | None) -> State | None:
        """What the file holds now; when it is still exactly what this backend last wrote, that is known
        without reading it again (a long apply saves a large state many times)."""
        written = self._written
        if written is not None and written[0] == _signature(self.path) and expected_serial == written[2]:
            known = State(lineage=written[1], serial=written[2], fleet=state.fleet, salt=state.salt)
            return known
        return self.load()  # refuses to overwrite a corrupt, foreign or newer file

    # ---- lock -------------------------------------------------------------------------------------------

    def current_lock(self) -> LockInfo | None:
        return self._read_lock()

    def _read_lock(self) -> LockInfo | None:
        """The lock's holder; an empty or garbled lock file (a writer killed while taking it, before locks were
        written whole) reads as an expired lock with the id `unreadable`, for the next writer to take over."""
        try:
            raw = _read_regular(self.lock_path, "lock")
        except StateError:
            raw = b""
        if raw is None:
            return None
        try:
            return LockInfo.from_json(raw.decode())
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            try:
                since = isotime(_mtime(self.lock_path))
            except FileNotFoundError:
                return None
            return LockInfo.unreadable(since)

    def acquire_lock(self, info: LockInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            # written whole to a temporary file, then linked into place: a lock file is never seen half-written
            temp = temporary(self.lock_path)
            write_synced(temp, info.to_json().encode())
            try:
                os.link(temp, self.lock_path)
            except FileExistsError:
                holder = self._read_lock()
                if holder is None:
                    continue  # released meanwhile
                if not (holder.expired() or holder.holder_is_gone()):
                    raise LockedError(
                        f"state {self.path} is locked: {holder.describe()}. If that run is gone, wait for the lock "
                        f"to expire or run `reconciler state unlock {holder.id}`"
                    ) from None
                self._take_over(holder)
                continue
            finally:
                temp.unlink(missing_ok=True)
            sync_directory(self.lock_path.parent)
            self._clean_leftovers()
            return
        raise LockedError(f"state {self.path}: could not take the lock (other writers keep taking it)")

    def _take_over(self, expired: LockInfo) -> None:
        aside = self.lock_path.with_name(f".{self.lock_path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.lock_path, aside)
        except FileNotFoundError:
            return
        try:
            try:
                moved_id = LockInfo.from_json(aside.read_text()).id
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
                moved_id = LockInfo.UNREADABLE
            if moved_id != expired.id:  # another writer took it over first: give it back
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.lock_path)
        finally:
            aside.unlink()

    def _clean_leftovers(self) -> None:
        """Temporary files of saves killed midway (only a lock holder saves, and we hold it now)."""
        now = time.time()
        for leftover in self.path.parent.glob(f".{self.path.name}*.tmp"):
            is_lock = leftover.name.startswith(f".{self.lock_path.name}.")
            with contextlib.suppress(OSError):
                if not is_lock or now - leftover.stat().st_mtime > STALE_TEMP:
                    leftover.unlink()

    def renew_lock(self, info: LockInfo) -> None:
        holder = self._read_lock()
        if holder is None or holder.id != info.id:
            raise LockLostError(f"lost the lock on {self.path}: it was released or taken over")
        write_atomic(self.lock_path, info.to_json().encode())

    def release_lock(self, lock_id: str) -> None:
        holder = self._read_lock()
        if holder is not None and holder.id == lock_id:
            self.lock_path.unlink(missing_ok=True)

    def force_unlock(self, lock_id: str) -> LockInfo:
        holder = self._read_lock()
        if holder is None:
            raise StateError(f"state {self.path} is not locked")
        if holder.id != lock_id:
            raise StateError(f"lock id {lock_id} does not hold state {self.path}; it is {holder.describe()}")
        self.lock_path.unlink(missing_ok=True)
        return holder

    # ---- the controller's leader lease ------------------------------------------------------------------

    def claim_lease(self, info: LockInfo, ttl: timedelta) -> LockInfo:
        """Read and rewritten in place under an exclusive flock, so two processes of one host never both take
        it; what cannot be read (a holder killed while writing) counts as expired."""
        self.lease_path.parent.mkdir(parents=True, exist_ok=True)
        with _flocked(self.lease_path) as descriptor:
            holder = _lease(os.pread(descriptor, 64 * 1024, 0))
            if holder is not None and holder.id != info.id and not holder.expired() and not holder.holder_is_gone():
                return holder
            mine = info.renewed(ttl) if holder is not None and holder.id == info.id else _fresh(info, ttl)
            payload = mine.to_json().encode()
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, payload, 0)
            os.fsync(descriptor)
            return mine

    def release_lease(self, lease_id: str) -> None:
        if not self.lease_path.exists():
            return
        with _flocked(self.lease_path) as descriptor:
            holder = _lease(os.pread(descriptor, 64 * 1024, 0))
            if holder is not None and holder.id == lease_id:
                os.ftruncate(descriptor, 0)
                os.fsync(descriptor)

    # ---- journal and events: JSON lines, appended with fsync ---------------------------------------------

    def append_journal(self, entries: Sequence[dict[str, Any]], wait: bool = True) -> None:
        self._journal.append(entries, wait)

    def read_journal(self) -> list[dict[str, Any]]:
        entries, bad = _read_lines(self.journal_path, "journal")
        if bad:
            raise StateError(
                f"{self.journal_path} is corrupt: line {bad[0]} is not a journal entry. It holds the calls of a run "
                "that did not finish: check it, then remove the bad lines (or the file, to forget those calls)"
            )
        return entries

    def _write_journal(self, entries: list[dict[str, Any]]) -> None:
        payload = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in entries).encode()
        if self._journal_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._journal_fd).st_size
        if size and os.pread(self._journal_fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a line cut short by a crash must not swallow this one
        os.write(self._journal_fd, payload)
        os.fsync(self._journal_fd)

    def clear_journal(self) -> None:
        self._journal.discard()
        with self._journal.condition:  # not while a batch is being written
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
        self.journal_path.unlink(missing_ok=True)

    def append_events(self, events: Sequence[dict[str, Any]]) -> None:
        _append_lines(self.events_path, events)

    def read_events(self) -> list[Any]:
        entries, _ = _read_lines(self.events_path, "events", objects_only=False)
        return entries  # anything may be there: folding checks every entry's shape, status counts the bad ones

    def replace_events(self, count: int, kept: Sequence[dict[str, Any]]) -> None:
        # kept first: a crash in between leaves duplicates (folding ignores them), never a lost entry
        self.append_events(kept)
        self.clear_events(count)

    def history(self, limit: int = 20) -> list[Version]:
        """The state and the previous version kept beside it (`.backup`): a file keeps no more."""
        versions = []
        for path in (self.path, self.backup)[: max(0, limit)]:
            raw = _read_regular(path, "state")
            if raw is None:
                continue
            try:
                data = json.loads(raw)
                version = Version(int(data["serial"]), str(data["lineage"]), isotime(_mtime(path)), "")
            except (ValueError, KeyError, TypeError, RecursionError):
                version = Version(-1, "", isotime(_mtime(path)), f"{path.name} is corrupt")
            versions.append(version)
        return versions

    def signature(self) -> Hashable:
        return (_signature(self.path), _signature(self.journal_path))

    def clear_events(self, count: int) -> None:
        if not self.events_path.exists():
            return
        # appenders hold the same lock while they write: none is lost between the read and the rewrite
        with open(self.events_path, "rb+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            lines = handle.read().splitlines(keepends=True)
            kept, dropped = [], 0
            for line in lines:
                if dropped < count:
                    dropped += _is_entry(line)
                    continue
                kept.append(line)
            handle.seek(0)
            handle.write(b"".join(kept))
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[int]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield descriptor
    finally:
        os.close(descriptor)


def _lease(raw: bytes) -> LockInfo | None:
    """The lease's holder; None when there is none (released) or it cannot be read (then it is taken over)."""
    try:
        return LockInfo.from_json(raw.decode()) if raw.strip() else None
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def _fresh(info: LockInfo, ttl: timedelta) -> LockInfo:
    """`info` as a holder that starts now."""
    now = utcnow()
    return replace(info, started=isotime(now), expires=isotime(now + ttl))


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _append_lines(path: Path, entries: Sequence[dict[str, Any]]) -> None:
    if not entries:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries).encode()
    # whole lines, one write, under an exclusive lock: appenders never interleave or lose a line
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a line cut short by a crash must not swallow this one
        os.write(descriptor, payload)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_lines(path: Path, what: str, objects_only: bool = True) -> tuple[list[Any], list[int]]:
    """The JSON values of a JSON-lines file (only its objects, with `objects_only`), and the numbers of lines
    that parse but are not objects."""
    raw = _read_regular(path, what)
    if raw is None:
        return [], []
    entries, bad = [], []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue  # a line cut short by a crash mid-append holds nothing that was acknowledged
        if isinstance(entry, dict) or not objects_only:
            entries.append(entry)
        if not isinstance(entry, dict):
            bad.append(number)
    return entries, bad


def _read_regular(path: Path, what: str) -> bytes | None:
    """The bytes of a regular file, or None when there is none. Anything else in its place (a FIFO, a device,
    a folder) is refused at once: opened without blocking, checked before reading."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"cannot read the {what} file {path}: {error.strerror}") from error
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise StateError(f"the {what} file {path} is not a regular file; move it away")
        with os.fdopen(os.dup(descriptor), "rb") as handle:
            return handle.read()
    except OSError as error:
        raise StateError(f"cannot read the {what} file {path}: {error.strerror}") from error
    finally:
        os.close(descriptor)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _is_entry(line: bytes) -> int:
    try:
        json.loads(line)
    except ValueError:
        return 0
    return 1
