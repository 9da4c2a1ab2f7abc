"""The file backend: atomic saves, refusals that lose nothing, the lock, the journal and events."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.clock import isotime, utcnow
from reconciler.errors import ExitCode, LockedError, LockLostError, StateError
from reconciler.state.backend import LockInfo
from reconciler.state.file import FileBackend
from reconciler.state.lock import Lease
from reconciler.state.model import ActionRecord, SlotRecord, State
from reconciler.state.model import program_text as state_program_text
from tests.commands import SECRETS, run
from tests.files import EXAMPLES
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


def test_vehicles_alike_share_one_layout_in_the_file(backend: FileBackend) -> None:
    state = State.new("fleet-1")
    for index in range(50):
        state.slots[f"VIN{index}"] = {
            1: SlotRecord(program(1), "cb", f"r{index}", "Set", "s"),
            2: SlotRecord(program(2, "PT18H"), "cb", f"r{index}", "Set", "s"),
        }
    state.slots["VIN7"][2] = SlotRecord(program(2, "PT18H"), "cb", "later", "Set", "s")
    backend.save(state, None)
    data = json.loads(backend.path.read_text())
    assert data["version"] == 2
    assert data["layouts"] == [
        [
            [1, "PT7H30M/Mon,Tue,Wed,Thu,Fri/Daily/on", "cb", "Set", "s"],
            [2, "PT18H/Mon,Tue,Wed,Thu,Fri/Daily/on", "cb", "Set", "s"],
        ]
    ]
    assert data["slots"]["VIN3"] == [0, "r3"]  # one remote carried both slots
    assert data["slots"]["VIN7"] == [0, "r7", "later"]  # one action per slot
    loaded = backend.load()
    assert loaded is not None and loaded.slots == state.slots


def test_a_version_1_state_is_read_and_written_back_as_version_2(backend: FileBackend) -> None:
    """A state written by a release that wrote version 1 loads to the same records; the next save upgrades it."""
    state = sample()
    state.serial = 3
    old, records = state.to_dict(), state.slots
    old["version"] = 1
    del old["layouts"]
    old["slots"] = {
        vin: {
            str(slot): [state_program_text(r.program), r.callback, r.action, r.kind, r.schedule]
            for slot, r in slots.items()
        }
        for vin, slots in records.items()
    }
    backend.path.parent.mkdir(parents=True)
    backend.path.write_text(json.dumps(old))
    loaded = backend.load()
    assert loaded is not None
    assert loaded.slots == records
    assert loaded.to_dict() == state.to_dict()
    backend.save(loaded, 3)
    assert json.loads(backend.path.read_text())["version"] == 2


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
        (b'{"version": 9, "lineage": "x"}', "has state version 9, newer than this reconciler reads (2)"),
        *(
            (b'{"version": 2, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", ' + body + b"}", message)
            for body, message in (
                (b'"layouts": {}', "layouts is not a list"),
                (b'"layouts": [[[5, "PT7H0M/Mon/Daily/on", "cb", "Set", ""]]]', "layouts.0: slot 5 is not a slot"),
                (b'"layouts": [[[1, "PT7H0M/Mon/Daily/on", "cb", "Set"]]]', "layouts.0 holds a row that is not"),
                (
                    b'"layouts": [[[1, "PT7H0M/Mon/Daily/on", "cb", "Set", ""], [1, "PT8H0M/Mon/Daily/on", "cb", '
                    b'"Set", ""]]]',
                    "layouts.0 names a slot twice",
                ),
                (b'"layouts": [[[1, "PT7H0M/Mon/Daily/on", "cb", "Gone", ""]]]', "is corrupt"),
                (b'"layouts": [], "slots": {"V": [0, "r"]}', "slots.V is not [layout, action...]"),
                (b'"layouts": [[]], "slots": {"V": [true, "r"]}', "slots.V is not [layout, action...]"),
                (
                    b'"layouts": [[[1, "PT7H0M/Mon/Daily/on", "cb", "Set", ""], [2, "PT8H0M/Mon/Daily/on", "cb", '
                    b'"Set", ""]]], "slots": {"V": [0, "r", "s", "t"]}',
                    "slots.V does not name one action per slot of its layout",
                ),
                (b'"layouts": [[[1, "PT7H0M/Mon/Daily/on", "cb", "Set", ""]]], "slots": {"V": [0, 5]}', "action 5"),
            )
        ),
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
        (b'{"version": "1", "lineage": "x"}', "is corrupt: version '1' is not a state version"),
        (b'{"version": true, "lineage": "x"}', "is corrupt: version True is not a state version"),
        (b"[" * 100_000 + b"]" * 100_000, "is corrupt (not JSON"),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", "actions": {"r": [1, 2, 3]}}',
            "is corrupt",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", '
            b'"actions": {"r": [7, "cb", "2026-11-25T07:00:00Z", "Pending", null, null, null]}}',
            "actions.r holds a value of the wrong type",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", '
            b'"actions": {"r": ["V", "cb", "yesterday", "Pending", null, null, null]}}',
            "is corrupt",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", '
            b'"actions": {"r": ["V", "cb", "2026-11-25T07:00:00Z", {"x": 1}, null, null, null]}}',
            "actions.r holds a value of the wrong type",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", '
            b'"slots": {"V": {"1": ["PT7H0M/Mon/Daily/on", ["cb"], null, "Set", ""]}}}',
            "slots.V.1 holds a value of the wrong type",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", "slots": []}',
            "slots is not a mapping",
        ),
        (b'{"version": 1, "lineage": "x", "serial": 1.5, "fleet": "f", "salt": "s"}', "is corrupt"),
        (b'{"version": 1, "lineage": ["x"], "serial": 1, "fleet": "f", "salt": "s"}', "is corrupt"),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", "vehicles_index": {"V": 5}}',
            "vehicles_index holds a value that is not a string",
        ),
        (
            b'{"version": 1, "lineage": "x", "serial": 1, "fleet": "f", "salt": "s", '
            b'"callbacks": {"cb": {"id": 3, "spec": {}, "status": "Running"}}}',
            "callbacks.cb holds a value of the wrong type",
        ),
    ],
)
def test_untrustworthy_state_is_refused_and_never_overwritten(
    backend: FileBackend, content: bytes, message: str
) -> None:
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(content)
    with pytest.raises(StateError, match=re.escape(message)) as raised:
        backend.load()
    assert raised.value.exit_code is ExitCode.ERROR
    with pytest.raises(StateError):
        backend.save(sample(), None)
    assert backend.path.read_bytes() == content


@pytest.mark.parametrize("corrupt", ["{", '{"version": 1, "lineage": "x", "serial": -4, "fleet": "f", "salt": "s"}'])
def test_corrupt_state_names_its_backup(backend: FileBackend, corrupt: str) -> None:
    backend.save(sample(), None)
    state = backend.load()
    assert state is not None
    backend.save(state, 1)
    backend.path.write_text(corrupt)
    with pytest.raises(StateError, match=r"the previous version is in .*state\.json\.backup: check it, then copy"):
        backend.load()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_state_that_is_not_a_regular_file_is_refused_at_once(backend: FileBackend, kind: str) -> None:
    backend.path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(backend.path)
    elif kind == "device":
        backend.path.symlink_to("/dev/zero")
    else:
        backend.path.mkdir()
    with pytest.raises(StateError, match="is not a regular file"):
        backend.load()  # returns at once: a FIFO is not waited on, /dev/zero not read
    with pytest.raises(StateError, match="is not a regular file"):
        backend.save(sample(), None)


def test_a_fifo_as_state_hangs_no_command(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "repo")
    (tmp_path / "repo" / ".reconciler").mkdir()
    os.mkfifo(tmp_path / "repo" / ".reconciler" / "state.json")
    result = run("plan", cwd=tmp_path / "repo", env=SECRETS)  # a hang would time out
    assert result.returncode == 1
    assert "is not a regular file" in result.stderr


def test_the_next_writer_removes_what_a_killed_save_left(backend: FileBackend) -> None:
    backend.save(sample(), None)
    folder = backend.path.parent
    leftovers = [folder / ".state.json.0123abcd.tmp", folder / ".state.json.backup.4567.tmp"]
    for leftover in leftovers:
        leftover.write_text("half a state")
    fresh_lock_temp = folder / ".state.json.lock.89ab.tmp"
    fresh_lock_temp.write_text("another writer is taking the lock right now")
    with Lease(backend, "apply"):
        pass
    assert not any(leftover.exists() for leftover in leftovers)
    assert fresh_lock_temp.exists()  # maybe someone's lock in the making: left alone until old


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


@pytest.mark.slow
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


@pytest.mark.parametrize("content", [b"", b"{", b'{"id": 5}', b"\x00\x01"])
def test_an_unreadable_lock_is_taken_over_by_the_next_writer(backend: FileBackend, content: bytes) -> None:
    backend.path.parent.mkdir(parents=True)
    backend.lock_path.write_bytes(content)  # a writer killed between creating the lock file and writing it
    shown = backend.current_lock()
    assert shown is not None and shown.id == "unreadable" and "unreadable lock file" in shown.describe()
    with Lease(backend, "apply") as lease:
        assert backend.current_lock().id == lease.info.id  # type: ignore[union-attr]
    assert backend.current_lock() is None


def test_state_unlock_removes_an_unreadable_lock(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "repo")
    lock = tmp_path / "repo" / ".reconciler" / "state.json.lock"
    lock.parent.mkdir()
    lock.write_text("")
    shown = run("show", "--state", cwd=tmp_path / "repo", env=SECRETS)
    assert shown.returncode == 0, shown.stderr
    result = run("state", "unlock", "unreadable", cwd=tmp_path / "repo", env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert not lock.exists()


def test_a_lease_that_loses_its_lock_says_so_and_stops_the_run(backend: FileBackend) -> None:
    import threading

    stop = threading.Event()
    with Lease(backend, "apply", ttl=timedelta(seconds=0.3), stop=stop) as lease:
        backend.lock_path.write_text(LockInfo.for_this_process("apply (elsewhere)").to_json())
        assert stop.wait(5)
        with pytest.raises(LockLostError) as raised:
            lease.check()
        assert raised.value.exit_code is ExitCode.LOCKED
        with pytest.raises(LockLostError):
            backend.save(sample(), None, lock=lease.id)
    assert not backend.path.exists()


def test_renewing_a_lost_lock_fails(backend: FileBackend) -> None:
    info = LockInfo.for_this_process("apply")
    backend.acquire_lock(info)
    backend.force_unlock(info.id)
    with pytest.raises(StateError, match="lost the lock"):
        backend.renew_lock(info)


HOLDER = """
import sys, time
from pathlib import Path
from reconciler.cli.signals import stop_on_signals
from reconciler.state.file import FileBackend
from reconciler.state.lock import Lease
try:
    with stop_on_signals(), Lease(FileBackend(Path(sys.argv[1])), "apply"):
        print("locked", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_a_journal_line_that_is_not_an_entry_is_refused_not_crashed_on(backend: FileBackend) -> None:
    backend.append_journal([{"kind": "intent", "id": "a", "op": "remote"}])
    with open(backend.journal_path, "ab") as handle:
        handle.write(b"[1, 2, 3]\n")
    with pytest.raises(StateError, match=r"state\.json\.journal is corrupt: line 2 is not a journal entry"):
        backend.read_journal()


def test_a_journal_entry_of_the_wrong_shape_is_refused_when_folded(backend: FileBackend) -> None:
    from reconciler.state.journal import fold

    entries = [
        {"kind": "intent", "id": "a", "op": "remote", "call": "not a call"},
        {"kind": "result", "id": "a", "ok": True, "action_id": "r", "posted_at": "t"},
    ]
    with pytest.raises(StateError, match="entry 2 \\(remote\\) cannot be applied"):
        fold(State.new("f"), entries)
    with pytest.raises(StateError, match="entry 1 is not an intent"):
        fold(State.new("f"), [{"kind": "intent", "id": 5, "op": "drop-tables"}])


def test_events_lines_that_are_not_objects_are_read_as_they_are_for_folding_to_judge(backend: FileBackend) -> None:
    backend.append_events([{"n": 1}])
    with open(backend.events_path, "ab") as handle:
        handle.write(b'"a string"\n42\n[]\n')
    backend.append_events([{"n": 2}])
    assert backend.read_events() == [{"n": 1}, "a string", 42, [], {"n": 2}]


def test_events_are_cleared_only_up_to_what_was_read(backend: FileBackend) -> None:
    backend.append_events([{"n": 1}, {"n": 2}])
    seen = backend.read_events()
    backend.append_events([{"n": 3}])  # arrives while the writer folds the first two
    backend.clear_events(len(seen))
    assert backend.read_events() == [{"n": 3}]
    backend.clear_events(5)
    assert backend.read_events() == []


def test_a_state_just_loaded_is_saved_over_without_reading_it_again(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large state takes half a second to read: a writer that loaded it does not read it again to save."""
    backend.save(sample(), None)
    writer = FileBackend(backend.path)
    state = writer.load()
    assert state is not None
    reads: list[str] = []
    decode = State.from_dict
    monkeypatch.setattr(State, "from_dict", lambda data, origin: reads.append(origin) or decode(data, origin))
    assert writer.save(state, 1) == 2
    assert reads == []
    # another writer's save in between is still seen: the file no longer matches what was loaded
    other = FileBackend(backend.path)
    newer = other.load()
    assert newer is not None and other.save(newer, 2) == 3
    reads.clear()
    with pytest.raises(StateError, match="moved to serial 3 since serial 2 was loaded"):
        writer.save(state, 2)
    assert reads == [str(backend.path)]
