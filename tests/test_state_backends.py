"""Every state backend keeps the same promises: optimistic saves, the writers' lock, the journal, events.

The same tests run on the file backend and on a real PostgreSQL (one throwaway cluster for the session, a
schema of its own per test).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from reconciler.clock import isotime, utcnow
from reconciler.errors import ExitCode, LockedError, LockLostError, StateError
from reconciler.state.backend import LockInfo, StateBackend
from reconciler.state.lock import Lease
from reconciler.state.model import ActionRecord, SlotRecord, State
from tests.planning import program

FLEET = "fleet-1"  # the fleet of the `backend` fixture (conftest.py)


def sample(fleet: str = FLEET) -> State:
    state = State.new(fleet)
    state.vehicles_index["VF3UHNKF5RL000005"] = "vid-1"
    state.slots["VF3UHNKF5RL000005"] = {1: SlotRecord(program(1), "cb", "r1", "Set", "s")}
    state.actions["r1"] = ActionRecord("VF3UHNKF5RL000005", "cb", "2026-11-25T07:00:00Z", "Success")
    return state


def test_save_and_load_versions(backend: StateBackend) -> None:
    assert backend.load() is None
    state = sample()
    assert backend.save(state, None) == 1
    loaded = backend.load()
    assert loaded is not None and loaded.to_dict() == state.to_dict()
    loaded.vehicles_index["VR1JCHNS0RM000002"] = "vid-2"
    assert backend.save(loaded, 1) == 2
    again = backend.load()
    assert again is not None and again.serial == 2 and again.vehicles_index["VR1JCHNS0RM000002"] == "vid-2"
    assert [version.serial for version in backend.history()][:2] == [2, 1]


def test_a_lost_update_or_another_lineage_is_refused_and_changes_nothing(backend: StateBackend) -> None:
    backend.save(sample(), None)
    first, second = backend.load(), backend.load()
    assert first is not None and second is not None
    backend.save(first, 1)
    with pytest.raises(StateError, match="moved to serial 2 since serial 1 was loaded; nothing saved"):
        backend.save(second, 1)
    with pytest.raises(StateError, match="another state was written"):
        backend.save(sample(), None)
    loaded = backend.load()
    assert loaded is not None and loaded.serial == 2 and loaded.lineage == first.lineage


def test_push_keeps_a_higher_serial(backend: StateBackend) -> None:
    state = sample()
    assert backend.save(state, None, serial=7) == 7
    assert backend.load().serial == 7  # type: ignore[union-attr]


def test_the_second_writer_is_told_who_holds_the_lock(backend: StateBackend) -> None:
    with Lease(backend, "apply") as lease:
        with pytest.raises(LockedError) as raised:
            backend.acquire_lock(LockInfo.for_this_process("refresh"))
        assert raised.value.exit_code is ExitCode.LOCKED
        assert f"reconciler state unlock {lease.info.id}" in str(raised.value)
        assert "running 'apply'" in str(raised.value)
        holder = backend.current_lock()
        assert holder is not None and holder.id == lease.id
    assert backend.current_lock() is None


@pytest.mark.slow
def test_an_expired_lock_is_taken_over_and_its_old_holder_can_save_nothing(backend: StateBackend) -> None:
    backend.save(sample(), None)
    old = LockInfo.for_this_process("apply")
    old = LockInfo(old.id, "ci", "another-host", 1, "apply", old.started, isotime(utcnow() + timedelta(seconds=1)))
    backend.acquire_lock(old)
    time.sleep(1.5)
    with Lease(backend, "apply") as lease:
        assert backend.current_lock().id == lease.id  # type: ignore[union-attr]
        state = backend.load()
        assert state is not None
        with pytest.raises(LockLostError):
            backend.save(state, state.serial, lock=old.id)
        with pytest.raises(LockLostError):
            backend.renew_lock(old)
        assert backend.save(state, state.serial, lock=lease.id) == 2


def test_force_unlock_needs_the_right_id(backend: StateBackend) -> None:
    info = LockInfo.for_this_process("apply")
    backend.acquire_lock(info)
    with pytest.raises(StateError, match="lock id nope does not hold state"):
        backend.force_unlock("nope")
    assert backend.force_unlock(info.id).id == info.id
    assert backend.current_lock() is None


@pytest.mark.slow
def test_a_lease_renews_and_notices_a_takeover(backend: StateBackend) -> None:
    stop = threading.Event()
    with Lease(backend, "apply", ttl=timedelta(seconds=0.9), stop=stop) as lease:
        first = backend.current_lock()
        time.sleep(1.2)  # renewed every 0.3 s
        assert backend.current_lock().expires >= first.expires  # type: ignore[union-attr]
        assert not stop.is_set()
        backend.force_unlock(lease.id)
        backend.acquire_lock(LockInfo.for_this_process("apply (elsewhere)"))
        assert stop.wait(5)
        with pytest.raises(LockLostError):
            lease.check()


def test_a_failed_release_never_hides_the_error_that_stopped_the_run(
    backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(lock_id: str) -> None:
        raise StateError("the state database went away")

    monkeypatch.setattr(backend, "release_lock", unreachable)
    with pytest.raises(StateError, match="could not save") as raised, Lease(backend, "apply") as lease:
        raise StateError("the state could not save")
    assert raised.value.__notes__ == [
        f"Warning: the lock is left behind (the state database went away): it expires {lease.info.expires}, or "
        f"`reconciler state unlock {lease.id}` removes it"
    ]
    monkeypatch.undo()
    backend.force_unlock(lease.id)  # what the warning says to run
    monkeypatch.setattr(backend, "release_lock", unreachable)
    with pytest.raises(StateError, match="went away"), Lease(backend, "apply"):  # nothing else to tell: it is the error
        pass


def test_journal_entries_from_many_threads_are_all_kept_in_order(backend: StateBackend) -> None:
    def work(thread: int) -> None:
        for number in range(25):
            backend.append_journal([{"kind": "intent", "id": f"{thread}-{number}", "op": "remote"}])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = backend.read_journal()
    assert len(entries) == 200
    for thread in range(8):
        mine = [entry["id"] for entry in entries if entry["id"].startswith(f"{thread}-")]
        assert mine == [f"{thread}-{number}" for number in range(25)]
    backend.clear_journal()
    assert backend.read_journal() == []


def test_events_read_are_replaced_and_those_recorded_meanwhile_kept(backend: StateBackend) -> None:
    backend.append_events([{"remoteActionId": "a"}, {"remoteActionId": "b"}])
    read = backend.read_events()
    assert read == [{"remoteActionId": "a"}, {"remoteActionId": "b"}]
    backend.append_events([{"remoteActionId": "c"}])  # a receiver records while the writer folds
    backend.replace_events(len(read), [{"remoteActionId": "b", "unmatched": True}])
    assert sorted(event["remoteActionId"] for event in backend.read_events()) == ["b", "c"]


def test_the_signature_moves_with_the_state_and_the_journal(backend: StateBackend) -> None:
    empty = backend.signature()
    backend.save(sample(), None)
    saved = backend.signature()
    assert saved != empty
    backend.append_journal([{"kind": "intent", "id": "x", "op": "remote"}])
    assert backend.signature() != saved


def test_an_entry_that_need_not_wait_is_written_with_the_next_that_does(backend: StateBackend) -> None:
    backend.append_journal([{"kind": "result", "id": "a", "ok": True}], wait=False)
    assert backend.read_journal() == []  # not written yet: no one waited
    backend.append_journal([{"kind": "intent", "id": "b", "op": "remote"}])
    assert [entry["id"] for entry in backend.read_journal()] == ["a", "b"]
    backend.append_journal([{"kind": "result", "id": "b", "ok": True}], wait=False)
    backend.clear_journal()  # a saved state holds it all: what is queued goes too
    backend.append_journal([{"kind": "intent", "id": "c", "op": "remote"}])
    assert [entry["id"] for entry in backend.read_journal()] == ["c"]
