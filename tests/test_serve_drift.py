"""Drift in `reconciler serve`: vehicles read within a budget of reads, round-robin over the fleet and resumed
from the state; drift found in the sandbox repaired with self-heal, only reported without it; a repair that
keeps failing backs off. End to end against the sandbox (a real `serve` subprocess), and the state's keys."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.controller.drift import next_vehicles, reads_per_run
from reconciler.errors import StateError
from reconciler.model import Program
from reconciler.state.model import SlotRecord, State
from reconciler.vin import make_vin
from tests.browser import Dom
from tests.commands import calls, desired_programs, environment, held_programs
from tests.files import edit
from tests.servers import Sandbox, sandbox
from tests.serving import Served, all_runs, free_port, serving, wait_until

DRIVER = {"slot": 1, "enabled": True, "recurrence": "Daily", "start": "PT5H0M", "occurence": {"day": ["Mon"]}}
DRIFTED = make_vin(1)  # in the examples' weekday-shifts: slot 1 06:45 on weekdays


# ---- the budget of reads, and the state's keys -----------------------------------------------------------


def test_reads_per_run_spread_the_hourly_budget_over_the_runs() -> None:
    assert reads_per_run(0, 60) == 0  # 0 disables the reads
    assert reads_per_run(1, 60) == 1  # at least one when the setting is above 0
    assert reads_per_run(120, 60) == 2
    assert reads_per_run(3600, 1) == 1
    assert reads_per_run(54_000, 2) == 30


def managed_state(count: int) -> State:
    state = State.new("fleet")
    program = Program(1, "PT6H", ("Mon",))
    for index in range(count):
        vin = make_vin(index)
        state.vehicles_index[vin] = f"id-{index}"
        state.slots[vin] = {1: SlotRecord(program, "ops")}
    return state


def test_the_least_recently_read_go_first_never_read_first_of_all() -> None:
    state = managed_state(6)
    vins = sorted(state.slots)
    state.read_at = {vins[0]: "2026-01-01T00:00:02.000000Z", vins[1]: "2026-01-01T00:00:01.000000Z"}
    assert next_vehicles(state, 5) == [*vins[2:], vins[1]]
    assert next_vehicles(state, 0) == []
    del state.vehicles_index[vins[3]]  # no vehicle id: not a vehicle of the fleet, nothing to read
    assert vins[3] not in next_vehicles(state, 6)


def test_read_at_and_drifted_round_trip_and_are_decoded_strictly() -> None:
    state = managed_state(2)
    vin = sorted(state.slots)[0]
    state.read_at[vin] = "2026-01-01T00:00:01.500000Z"
    from reconciler.state.model import DriftMark

    state.drifted[vin] = DriftMark("2026-01-01T00:00:01Z", "abc")
    document = json.loads(state.to_json())
    assert document["read_at"] == {vin: "2026-01-01T00:00:01.500000Z"}
    assert document["drifted"] == {vin: {"at": "2026-01-01T00:00:01Z", "wanted": "abc"}}
    again = State.from_dict(document, "state.json")
    assert again.read_at == state.read_at and again.drifted == state.drifted
    assert "read_at" not in json.loads(State.new("fleet").to_json())  # optional: absent when empty
    # a time in another RFC 3339 form is kept in the canonical one, so that read times sort in time
    other = State.from_dict({**document, "read_at": {vin: "2026-01-01T01:00:00+01:00"}}, "state.json")
    assert other.read_at == {vin: "2026-01-01T00:00:00.000000Z"}
    for key, bad in (
        ("read_at", {vin: "yesterday"}),
        ("read_at", {vin: 5}),
        ("read_at", []),
        ("drifted", {vin: {"at": "2026-01-01T00:00:01Z"}}),
        ("drifted", {vin: {"at": "soon", "wanted": "abc"}}),
        ("drifted", {vin: {"at": "2026-01-01T00:00:01Z", "wanted": 3}}),
    ):
        with pytest.raises(StateError, match=f"state.json is corrupt: .*{key}"):
            State.from_dict({**document, key: bad}, "state.json")


# ---- serve against the sandbox ------------------------------------------------------------------------------


def configure(repo: Path, port: int, serve: str) -> None:
    """The examples' callback notifies the controller on `port`; `serve` is the body of the serve: block."""
    edit(repo / "manifests" / "callbacks.yaml", "http://127.0.0.1:8081", f"http://127.0.0.1:{port}")
    config = repo / "reconciler.yaml"
    config.write_text(config.read_text() + "serve:\n  lease_period: 3s\n" + serve)


