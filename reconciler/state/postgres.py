"""The PostgreSQL backend: one database shared by CI runners, webhook receivers and the controller.

Tables live in a schema of their own (`state.schema`, default `reconciler`), created and migrated by the first
writer (apply, refresh, import, state push, state rm, a receiver recording events); readers (plan, show, status,
state pull and history) create nothing and find nothing recorded until then, so they may run with a role that
can only read. A schema newer than this release knows is refused. Several fleets share one database: every row
carries its fleet id. Designed from what users of Terraform's pg backend run into:

- the state is append-only versions (fleet, serial, lineage, writer, time, body); a save inserts the next serial
  in a transaction that first checks the lock row is still the writer's and the latest version is the one it
  loaded, so a lost update or a save after a takeover is refused, not merged; old versions are pruned;
- the writers' lock is a row (holder, host, pid, command, started, expires), renewed by heartbeat, taken over
  once expired (by the database's clock, the same for every runner). No session advisory lock: behind a
  transaction-pooling PgBouncer those are held by whichever session the pooler hands out;
- the journal is rows, group-committed: an intent is committed before its call is sent;
- events are rows with a unique key per notification, so a duplicate delivery is dropped by the database and
  any number of receivers can insert at once.

Each kind of work (state and lock, journal, lock renewal, events) has a connection of its own, so a long save
does not hold up a renewal. Messages name host, port and database, never the DSN's password.

Longer than most modules, on purpose: the backend is one protocol (state/backend.py) over one schema, and its
transactions, migrations and connection handling are read together when that schema changes.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import threading
import weakref
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.bulk import collector_paused
from reconciler.clock import isotime, parse_time, utcnow
from reconciler.errors import LockedError, LockLostError, StateError
from reconciler.state.backend import LOCK_TTL, LockInfo, Version
from reconciler.state.commit import GroupCommit
from reconciler.state.dsn import INVALID_DSN, dsn_problem, masked, where
from reconciler.state.model import State

if TYPE_CHECKING:  # psycopg loads only for this backend
    import psycopg

SCHEMA_VERSION = 2
READABLE_FROM = 1  # readers use the tables of version 1 as they are (version 2 only adds the leader lease)
KEEP_VERSIONS = 100  # state versions kept per fleet; older ones are pruned as new ones are saved
CONNECT_TIMEOUT = 10  # seconds: an unreachable database is known quickly

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE {s}.states (
            fleet text NOT NULL,
            serial bigint NOT NULL,
            lineage text NOT NULL,
            saved_at timestamptz NOT NULL DEFAULT now(),
            writer text NOT NULL DEFAULT '',
            body text NOT NULL,
            PRIMARY KEY (fleet, serial))""",
        """CREATE TABLE {s}.locks (
            fleet text PRIMARY KEY,
            id text NOT NULL,
            holder text NOT NULL,
            host text NOT NULL,
            pid integer NOT NULL,
            command text NOT NULL,
            started timestamptz NOT NULL,
            expires timestamptz NOT NULL)""",
        """CREATE TABLE {s}.journal (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            fleet text NOT NULL,
            entry text NOT NULL)""",
        "CREATE INDEX journal_fleet ON {s}.journal (fleet, seq)",
        """CREATE TABLE {s}.events (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            fleet text NOT NULL,
            key text NOT NULL,
            entry text NOT NULL,
            UNIQUE (fleet, key))""",
        "CREATE INDEX events_fleet ON {s}.events (fleet, seq)",
    ],
    2: [  # the controller's leader lease (`serve`), apart from the writers' lock
        """CREATE TABLE {s}.leases (
            fleet text NOT NULL,
            name text NOT NULL,
            id text NOT NULL,
            holder text NOT NULL,
            host text NOT NULL,
            pid integer NOT NULL,
            command text NOT NULL,
            started timestamptz NOT NULL,
            expires timestamptz NOT NULL,
            PRIMARY KEY (fleet, name))""",
    ],
}


def event_key(event: Any) -> str:
    """What makes two deliveries one notification: everything but when and how it was recorded."""
    if isinstance(event, dict):
        event = {k: v for k, v in event.items() if k not in ("received_at", "unmatched", "rejected")}
    return hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()


