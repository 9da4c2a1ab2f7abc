"""What only the PostgreSQL backend has: tables made and migrated by the tool, fleets side by side in one
database, duplicates dropped by the database, many writers of events, and messages without the password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reconciler.errors import StateError
from reconciler.state import postgres
from reconciler.state.model import SlotRecord, State
from reconciler.state.postgres import PostgresBackend
from tests.commands import EXAMPLES_FLEET, SECRETS, desired_programs, environment, held_programs, labels, run
from tests.planning import program
from tests.postgres import Cluster, use_postgres
from tests.servers import sandbox

pytestmark = pytest.mark.usefixtures("pg_cluster")


@pytest.fixture
def backend(pg_dsn: str, pg_schema: str) -> Iterator[PostgresBackend]:
    opened = PostgresBackend(pg_dsn, "fleet-1", pg_schema)
    yield opened
    opened.close()


def test_an_unreachable_database_is_named_by_host_port_and_database_never_by_its_password(pg_dsn: str) -> None:
    dead = pg_dsn.rsplit(":", 1)[0] + ":9/postgres"  # port 9: nothing listens
    with pytest.raises(StateError) as raised:
        PostgresBackend(dead, "fleet-1").load()
    message = str(raised.value)
    assert "the state database 127.0.0.1:9/postgres could not be opened" in message
    password = pg_dsn.split(":")[2].split("@")[0]
    assert password not in message
    wrong = pg_dsn.replace(password, "wrong-password-canary")
    with pytest.raises(StateError) as refused:
        PostgresBackend(wrong, "fleet-1").load()
    assert "password authentication failed" in str(refused.value)
    assert "wrong-password-canary" not in str(refused.value)


@pytest.mark.slow
def test_connections_kept_across_a_database_restart_are_opened_again(
    pg_cluster: Cluster, backend: PostgresBackend
) -> None:
    backend.save(State.new("fleet-1"), None)
    backend.append_events([{"remoteActionId": "r1"}])
    pg_cluster.kill()
    pg_cluster.start()
    assert backend.load() is not None  # the state's connection
    backend.append_events([{"remoteActionId": "r2"}])  # the events' connection
    backend.append_journal([{"kind": "intent", "id": "x", "op": "remote"}])  # the journal's, never opened yet
    assert [event["remoteActionId"] for event in backend.read_events()] == ["r1", "r2"]


def test_tables_are_made_once_even_by_writers_starting_together(pg_dsn: str, pg_schema: str) -> None:
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            PostgresBackend(pg_dsn, "fleet-1", pg_schema).clear_journal()  # a writer's first use
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(pg_dsn) as db:
        version = db.execute(f"SELECT value FROM {pg_schema}.meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(postgres.SCHEMA_VERSION),)


def test_tables_newer_than_this_release_are_refused(pg_dsn: str, pg_schema: str, backend: PostgresBackend) -> None:
    backend.clear_journal()
    with psycopg.connect(pg_dsn) as db:
        db.execute(f"UPDATE {pg_schema}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="has tables of version 99, newer than this reconciler knows"):
        PostgresBackend(pg_dsn, "fleet-1", pg_schema).load()  # by readers
    with pytest.raises(StateError, match="has tables of version 99, newer than this reconciler knows"):
        PostgresBackend(pg_dsn, "fleet-1", pg_schema).append_events([{"remoteActionId": "r"}])  # and writers


def test_fleets_share_a_database_without_touching_each_other(pg_dsn: str, pg_schema: str) -> None:
    one, two = PostgresBackend(pg_dsn, "fleet-1", pg_schema), PostgresBackend(pg_dsn, "fleet-2", pg_schema)
    one.save(State.new("fleet-1"), None)
    assert two.load() is None
    two.save(State.new("fleet-2"), None)
    one.append_journal([{"kind": "intent", "id": "x", "op": "remote"}])
    two.append_events([{"remoteActionId": "r"}])
    assert two.read_journal() == [] and one.read_events() == []
    assert one.load().fleet == "fleet-1" and two.load().fleet == "fleet-2"  # type: ignore[union-attr]


def test_a_duplicate_notification_is_dropped_by_the_database(backend: PostgresBackend) -> None:
    event = {"remoteActionId": "r", "type": "Done", "status": "Success", "callbackId": "cb"}
    backend.append_events([{**event, "received_at": "2026-11-25T07:00:00Z"}])
    backend.append_events([{**event, "received_at": "2026-11-25T07:00:09Z"}])  # the API's retry
    assert len(backend.read_events()) == 1


def test_receivers_inserting_together_lose_and_double_nothing(pg_dsn: str, pg_schema: str) -> None:
    receivers = [PostgresBackend(pg_dsn, "fleet-1", pg_schema) for _ in range(4)]

    def deliver(backend: PostgresBackend, start: int) -> None:
        for batch in range(25):
            backend.append_events([{"remoteActionId": f"r{start + batch * 10 + n}"} for n in range(10)])

    # two receivers get the same notifications (the API retried through the load balancer), two others new ones
    threads = [
        threading.Thread(target=deliver, args=(r, base)) for r, base in zip(receivers, (0, 0, 1000, 2000), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [event["remoteActionId"] for event in receivers[0].read_events()]
    assert len(ids) == len(set(ids)) == 750


def test_old_versions_are_pruned(monkeypatch: pytest.MonkeyPatch, backend: PostgresBackend) -> None:
    monkeypatch.setattr(postgres, "KEEP_VERSIONS", 3)
    state = State.new("fleet-1")
    serial = None
    for _ in range(6):
        serial = backend.save(state, serial)
    assert [version.serial for version in backend.history()] == [6, 5, 4]


def test_a_corrupt_version_is_refused_and_the_history_named(
    pg_dsn: str, pg_schema: str, backend: PostgresBackend
) -> None:
    state = State.new("fleet-1")
    state.slots["V"] = {1: SlotRecord(program(1), "cb", None, "Set", "s")}
    backend.save(state, None)
    with psycopg.connect(pg_dsn) as db:
        db.execute(f'UPDATE {pg_schema}.states SET body = \'{{"version": 1, "lineage": 5}}\'')
    with pytest.raises(StateError, match=r"is corrupt.*earlier versions are kept: `reconciler state history`"):
        backend.load()


READERS = (("plan",), ("show", "--state"), ("status",), ("validate",), ("state", "history"), ("state", "list"))


def schemas(dsn: str, name: str) -> list[tuple[str]]:
    with psycopg.connect(dsn) as db:
        return db.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = %s", (name,)
        ).fetchall()


@pytest.mark.slow
def test_readers_on_a_fresh_database_find_no_state_and_create_nothing(repo: Path, pg_dsn: str, pg_schema: str) -> None:
    use_postgres(repo, pg_schema)
    env = {**SECRETS, "STATE_DSN": pg_dsn}
    for command in READERS:
        result = run(*command, cwd=repo, env=env)
        assert result.returncode in (0, 2), (command, result.stdout + result.stderr)
    pulled = run("state", "pull", cwd=repo, env=env)
    assert pulled.returncode == 1 and "there is no recorded state yet" in pulled.stderr
    assert schemas(pg_dsn, pg_schema) == []  # a plan writes nothing, not even tables
    backend = PostgresBackend(pg_dsn, EXAMPLES_FLEET, pg_schema)
    backend.save(State.new(EXAMPLES_FLEET), None)  # the first writer makes them
    backend.close()
    assert schemas(pg_dsn, pg_schema) == [(pg_schema,)]


@pytest.fixture
def bare_role_dsn(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A role that may connect and nothing more (what a pull-request job is given), until granted more."""
    role = f"role_{pg_schema}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-canary-pw'")
    yield pg_dsn.replace("//reconciler:", f"//{role}:").replace(pg_dsn.split(":")[2].split("@")[0], "reader-canary-pw")
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_a_role_that_can_only_read_runs_the_readers(
    repo: Path, pg_dsn: str, pg_schema: str, bare_role_dsn: str, tmp_path: Path
) -> None:
    use_postgres(repo, pg_schema)
    reader = {**SECRETS, "STATE_DSN": bare_role_dsn}
    plan = run("plan", "--detailed-exitcode", cwd=repo, env=reader)
    assert plan.returncode == 2, plan.stdout + plan.stderr  # no state recorded yet: everything to create
    owner = PostgresBackend(pg_dsn, EXAMPLES_FLEET, pg_schema)
    owner.save(State.new(EXAMPLES_FLEET), None)
    owner.append_events([{"remoteActionId": "r"}])
    owner.close()
    with psycopg.connect(pg_dsn, autocommit=True) as db:  # what README says a reader needs
        role = f"role_{pg_schema}"
        db.execute(f"GRANT USAGE ON SCHEMA {pg_schema} TO {role}")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg_schema} TO {role}")
    for command in (*READERS, ("state", "pull")):
        result = run(*command, cwd=repo, env=reader)
        assert result.returncode in (0, 2), (command, result.stdout + result.stderr)
    state = tmp_path / "state.json"
    state.write_text(run("state", "pull", cwd=repo, env=reader).stdout)
    pushed = run("state", "push", "--force", str(state), cwd=repo, env=reader)  # a writer: refused
    assert pushed.returncode == 1 and "permission denied" in pushed.stderr, pushed.stderr
    assert "reader-canary-pw" not in pushed.stderr