def state_of(repo: Path) -> dict[str, Any]:
    return json.loads((repo / ".reconciler" / "state.json").read_text())  # type: ignore[no-any-return]


def remotes_to(box: Sandbox, vin: str) -> list[dict[str, Any]]:
    return [remote for remote in box.inspect("remotes")["remotes"] if remote["vin"] == vin]


def read_everyone(repo: Path) -> bool:
    """Every managed vehicle has been read since the programs it holds were confirmed."""
    state = state_of(repo)
    return set(state.get("read_at", {})) == set(state["slots"])


def drive(box: Sandbox, vin: str, **changes: Any) -> None:
    """Change a vehicle as its driver would, in the car's app (or make every remote to it fail)."""
    assert httpx.put(f"{box.root}/_sandbox/vehicles/{vin}", json=changes, timeout=10).status_code == 200


@contextmanager
def converged(repo: Path, serve: str, interval: str = "1s") -> Iterator[tuple[Sandbox, Served]]:
    """A serve whose fleet holds the manifests' programs and has been read once whole."""
    port = free_port()
    configure(repo, port, serve)
    with (
        sandbox(vehicles=40, asleep_rate=0.0) as box,
        serving(repo, environment(box), port, "--interval", interval) as served,
    ):
        wait_until(lambda: held_programs(box) == desired_programs(repo), what="the fleet converged")
        wait_until(lambda: read_everyone(repo), what="the whole fleet read")
        assert served.value("reconciler_drift_found_total") == 0  # nothing drifted yet: no false drift
        yield box, served


# 30 managed vehicles, 15 reads a run: the whole fleet in two runs of one second
BUDGET = "  drift_reads_per_hour: 54000\n"


@pytest.mark.slow
def test_drift_made_by_a_driver_is_found_and_repaired_with_self_heal(repo: Path) -> None:
    with converged(repo, BUDGET + "  self_heal: true\n") as (box, served):
        desired = desired_programs(repo)
        drive(box, DRIFTED, programs=[DRIVER])
        assert held_programs(box)[DRIFTED] != desired[DRIFTED]
        wait_until(lambda: served.value("reconciler_drift_found_total") >= 1, what="the drift found")
        wait_until(lambda: served.value("reconciler_drift_repaired_total") >= 1, what="the drift repaired")
        assert held_programs(box) == desired  # the vehicle holds the manifests' programs again
        assert len(remotes_to(box, DRIFTED)) == 2  # the first apply, and the repair: one remote
        assert served.value("reconciler_drift_found_total") == 1
        assert DRIFTED not in state_of(repo).get("drifted", {})
        assert served.stop() == 0
    log = served.log()
    assert f"vehicle.{DRIFTED}.slot.1 changed" in log and "self-heal repairs them now" in log
    assert "1 repaired since the last read" in log


