"""Properties of planning: converged after its own effect, touching only what differs, and grouping vehicles
without changing what any one of them gets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.clock import isotime
from reconciler.diagnostics import Source
from reconciler.model import DAYS, Desired, Program, Schedule, SlotAssignment
from reconciler.plan import CallKind
from reconciler.state.model import ActionRecord, Hold, SlotKind, SlotRecord, State
from tests.planning import NOW, action, desired, plan, record_success, state

pytestmark = pytest.mark.slow

VINS = [f"VF3UHNKF5RL{i:06d}" for i in range(8)]
PROGRAM = st.builds(
    lambda slot, h, m, days, rec, on: Program(slot, f"PT{h}H{m}M", days, rec, on),
    st.integers(1, 4),
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 45]),
    st.sampled_from([DAYS[:5], DAYS[5:], DAYS, ("Mon",)]),
    st.sampled_from(["Daily", "None"]),
    st.booleans(),
)
FLEET = st.dictionaries(
    st.sampled_from(VINS),
    st.lists(PROGRAM, max_size=4, unique_by=lambda p: p.slot),
    max_size=len(VINS),
)


def empty_state() -> State:
    return State(lineage="L", serial=0, fleet="fleet-1", salt="salt")


def _slots(want: Desired, vin: str) -> dict[int, Program]:
    return {a.program.slot: a.program for a in want.vehicles.get(vin, ())}


@settings(max_examples=150)
@given(FLEET)
def test_planning_after_the_plans_effect_is_empty(fleet: dict[str, list[Program]]) -> None:
    want = desired(fleet)
    recorded = empty_state()
    after = record_success(plan(want, recorded), recorded, want)
    second = plan(want, after)
    assert second.changes == ()
    assert second.notices == ()


@settings(max_examples=150)
@given(FLEET, FLEET)
def test_d2_against_state_of_d1_touches_exactly_the_differing_vehicles(
    one: dict[str, list[Program]], two: dict[str, list[Program]]
) -> None:
    d1, d2 = desired(one), desired(two)
    start = empty_state()
    recorded = record_success(plan(d1, start), start, d1)
    result = plan(d2, recorded)
    differing = {vin for vin in VINS if _slots(d1, vin) != _slots(d2, vin)}
    touched = {c.vin for c in result.changes if c.kind == "slot"}
    assert touched == differing
    remote_calls = [call for call in result.calls if call.kind is CallKind.REMOTE]
    assert sorted(call.vin for call in remote_calls) == sorted(differing)  # one call each
    for call in remote_calls:
        assert call.vin is not None
        sent = {p.slot: (verb, p) for verb, p in call.programs}
        old, new = _slots(d1, call.vin), _slots(d2, call.vin)
        assert {s for s, (verb, _) in sent.items() if verb == "Delete"} == old.keys() - new.keys()
        assert {s: p for s, (verb, p) in sent.items() if verb == "Set"} == {
            s: p for s, p in new.items() if old.get(s) != p
        }


ENDINGS = [
    None,  # observed on the vehicle
    "missing",  # the remote's record is gone: outcome unknown
    "Success",
    "AlreadyDone",
    "Pending",  # young: in flight
    "Pending-old",  # past the pending timeout
    "Failed:MissingRights",  # permanent
    "Failed:VehicleConnectionTimeout",  # transient
]

HOLDS = [
    Hold(isotime(NOW + timedelta(days=6)), "TooManyWakeUpsOverMonth", 1),  # in force: everything held
    Hold(isotime(NOW + timedelta(minutes=10)), "VehicleConnectionTimeout", 2),  # in force: retries held
    Hold(isotime(NOW + timedelta(minutes=10)), "VehicleBatteryChargeTooLow", 2),  # the same, another cause
    Hold(isotime(NOW - timedelta(minutes=1)), "TooManyWakeUpsOverMonth", 1),  # ended: nothing held
]


@st.composite
def recorded_fleets(draw: st.DrawFn) -> tuple[Desired, State, bool, bool]:
    """A fleet whose vehicles share their desired tuples (as the manifests make them) and their recorded programs
    (as a loaded state does), and whose recorded slots end every way a remote can, each with its own remote id."""
    lists = draw(st.lists(st.lists(PROGRAM, max_size=4, unique_by=lambda p: p.slot), min_size=1, max_size=3))
    shared = [tuple(SlotAssignment(p, "cb", "s") for p in sorted(ps, key=lambda p: p.slot)) for ps in lists]
    chosen = draw(st.lists(st.sampled_from(VINS), unique=True))
    vehicles = {vin: draw(st.sampled_from(shared)) for vin in chosen}
    programs = [p for ps in lists for p in ps]
    slots: dict[str, dict[int, SlotRecord]] = {}
    actions: dict[str, ActionRecord] = {}
    loaded: dict[Program, Program] = {}
    # a few recorded layouts (slot -> program), shared by vehicles that differ in what reconciler asked of the
    # slot (kind) and in how the remotes ended
    layouts = []
    for _ in range(draw(st.integers(1, 3))):
        layout = {}
        for slot in draw(st.sets(st.integers(1, 4), max_size=4)):
            base = draw(st.sampled_from(programs) if programs and draw(st.booleans()) else PROGRAM)
            program = loaded.setdefault(*[Program(slot, base.start, base.days, base.recurrence, base.enabled)] * 2)
            layout[slot] = program
        layouts.append(layout)
    for vin in draw(st.lists(st.sampled_from(VINS), unique=True)):
        records = {}
        for slot, program in draw(st.sampled_from(layouts)).items():
            kind = draw(st.sampled_from(list(SlotKind)))
            ending = draw(st.sampled_from(ENDINGS))
            action_id = None if ending is None or kind == SlotKind.FOREIGN else f"r-{vin}-{slot}"
            if action_id is not None and ending != "missing":
                outcome, _, cause = str(ending).partition(":")
                age = timedelta(hours=3) if outcome == "Pending-old" else timedelta(minutes=5)
                actions[action_id] = action(vin, outcome.removesuffix("-old"), age=age, cause=cause or None)
            records[slot] = SlotRecord(program, "cb", action_id, kind, "s")
        slots[vin] = records
    want = desired()
    held = state(slots, actions)
    # holds on some vehicles, alike or not: in force (monthly or backoff) or ended; few share a hold, as in a fleet
    held.holds = draw(st.dictionaries(st.sampled_from(VINS), st.sampled_from(HOLDS)))
    schedule = Schedule("s", "cb", frozenset(vehicles), (), (), Source("m"), takeover=draw(st.booleans()))
    want = Desired(want.callbacks, {}, {"s": schedule}, vehicles, (), want.digest)
    return want, held, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=300)
@given(recorded_fleets())
def test_a_fleet_planned_at_once_is_each_vehicle_planned_alone(case: tuple[Desired, State, bool, bool]) -> None:
    """Vehicles are planned once per distinct (desired, recorded) kind and grouped: the result, address by
    address, is what planning every vehicle on its own gives."""
    want, recorded, takeover, retry_failed = case
    whole = plan(want, recorded, takeover=takeover, retry_failed=retry_failed)
    expected_changes, expected_notices = [], []
    for vin in sorted(want.vehicles.keys() | recorded.slots.keys()):
        alone_want = Desired(
            want.callbacks, {}, want.schedules, {vin: want.vehicles[vin]} if vin in want.vehicles else {}
        )
        alone_state = state({vin: recorded.slots[vin]} if vin in recorded.slots else {}, recorded.actions)
        alone_state.holds = {vin: recorded.holds[vin]} if vin in recorded.holds else {}
        alone = plan(alone_want, alone_state, takeover=takeover, retry_failed=retry_failed)
        expected_changes += [c for c in alone.changes if c.kind == "slot"]
        expected_notices += alone.notices
    assert [c for c in whole.changes if c.kind == "slot"] == expected_changes
    assert [(n.address, n.kind, n.detail) for n in whole.notices] == [
        (n.address, n.kind, n.detail) for n in expected_notices
    ]
    # every vehicle is in at most one group, and a group's vehicles get equal changes
    vins = [vin for group in whole.groups for vin in group.vins]
    assert len(vins) == len(set(vins))
    assert len({group.slots for group in whole.groups}) == len(whole.groups)
