"""The file backend: atomic saves, refusals that lose nothing, the lock, the journal and events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.errors import ExitCode, LockedError, StateError
from reconciler.state.backend import LockInfo, isotime, utcnow
from reconciler.state.file import FileBackend
from reconciler.state.lock import Lease
from reconciler.state.model import ActionRecord, SlotRecord, State
from tests.planning import program


@pytest.fixture
def backend(tmp_path: Path) -> FileBackend:
    return FileBackend(tmp_path / ".reconciler" / "state.json")


def sample() -> State:
    state = State.new("fleet-1")
    state.vehicles_index["VF3UHNKF5RL000005"] = "vid-1"
    state.slots["VF3UHNKF5RL000005"] = {
        1: SlotRecord(program(1), "cb", "r1", "Set", "s"),
        3: SlotRecord(program(3, "PT9H", ("Sat",), recurrence="None", enabled=False), "cb", "r1", "Delete", "t"),
    }
    state.actions["r1"] = ActionRecord(
        "VF3UHNKF5RL000005",
        "cb",
        "2026-11-25T07:00:00Z",
        "Failed",
        "Failed",
        "VehicleConnectionTimeout",
        "2026-11-25T07:01:00Z",
    )
    return state


def test_round_trip_serials_and_backup(backend: FileBackend) -> None:
    assert backend.load() is None
    state = sample()
    assert backend.save(state, None) == 1
    loaded = backend.load()
    assert loaded is not None
    assert loaded.to_dict() == state.to_dict()
    assert loaded.slots["VF3UHNKF5RL000005"][3].program == program(
        3, "PT9H", ("Sat",), recurrence="None", enabled=False
    )
    assert not backend.backup.exists()
    loaded.vehicles_index["X"] = "y"
    assert backend.save(loaded, 1) == 2
    assert json.loads(backend.backup.read_text())["serial"] == 1
    assert json.loads(backend.path.read_text())["serial"] == 2
    assert sorted(p.name for p in backend.path.parent.iterdir()) == ["state.json", "state.json.backup"]


def test_equal_programs_are_shared_after_loading(backend: FileBackend) -> None:
    state = State.new("fleet-1")
    for index in range(50):
        state.slots[f"VIN{index}"] = {1: SlotRecord(program(1), "cb", "r", "Set", "s")}
    backend.save(state, None)
    loaded = backend.load()
    assert loaded is not None
    assert len({id(slots[1].program) for slots in loaded.slots.values()}) == 1


def test_stale_serial_and_other_lineage_are_refused(backend: FileBackend) -> None:
    state = sample()
    backend.save(state, None)
    first = backend.load()
    second = backend.load()
    assert first is not None and second is not None
    backend.save(first, 1)
    before = backend.path.read_bytes()
    with pytest.raises(StateError, match="moved to serial 2 since serial 1 was loaded; nothing saved"):
        backend.save(second, 1)
    with pytest.raises(StateError, match="another state was written here"):
        backend.save(State.new("fleet-1"), 2)
    with pytest.raises(StateError, match="another state was written here"):
        backend.save(State.new("fleet-1"), None)
    assert backend.path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is corrupt (not JSON"),
        (b'{"hello": "world"}', "is not a reconciler state file"),
        (b'{"version": 9, "lineage": "x"}', "has state version 9, newer than this reconciler reads (1)"),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", "slots": {"V": {"7": []}}}',
            "is corrupt",
        ),
        (b'{"version": 1, "lineage": "x", "serial": -1, "fleet": "f", "salt": "s"}', "is corrupt"),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", "slots": {"V": {"1": ["bad", "cb", null, "Set", ""]}}}',
            "is corrupt",
        ),
        (b"\xff\xfe", "is corrupt"),
    ],
)
def test_untrustworthy_state_is_refused_and_never_overwritten(
    backend: FileBackend, content: bytes, message: str
) -> None:
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(content)
    with pytest.raises(StateError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        backend.load()
    assert raised.value.exit_code is ExitCode.ERROR
    with pytest.raises(StateError):
        backend.save(sample(), None)
    assert backend.path.read_bytes() == content


def test_corrupt_state_names_its_backup(backend: FileBackend) -> None:
    backend.save(sample(), None)
    state = backend.load()
    assert state is not None
    backend.save(state, 1)
    backend.path.write_text("{")
    with pytest.raises(StateError, match=r"the previous version is in .*state\.json\.backup"):
        backend.load()


# ---- lock -------------------------------------------------------------------------------------------------


def test_second_writer_is_told_who_holds_the_lock(backend: FileBackend) -> None:
    with Lease(backend, "apply") as lease:
        with pytest.raises(LockedError) as raised:
            backend.acquire_lock(LockInfo.for_this_process("state rm"))
        assert raised.value.exit_code is ExitCode.LOCKED
        message = str(raised.value)
        assert f"running 'apply' since {lease.info.started}" in message
        assert f"pid {os.getpid()}" in message
        assert f"reconciler state unlock {lease.info.id}" in message
    assert backend.current_lock() is None


def test_lease_is_released_when_the_run_fails(backend: FileBackend) -> None:
    with pytest.raises(RuntimeError), Lease(backend, "apply"):
        raise RuntimeError("boom")
    assert backend.current_lock() is None


def test_lease_renews_while_the_run_lives(backend: FileBackend) -> None:
    with Lease(backend, "apply", ttl=timedelta(seconds=3)) as lease:
        first = backend.current_lock()
        assert first is not None
        time.sleep(2.2)  # renewed every second
        later = backend.current_lock()
        assert later is not None
        assert later.id == first.id
        assert later.expires > first.expires
        assert not later.expired()
        assert lease.lost is None


def test_expired_lock_is_taken_over(backend: FileBackend) -> None:
    old = LockInfo(
        "old-id", "ci", "another-host", 1, "apply", isotime(utcnow()), isotime(utcnow() - timedelta(seconds=1))
    )
    backend.acquire_lock(old)
    with Lease(backend, "apply") as lease:
        holder = backend.current_lock()
        assert holder is not None and holder.id == lease.info.id


def test_lock_of_a_dead_process_on_this_host_is_taken_over(backend: FileBackend) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = LockInfo.for_this_process("apply")
    dead = LockInfo(dead.id, dead.holder, dead.host, int(child.stdout), "apply", dead.started, dead.expires)
    backend.acquire_lock(dead)
    with Lease(backend, "refresh") as lease:
        assert backend.current_lock().id == lease.info.id  # type: ignore[union-attr]


def test_force_unlock_needs_the_right_id(backend: FileBackend) -> None:
    info = LockInfo.for_this_process("apply")
    backend.acquire_lock(info)
    with pytest.raises(StateError, match="lock id nope does not hold state"):
        backend.force_unlock("nope")
    assert backend.force_unlock(info.id) == info
    assert backend.current_lock() is None
    with pytest.raises(StateError, match="is not locked"):
        backend.force_unlock(info.id)


def test_renewing_a_lost_lock_fails(backend: FileBackend) -> None:
    info = LockInfo.for_this_process("apply")
    backend.acquire_lock(info)
    backend.force_unlock(info.id)
    with pytest.raises(StateError, match="lost the lock"):
        backend.renew_lock(info)


HOLDER = """
import sys, time
from pathlib import Path
from reconciler.cli import terminate_as_interrupt
from reconciler.state.file import FileBackend
from reconciler.state.lock import Lease
try:
    with terminate_as_interrupt(), Lease(FileBackend(Path(sys.argv[1])), "apply"):
        print("locked", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_lock_is_released_on_sigterm_and_sigint(backend: FileBackend, signal_name: str) -> None:
    import signal

    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(backend.path)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        assert backend.current_lock() is not None
        process.send_signal(getattr(signal, signal_name))
        assert process.wait(timeout=20) == 130
    assert backend.current_lock() is None


def test_sigkilled_holder_leaves_a_lock_the_next_writer_takes(backend: FileBackend) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(backend.path)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        process.kill()
        process.wait(timeout=20)
    assert backend.current_lock() is not None
    with Lease(backend, "apply") as lease:
        assert backend.current_lock().id == lease.info.id  # type: ignore[union-attr]


# ---- journal and events ------------------------------------------------------------------------------------


def test_journal_appends_and_survives_a_torn_line(backend: FileBackend) -> None:
    backend.append_journal([{"type": "intent", "call": "c1"}])
    with open(backend.journal_path, "ab") as handle:
        handle.write(b'{"type": "res')  # a crash in the middle of a write
    backend.append_journal([{"type": "result", "call": "c1"}])
    assert backend.read_journal() == [{"type": "intent", "call": "c1"}, {"type": "result", "call": "c1"}]
    backend.clear_journal()
    assert backend.read_journal() == []


def test_events_are_cleared_only_up_to_what_was_read(backend: FileBackend) -> None:
    backend.append_events([{"n": 1}, {"n": 2}])
    seen = backend.read_events()
    backend.append_events([{"n": 3}])  # arrives while the writer folds the first two
    backend.clear_events(len(seen))
    assert backend.read_events() == [{"n": 3}]
    backend.clear_events(5)
    assert backend.read_events() == []
