"""The controller's leader lease (`serve`): one holder per fleet on each state backend, renewed by its holder,
taken over when it expires or its process is gone, released on a graceful stop; apart from the writers' lock."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from reconciler.clock import parse_time
from reconciler.controller.leader import Leadership
from reconciler.state.backend import LockInfo, StateBackend

FLEET = "fleet-1"  # the fleet of the `backend` fixture (conftest.py)

TTL = timedelta(seconds=30)


def replica(name: str) -> LockInfo:
    return replace(LockInfo.for_this_process("serve", TTL), holder=name)


@pytest.mark.slow  # waits for leases to expire and renew
def test_one_holder_at_a_time_and_the_holder_renews(backend: StateBackend) -> None:
    one, two = replica("one"), replica("two")
    first = backend.claim_lease(one, TTL)
    assert first.id == one.id
    assert backend.claim_lease(two, TTL).id == one.id  # the other replica is told who leads
    time.sleep(1.1)
    renewed = backend.claim_lease(one, TTL)
    assert renewed.id == one.id and renewed.started == first.started
    assert parse_time(renewed.expires) > parse_time(first.expires)


@pytest.mark.slow  # waits for leases to expire and renew
def test_an_expired_lease_is_taken_over(backend: StateBackend) -> None:
    one, two = replica("one"), replica("two")
    backend.claim_lease(one, timedelta(seconds=1))
    assert backend.claim_lease(two, TTL).id == one.id
    time.sleep(1.3)
    assert backend.claim_lease(two, TTL).id == two.id
    assert backend.claim_lease(one, TTL).id == two.id  # the old holder follows now


def test_a_lease_whose_process_is_gone_is_taken_at_once(backend: StateBackend) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = replace(replica("gone"), pid=int(dead.stdout))
    backend.claim_lease(gone, TTL)
    two = replica("two")
    assert backend.claim_lease(two, TTL).id == two.id


def test_release_lets_another_take_it_and_only_the_holder_releases(backend: StateBackend) -> None:
    one, two = replica("one"), replica("two")
    backend.claim_lease(one, TTL)
    backend.release_lease(two.id)  # not the holder: nothing happens
    assert backend.claim_lease(two, TTL).id == one.id
    backend.release_lease(one.id)
    assert backend.claim_lease(two, TTL).id == two.id


def test_the_lease_and_the_writers_lock_are_apart(backend: StateBackend) -> None:
    one = replica("one")
    backend.claim_lease(one, TTL)
    writer = LockInfo.for_this_process("apply")
    backend.acquire_lock(writer)  # leading does not lock the state: apply still takes the lock
    assert backend.claim_lease(one, TTL).id == one.id
    backend.release_lock(writer.id)


@pytest.mark.slow  # waits for leases to expire and renew
def test_a_follower_takes_over_when_the_leader_stops_renewing(backend: StateBackend) -> None:
    changes: list[tuple[str, bool]] = []
    first = Leadership(backend, 1.0, lambda leading: changes.append(("first", leading)))
    second = Leadership(backend, 1.0, lambda leading: changes.append(("second", leading)))
    first.claim()
    second.claim()
    assert (first.leading, second.leading) == (True, False)
    assert second.known and second.holder is not None and second.holder.id == first.info.id
    time.sleep(1.2)  # the leader stalled: its lease lapsed, and it knows it without asking the backend
    assert not first.leading
    second.claim()
    assert second.leading
    first.claim()
    assert not first.leading
    assert changes == [("first", True), ("first", False), ("second", True)]
    second.release()
    first.claim()
    assert first.leading


def test_tables_of_the_first_version_are_read_as_they_are_and_upgraded_by_a_writer(pg_dsn: str, pg_schema: str) -> None:
    import psycopg

    from reconciler.state import postgres
    from reconciler.state.model import State

    first = postgres.PostgresBackend(pg_dsn, FLEET, pg_schema)
    first.save(State.new(FLEET), None)
    with psycopg.connect(pg_dsn) as db:  # as the release before the lease left them
        db.execute(f"DROP TABLE {pg_schema}.leases")
        db.execute(f"UPDATE {pg_schema}.meta SET value = '1' WHERE key = 'schema_version'")
    reader = postgres.PostgresBackend(pg_dsn, FLEET, pg_schema)
    loaded = reader.load()
    assert loaded is not None and loaded.serial == 1
    one = replica("one")
    assert postgres.PostgresBackend(pg_dsn, FLEET, pg_schema).claim_lease(one, TTL).id == one.id
    with psycopg.connect(pg_dsn) as db:
        version = db.execute(f"SELECT value FROM {pg_schema}.meta WHERE key = 'schema_version'").fetchone()
    assert version == ("2",)