def test_a_writer_uses_a_schema_made_beforehand_without_create_on_the_database(
    pg_dsn: str, pg_schema: str, bare_role_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as db:  # what an administrator does once
        db.execute(f"CREATE SCHEMA {pg_schema} AUTHORIZATION role_{pg_schema}")
    writer = PostgresBackend(bare_role_dsn, "fleet-1", pg_schema)  # a role that may create nothing else
    writer.save(State.new("fleet-1"), None)
    assert writer.load() is not None
    writer.close()


@pytest.mark.slow
def test_a_command_with_the_database_down_exits_1_naming_it_and_not_its_password(
    repo: Path, pg_dsn: str, pg_schema: str
) -> None:
    use_postgres(repo, pg_schema)
    dead = pg_dsn.rsplit(":", 1)[0] + ":9/postgres"
    for command in (("plan",), ("apply", "--auto-approve"), ("state", "list")):
        result = run(*command, cwd=repo, env={**SECRETS, "STATE_DSN": dead})
        assert result.returncode == 1, (command, result.stdout + result.stderr)
        assert "the state database 127.0.0.1:9/postgres could not be opened" in result.stderr
        assert pg_dsn.split(":")[2].split("@")[0] not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_losing_the_database_during_apply_sends_nothing_unjournalled_and_the_next_run_recovers(
    repo: Path, pg_cluster: Cluster, pg_dsn: str, pg_schema: str
) -> None:
    use_postgres(repo, pg_schema)
    with sandbox(vehicles=40, asleep_rate=0.0, latency_ms=60) as box:
        env = {**os.environ, **environment(box), "STATE_DSN": pg_dsn, "RECONCILER_API_PARALLELISM": "2"}
        command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve"]
        with subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            box.wait(lambda: box.inspect("stats")["calls"].get("post_remote", 0) >= 4, timeout=30)
            pg_cluster.kill()  # the database goes away in the middle of the run
            try:
                out, err = process.communicate(timeout=60)
            finally:
                pg_cluster.start()
        assert process.returncode == 1, out + err
        assert "the state database" in err and "Traceback" not in err
        # what stopped the run is the error shown; the lock left behind is a warning after it
        failure = [line for line in err.splitlines() if line.startswith("Error: ")]
        assert len(failure) == 1 and "release the lock" not in failure[0], err
        assert re.search(r"could not (save the state|write the journal)", failure[0]), err
        # and what had been done by then, and what becomes of it
        assert re.search(r"\d+ calls? had been made by then: each was journalled before it was sent", failure[0]), err
        assert re.search(r"^Warning: the lock is left behind \(.*\): it expires .*`reconciler state unlock ", err, re.M)
        posted = {remote["label"] for remote in box.inspect("remotes")["remotes"]}
        backend = PostgresBackend(pg_dsn, EXAMPLES_FLEET, pg_schema)
        journalled = {entry.get("label") for entry in backend.read_journal() if entry.get("kind") == "intent"}
        state = backend.load()
        backend.close()
        recorded = set() if state is None else {a for a in state.actions}
        assert posted <= journalled | {
            label for label in posted if label in recorded
        }  # every call sent was journalled first
        result = run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert held_programs(box) == desired_programs(repo)
        assert labels(box) == ["fleet-ops"]
        per_vehicle = Counter(r["vin"] for r in box.inspect("remotes")["remotes"])
        assert max(per_vehicle.values()) == 1  # a remote whose answer the crash lost was adopted, not sent again