@pytest.mark.slow
def test_without_self_heal_drift_is_only_reported_and_the_driver_keeps_the_program(repo: Path) -> None:
    with converged(repo, BUDGET + "  self_heal: false\n") as (box, served):
        desired = desired_programs(repo)
        drive(box, DRIFTED, programs=[DRIVER])
        wait_until(lambda: served.value("reconciler_drift_found_total") >= 1, what="the drift found")
        runs = all_runs(served)
        wait_until(lambda: all_runs(served) >= runs + 4, what="four more runs")  # the fleet read twice more
        held = held_programs(box)
        assert held[DRIFTED] == {1: ("PT5H0M", ("Mon",))}  # the driver's program stays
        assert {vin: programs for vin, programs in held.items() if vin != DRIFTED} == {
            vin: programs for vin, programs in desired.items() if vin != DRIFTED
        }
        assert len(remotes_to(box, DRIFTED)) == 1  # nothing sent to it since the first apply
        assert served.value("reconciler_drift_found_total") == 1  # reported once, not at every read
        assert served.value("reconciler_drift_repaired_total") == 0
        assert DRIFTED in state_of(repo)["drifted"]
        assert Dom(httpx.get(served.url + "/", timeout=30).text).count(id="fleet-OutOfSync") == 1  # left as found
        # the manifests ask something new of the vehicle: new work, applied at once (its drift repaired too)
        extra = repo / "manifests" / "night.yaml"
        extra.write_text(
            f"kind: Preconditioning\nname: night\ncallback: fleet-ops\nvehicles:\n  vins: [{DRIFTED}]\n"
            'programs:\n  - slot: 4\n    start: "22:00"\n    days: [Sun]\n'
        )
        wanted = desired_programs(repo)
        assert wanted[DRIFTED][4] == ("PT22H0M", ("Sun",))
        wait_until(lambda: held_programs(box) == wanted, what="the new program applied")
        assert len(remotes_to(box, DRIFTED)) == 2
        wait_until(lambda: DRIFTED not in state_of(repo).get("drifted", {}), what="the mark gone")
        assert served.stop() == 0
    assert f"vehicle.{DRIFTED}.slot.1 changed" in served.log()
    assert "self-heal is off: 1 drifted vehicles are left as found" in served.log()


@pytest.mark.slow
def test_a_repair_that_keeps_failing_backs_off_through_the_vehicles_hold(repo: Path) -> None:
    with converged(repo, BUDGET + "  self_heal: true\n") as (box, served):
        drive(box, DRIFTED, programs=[DRIVER], fails_with="VehicleConnectionTimeout")
        wait_until(lambda: len(remotes_to(box, DRIFTED)) == 2, what="the repair sent")
        wait_until(lambda: DRIFTED in state_of(repo).get("holds", {}), what="the vehicle held")
        runs = all_runs(served)
        wait_until(lambda: all_runs(served) >= runs + 5, what="five more runs")
        assert len(remotes_to(box, DRIFTED)) == 2  # held for its backoff: no repair sent again and again
        hold = state_of(repo)["holds"][DRIFTED]
        assert hold["cause"] == "VehicleConnectionTimeout" and hold["attempts"] == 1
        assert served.value("reconciler_drift_repaired_total") == 0
        assert served.stop() == 0


@pytest.mark.slow
def test_a_budget_of_n_reads_a_run_reads_n_vehicles_round_robin_resumed_from_the_state(repo: Path) -> None:
    from reconciler.controller.leader import Leadership
    from reconciler.controller.loop import Controller
    from reconciler.controller.metrics import Metrics
    from reconciler.operations import open_workspace

    config = repo / "reconciler.yaml"
    config.write_text(config.read_text() + "serve:\n  drift_reads_per_hour: 240\n")  # 4 a run of a minute
    moments = iter(datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=minute) for minute in range(100))
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**os.environ, **environment(box)}

        def controller() -> Controller:
            workspace = open_workspace(config, env)
            return Controller(
                workspace, env, Leadership(workspace.backend, 30), Metrics(), interval=60, now=lambda: next(moments)
            )

        first = controller()
        assert first.run_once().result == "applied"  # nothing recorded before it: nothing read
        assert calls(box)["vehicle_status"] == 0
        managed = sorted(state_of(repo)["slots"])
        assert len(managed) == 30
        batches = []
        for _ in range(8):
            before = calls(box)["vehicle_status"]
            first.run_once()
            assert calls(box)["vehicle_status"] - before == 4  # exactly the budget: no more, no fewer
            read_at = state_of(repo)["read_at"]
            newest = max(read_at.values())
            batches.append(sorted(vin for vin, moment in read_at.items() if moment == newest))
        # round-robin in VIN order; the eighth run reads the last two, then the two read longest ago
        assert batches[:7] == [managed[index : index + 4] for index in range(0, 28, 4)]
        assert batches[7] == sorted([*managed[28:], *managed[:2]])
        # a new controller (a restart, another leader) goes on where the state says, not from the start
        before = calls(box)["vehicle_status"]
        controller().run_once()
        assert calls(box)["vehicle_status"] - before == 4
        read_at = state_of(repo)["read_at"]
        assert sorted(vin for vin, moment in read_at.items() if moment == max(read_at.values())) == managed[2:6]
