"""Properties of planning: converged after its own effect, and touching only what differs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import DAYS, Desired, Program
from reconciler.plan import CallKind
from reconciler.state.model import State
from tests.planning import desired, plan, record_success

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