class PostgresBackend:
    def __init__(self, dsn: str, fleet: str, schema: str = "reconciler") -> None:
        if dsn_problem(dsn) is not None:  # never connected with, nor shown
            raise StateError(INVALID_DSN)
        self.dsn = dsn
        self.fleet = fleet
        self.schema = schema
        self.place = where(dsn)
        self._connections: dict[str, psycopg.Connection[Any]] = {}
        self._guards: dict[str, threading.Lock] = {}
        self._setup = threading.Lock()
        self._ready = False  # the tables are known to be there, at this version
        self._journal = GroupCommit(self._write_journal, f"the journal in {self.name}")
        self._read_seqs: list[int] = []  # the events the last read_events returned, by row
        # connections close when the backend is dropped or the process ends, whoever forgets to close it
        weakref.finalize(self, _close_all, self._connections)

    @property
    def name(self) -> str:
        return f"postgres {self.place} (schema {self.schema}, fleet {self.fleet})"

    # ---- connections ----------------------------------------------------------------------------------------

    def _problem(self, error: Exception, doing: str) -> StateError:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        text = masked(text, self.dsn)
        return StateError(f"the state database {self.place} could not {doing}: {text}")

    @contextmanager
    def _transaction(
        self, purpose: str, doing: str, *, one: bool = False, write: bool = True
    ) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on the connection kept for `purpose`, committed on success (`one`: the block runs a
        single statement, atomic and committed by itself: one round trip instead of three). A writer's (`write`)
        first one creates or upgrades the tables; a reader checks `_tables` first instead. StateError (naming
        the database, never the password) when the database cannot be reached or refuses."""
        import psycopg

        guard = self._guards.setdefault(purpose, threading.Lock())
        with guard:
            if write:
                self._migrate(purpose)
            try:
                connection = self._connection(purpose)
                with nullcontext() if one else connection.transaction():
                    yield connection
            except psycopg.Error as error:
                self._drop(purpose)  # a broken connection is opened again next time
                raise self._problem(error, doing) from None

    def _connection(self, purpose: str) -> psycopg.Connection[Any]:
        import psycopg

        connection = self._connections.get(purpose)
        if connection is not None and (connection.closed or connection.broken or _hung_up(connection)):
            self._drop(purpose)  # the server restarted or ended the session since: connect again, once
            connection = None
        if connection is None:
            connection = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="reconciler"
            )
            self._connections[purpose] = connection
        return connection

    def _drop(self, purpose: str) -> None:
        connection = self._connections.pop(purpose, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        _close_all(self._connections)

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    def _migrate(self, purpose: str) -> None:
        """Create or upgrade the tables once per process, on the connection `purpose` uses. The common case costs
        one query (the tables are there, at this version); otherwise concurrent first uses are serialised by a
        lock held for the transaction only (a transaction-level advisory lock is safe behind PgBouncer)."""
        if self._ready:
            return
        import psycopg

        with self._setup:
            if self._ready:
                return
            try:
                connection = self._connection(purpose)
                if self._version(connection) != SCHEMA_VERSION:
                    with connection.transaction():
                        self._upgrade(connection)
            except psycopg.Error as error:
                self._drop(purpose)
                raise self._problem(error, "be opened") from None
            self._ready = True

    def _tables(self) -> bool:
        """For a reader: True when the tables are there at this version, False when there are none yet (then
        nothing is recorded). A reader never creates them: plan, show and status may run with a role that can
        only read, on a database no writer used yet. One query per read until they are found."""
        if self._ready:
            return True
        import psycopg

        with self._guards.setdefault("state", threading.Lock()):
            try:
                known = self._version(self._connection("state"))
            except psycopg.Error as error:
                self._drop("state")
                raise self._problem(error, "be opened") from None
        if known > SCHEMA_VERSION:
            raise self._newer(known)
        if known and known < READABLE_FROM:  # pragma: no cover - every version so far is readable
            raise StateError(
                f"the state database {self.place} (schema {self.schema}) has tables of version {known}, older "
                f"than this reconciler reads ({SCHEMA_VERSION}): the next writer (apply, refresh) upgrades them"
            )
        self._ready = known == SCHEMA_VERSION
        return known >= READABLE_FROM

    def _version(self, connection: psycopg.Connection[Any]) -> int:
        """The version of the tables in the schema; 0 when there are none (nor, maybe, the schema)."""
        import psycopg

        try:
            with connection.transaction():
                row = connection.execute(
                    self._sql("SELECT value FROM {s}.meta WHERE key = 'schema_version'")
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0

    def _newer(self, version: int) -> StateError:
        return StateError(
            f"the state database {self.place} (schema {self.schema}) has tables of version "
            f"{version}, newer than this reconciler knows ({SCHEMA_VERSION}): upgrade reconciler"
        )

    def _upgrade(self, connection: psycopg.Connection[Any]) -> None:
        lock = f"reconciler:{self.schema}"
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
        # CREATE SCHEMA needs CREATE on the database even when the schema exists: a schema made beforehand by an
        # administrator is used as it is, by a role that may only create tables in it
        if connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone() is None:
            connection.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
        connection.execute(self._sql("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text)"))
        row = connection.execute(self._sql("SELECT value FROM {s}.meta WHERE key = 'schema_version'")).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                connection.execute(self._sql(statement))
        if version < SCHEMA_VERSION:
            connection.execute(
                self._sql(
                    "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ),
                (str(SCHEMA_VERSION),),
            )

    # ---- state ----------------------------------------------------------------------------------------------

    def load(self) -> State | None:
        if not self._tables():
            return None
        with self._transaction("state", "read the state", write=False) as db:
            row = db.execute(
                self._sql("SELECT serial, body FROM {s}.states WHERE fleet = %s ORDER BY serial DESC LIMIT 1"),
                (self.fleet,),
            ).fetchone()
        if row is None:
            return None
        origin = f"version {row[0]} of the state in {self.name}"
        with collector_paused():
            try:
                data = json.loads(row[1])
            except (json.JSONDecodeError, RecursionError) as error:
                raise StateError(f"{origin} is corrupt (not JSON: {str(error)[:200]}){_restore_hint()}") from None
            try:
                return State.from_dict(data, origin)
            except StateError as error:
                if "is corrupt" not in str(error):
                    raise
                raise StateError(f"{error}{_restore_hint()}") from None

    def save(
        self,
        state: State,
        expected_serial: int | None,
        lock: str | None = None,
        serial: int | None = None,
        force: bool = False,
    ) -> int:
        import psycopg

        try:
            with self._transaction("state", "save the state") as db:
                writer = ""
                if lock is not None:
                    holder = db.execute(
                        self._sql("SELECT id, command, holder, host FROM {s}.locks WHERE fleet = %s FOR UPDATE"),
                        (self.fleet,),
                    ).fetchone()
                    if holder is None or holder[0] != lock:
                        raise LockLostError(
                            f"the lock on {self.name} was taken over by another run "
                            f"({'lock ' + holder[0] if holder else 'now released'}); nothing saved"
                        )
                    writer = f"{holder[1]} by {holder[2]}@{holder[3]}"
                current = db.execute(
                    self._sql(
                        "SELECT serial, lineage FROM {s}.states WHERE fleet = %s "
                        "ORDER BY serial DESC LIMIT 1 FOR UPDATE"
                    ),
                    (self.fleet,),
                ).fetchone()
                if current is not None:
                    if expected_serial is None or (current[1] != state.lineage and not force):
                        raise StateError(
                            f"{self.name} now holds lineage {current[1]}, not {state.lineage}: another state was "
                            "written there; nothing saved"
                        )
                    if current[0] != expected_serial:
                        raise StateError(
                            f"{self.name} moved to serial {current[0]} since serial {expected_serial} was loaded; "
                            "nothing saved"
                        )
                elif expected_serial is not None:
                    raise StateError(
                        f"{self.name} holds no state since serial {expected_serial} was loaded; nothing saved"
                    )
                following = current[0] + 1 if current is not None else 1
                new_serial = max(following, serial or 0)
                previous = state.serial
                state.serial = new_serial
                try:
                    body = state.to_json()
                finally:
                    state.serial = previous
                db.execute(
                    self._sql(
                        "INSERT INTO {s}.states (fleet, serial, lineage, writer, body) VALUES (%s, %s, %s, %s, %s)"
                    ),
                    (self.fleet, new_serial, state.lineage, writer, body),
                )
                db.execute(
                    self._sql("DELETE FROM {s}.states WHERE fleet = %s AND serial <= %s"),
                    (self.fleet, new_serial - KEEP_VERSIONS),
                )
        except psycopg.errors.UniqueViolation:  # pragma: no cover - the row lock above orders savers first
            raise StateError(f"{self.name} moved while saving; nothing saved") from None
        state.serial = new_serial
        return new_serial

    def history(self, limit: int = 20) -> list[Version]:
        if not self._tables():
            return []
        with self._transaction("state", "read the state's history", write=False) as db:
            rows = db.execute(
                self._sql(
                    "SELECT serial, lineage, saved_at, writer FROM {s}.states WHERE fleet = %s "
                    "ORDER BY serial DESC LIMIT %s"
                ),
                (self.fleet, limit),
            ).fetchall()
        return [Version(serial, lineage, isotime(saved), writer) for serial, lineage, saved, writer in rows]

    def signature(self) -> Hashable:
        if not self._tables():
            return (None, None, 0)  # what tables with nothing recorded give: their creation changes nothing
        with self._transaction("state", "read the state", write=False) as db:
            row = db.execute(
                self._sql(
                    "SELECT (SELECT max(serial) FROM {s}.states WHERE fleet = %s), "
                    "(SELECT max(seq) FROM {s}.journal WHERE fleet = %s), "
                    "(SELECT count(*) FROM {s}.journal WHERE fleet = %s)"
                ),
                (self.fleet, self.fleet, self.fleet),
            ).fetchone()
        return tuple(row) if row else None

    # ---- lock -----------------------------------------------------------------------------------------------

    def current_lock(self) -> LockInfo | None:
        if not self._tables():
            return None
        with self._transaction("state", "read the lock", write=False) as db:
            row = db.execute(
                self._sql("SELECT id, holder, host, pid, command, started, expires FROM {s}.locks WHERE fleet = %s"),
                (self.fleet,),
            ).fetchone()
        return _lock(row) if row else None

    def acquire_lock(self, info: LockInfo) -> None:
        for _ in range(10):
            if self._try_lock(info):
                return
        raise LockedError(f"state {self.name}: could not take the lock (other writers keep taking it)")

    def _try_lock(self, info: LockInfo) -> bool:
        """True when the lock is ours now; False when its holder released it meanwhile (try again)."""
        ttl = _ttl(info)
        with self._transaction("state", "take the lock") as db:
            taken = db.execute(
                self._sql(
                    "INSERT INTO {s}.locks (fleet, id, holder, host, pid, command, started, expires) "
                    "VALUES (%s, %s, %s, %s, %s, %s, now(), now() + %s) ON CONFLICT (fleet) DO NOTHING RETURNING id"
                ),
                (self.fleet, info.id, info.holder, info.host, info.pid, info.command, ttl),
            ).fetchone()
            if taken is not None:
                return True
            row = db.execute(
                self._sql(
                    "SELECT id, holder, host, pid, command, started, expires, expires <= now() "
                    "FROM {s}.locks WHERE fleet = %s FOR UPDATE"
                ),
                (self.fleet,),
            ).fetchone()
            if row is None:
                return False
            holder = _lock(row[:7])
            if not (row[7] or holder.holder_is_gone()):
                raise LockedError(
                    f"state {self.name} is locked: {holder.describe()}. If that run is gone, wait for the lock to "
                    f"expire or run `reconciler state unlock {holder.id}`"
                )
            db.execute(  # taken over: expired, or its process is gone
                self._sql(
                    "UPDATE {s}.locks SET id = %s, holder = %s, host = %s, pid = %s, command = %s, started = now(), "
                    "expires = now() + %s WHERE fleet = %s"
                ),
                (info.id, info.holder, info.host, info.pid, info.command, ttl, self.fleet),
            )
            return True

    def renew_lock(self, info: LockInfo) -> None:
        with self._transaction("renew", "renew the lock") as db:
            renewed = db.execute(
                self._sql("UPDATE {s}.locks SET expires = now() + %s WHERE fleet = %s AND id = %s"),
                (_ttl(info), self.fleet, info.id),
            ).rowcount
        if not renewed:
            raise LockLostError(f"lost the lock on {self.name}: it was released or taken over")

    def release_lock(self, lock_id: str) -> None:
        with self._transaction("state", "release the lock") as db:
            db.execute(self._sql("DELETE FROM {s}.locks WHERE fleet = %s AND id = %s"), (self.fleet, lock_id))

    def force_unlock(self, lock_id: str) -> LockInfo:
        holder = self.current_lock()
        if holder is None:
            raise StateError(f"state {self.name} is not locked")
        if holder.id != lock_id:
            raise StateError(f"lock id {lock_id} does not hold state {self.name}; it is {holder.describe()}")
        self.release_lock(lock_id)
        return holder

    # ---- the controller's leader lease ----------------------------------------------------------------------

    def claim_lease(self, info: LockInfo, ttl: timedelta) -> LockInfo:
        """One transaction: insert, or take over an expired lease (by the database's clock) or one whose holder's
        process is gone, or renew our own; else the other holder is returned."""
        for _ in range(10):
            holder = self._claim_lease(info, ttl)
            if holder is not None:
                return holder
        raise StateError(f"state {self.name}: could not claim the leader lease (other replicas keep taking it)")

    def _claim_lease(self, info: LockInfo, ttl: timedelta) -> LockInfo | None:
        """The holder now; None when the lease was released between two statements (try again)."""
        with self._transaction("lease", "claim the leader lease") as db:
            row = db.execute(
                self._sql(
                    "INSERT INTO {s}.leases AS l (fleet, name, id, holder, host, pid, command, started, expires) "
                    "VALUES (%s, 'leader', %s, %s, %s, %s, %s, now(), now() + %s) "
                    "ON CONFLICT (fleet, name) DO UPDATE SET id = EXCLUDED.id, holder = EXCLUDED.holder, "
                    "host = EXCLUDED.host, pid = EXCLUDED.pid, command = EXCLUDED.command, "
                    "started = CASE WHEN l.id = EXCLUDED.id THEN l.started ELSE now() END, expires = EXCLUDED.expires "
                    "WHERE l.id = EXCLUDED.id OR l.expires <= now() "
                    "RETURNING id, holder, host, pid, command, started, expires"
                ),
                (self.fleet, info.id, info.holder, info.host, info.pid, info.command, ttl),
            ).fetchone()
            if row is not None:
                return _lock(row)
            row = db.execute(
                self._sql(
                    "SELECT id, holder, host, pid, command, started, expires FROM {s}.leases "
                    "WHERE fleet = %s AND name = 'leader' FOR UPDATE"
                ),
                (self.fleet,),
            ).fetchone()
            if row is None:
                return None
            holder = _lock(row)
            if not holder.holder_is_gone():
                return holder
            row = db.execute(  # its process is gone (this host): taken over at once
                self._sql(
                    "UPDATE {s}.leases SET id = %s, holder = %s, host = %s, pid = %s, command = %s, started = now(), "
                    "expires = now() + %s WHERE fleet = %s AND name = 'leader' "
                    "RETURNING id, holder, host, pid, command, started, expires"
                ),
                (info.id, info.holder, info.host, info.pid, info.command, ttl, self.fleet),
            ).fetchone()
            return _lock(row) if row is not None else None

    def release_lease(self, lease_id: str) -> None:
        with self._transaction("lease", "release the leader lease") as db:
            db.execute(
                self._sql("DELETE FROM {s}.leases WHERE fleet = %s AND name = 'leader' AND id = %s"),
                (self.fleet, lease_id),
            )

    # ---- journal --------------------------------------------------------------------------------------------

    def append_journal(self, entries: Sequence[dict[str, Any]], wait: bool = True) -> None:
        self._journal.append(entries, wait)

    def _write_journal(self, entries: list[dict[str, Any]]) -> None:
        """One statement for the whole batch: committed (durable) when it returns, in one round trip."""
        rows = [json.dumps(entry, separators=(",", ":")) for entry in entries]
        with self._transaction("journal", "write the journal", one=True) as db:
            db.execute(
                self._sql(
                    "INSERT INTO {s}.journal (fleet, entry) SELECT %s, entry "
                    "FROM unnest(%s::text[]) WITH ORDINALITY AS batch(entry, position) ORDER BY position"
                ),
                (self.fleet, rows),
            )

    def read_journal(self) -> list[dict[str, Any]]:
        if not self._tables():
            return []
        with self._transaction("state", "read the journal", write=False) as db:
            rows = db.execute(
                self._sql("SELECT seq, entry FROM {s}.journal WHERE fleet = %s ORDER BY seq"), (self.fleet,)
            ).fetchall()
        entries = []
        for seq, text in rows:
            try:
                entry = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                entry = None
            if not isinstance(entry, dict):
                raise StateError(
                    f"the journal in {self.name} is corrupt: row {seq} is not a journal entry. It holds the calls of "
                    "a run that did not finish: check it, then delete the bad rows (or all, to forget those calls)"
                )
            entries.append(entry)
        return entries

    def clear_journal(self) -> None:
        self._journal.discard()
        with self._transaction("journal", "clear the journal") as db:
            db.execute(self._sql("DELETE FROM {s}.journal WHERE fleet = %s"), (self.fleet,))

    # ---- events ---------------------------------------------------------------------------------------------

    def append_events(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        keys = [event_key(event) for event in events]
        rows = [json.dumps(event, separators=(",", ":")) for event in events]
        with self._transaction("events", "record events", one=True) as db:
            db.execute(
                self._sql(
                    "INSERT INTO {s}.events (fleet, key, entry) SELECT %s, key, entry "
                    "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS batch(key, entry, position) "
                    "ORDER BY position ON CONFLICT (fleet, key) DO NOTHING"
                ),
                (self.fleet, keys, rows),
            )

    def read_events(self) -> list[Any]:
        if not self._tables():
            self._read_seqs = []
            return []
        with self._transaction("state", "read events", write=False) as db:
            rows = db.execute(
                self._sql("SELECT seq, entry FROM {s}.events WHERE fleet = %s ORDER BY seq"), (self.fleet,)
            ).fetchall()
        self._read_seqs = [seq for seq, _ in rows]
        entries: list[Any] = []
        for _, text in rows:
            try:
                entries.append(json.loads(text))
            except (json.JSONDecodeError, RecursionError):
                entries.append(None)  # not an event: folding counts it as malformed
        return entries

    def replace_events(self, count: int, kept: Sequence[dict[str, Any]]) -> None:
        """One transaction: the rows read are replaced by what is kept, so nothing is lost nor doubled, however
        many receivers insert meanwhile (their rows were not read, and are not touched)."""
        dropped = self._read_seqs[:count]
        with self._transaction("state", "replace events") as db, db.cursor() as cursor:
            db.execute(self._sql("DELETE FROM {s}.events WHERE seq = ANY(%s)"), (dropped,))
            cursor.executemany(
                self._sql(
                    "INSERT INTO {s}.events (fleet, key, entry) VALUES (%s, %s, %s) ON CONFLICT (fleet, key) DO NOTHING"
                ),
                [(self.fleet, event_key(event), json.dumps(event, separators=(",", ":"))) for event in kept],
            )
        self._read_seqs = self._read_seqs[count:]


def _hung_up(connection: psycopg.Connection[Any]) -> bool:
    """True when the server spoke on a connection kept idle between two transactions: it only does so to say
    goodbye (it restarted, or ended the session) before closing it. Asked of the socket, with no round trip, so
    the first request after a database restart gets a fresh connection instead of an error."""
    try:
        descriptor = connection.fileno()
    except Exception:  # no socket any more
        return True
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        return bool(selector.select(0))


def _close_all(connections: dict[str, psycopg.Connection[Any]]) -> None:
    for purpose in list(connections):
        connections.pop(purpose).close()


def _ttl(info: LockInfo) -> timedelta:
    """The lease the holder asks for: from now to the expiry it computed, at least a second."""
    try:
        left = parse_time(info.expires) - utcnow()
    except ValueError:
        left = LOCK_TTL
    return max(left, timedelta(seconds=1))


def _lock(row: Sequence[Any]) -> LockInfo:
    identity, holder, host, pid, command, started, expires = row
    return LockInfo(identity, holder, host, int(pid), command, _when(started), _when(expires))


def _when(moment: Any) -> str:
    return isotime(moment if isinstance(moment, datetime) else datetime.now(UTC))


def _restore_hint() -> str:
    return "; earlier versions are kept: `reconciler state history` lists them"
