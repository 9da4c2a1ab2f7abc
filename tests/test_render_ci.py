"""What CI systems read from a plan: the counts behind GitLab's merge-request widget and GitHub's step outputs."""

from __future__ import annotations

import io
import json

from reconciler.plan import Action, ChangeGroup, Plan, SlotChange, SlotView
from reconciler.render.counts import Counts, callback_counts, change_counts, slot_counts
from reconciler.render.gitlab import render_gitlab
from reconciler.state.model import SlotKind, SlotRecord
from reconciler.vin import make_vin
from tests.planning import VIN_A, VIN_B, VIN_C, action, callback, desired, plan, program, state

OLD = program(1, "PT7H30M")


def test_counts_follow_each_action_of_callbacks_and_slots() -> None:
    recorded = state(
        {
            # slot 1 changed, slot 2 deleted, slot 3 new, slot 4 retried (its remote failed)
            VIN_A: {
                1: SlotRecord(OLD, "cb", "a1", SlotKind.SET, "s"),
                2: SlotRecord(program(2), "cb", "a1", SlotKind.SET, "s"),
                4: SlotRecord(program(4), "cb", "f1", SlotKind.SET, "s"),
            },
            # a deletion whose outcome is unknown: retried
            VIN_B: {1: SlotRecord(OLD, "cb", "lost", SlotKind.DELETE, "s")},
            # a program someone else set, taken over
            VIN_C: {1: SlotRecord(OLD, "cb", None, SlotKind.FOREIGN, "s")},
        },
        {"a1": action(VIN_A, "Success"), "f1": action(VIN_A, "Failed", cause="VehicleConnectionTimeout")},
        callbacks=[callback("cb"), callback("edited"), callback("quiet"), callback("both"), callback("gone")],
    )
    want = desired(
        {VIN_A: [program(1, "PT6H"), program(3), program(4)], VIN_C: [program(1, "PT9H")]},
        callbacks=[
            callback("cb"),
            callback("edited", batch_notify={"size": 10, "timeWindow": 60}),
            callback("quiet", status="Paused"),
            callback("both", status="Paused", batch_notify={"size": 5, "timeWindow": 60}),
            callback("new"),
        ],
    )
    result = plan(want, recorded, takeover=True).to_dict()
    actions = {c["address"]: c["action"] for c in result["callbacks"] if c["address"] != "callback.both"}
    assert actions == {
        "callback.edited": "update",
        "callback.quiet": "status",
        "callback.new": "create",
        "callback.gone": "delete",
    }
    # a callback both edited and paused is one callback updated
    assert sorted(c["action"] for c in result["callbacks"] if c["address"] == "callback.both") == ["status", "update"]
    assert callback_counts(result) == Counts(create=1, update=3, delete=1)
    slots = {(g["vins"][0], c["slot"]): (c["action"], c["cause"]) for g in result["groups"] for c in g["slots"]}
    assert slots == {
        (VIN_A, 1): ("update", None),
        (VIN_A, 2): ("delete", None),
        (VIN_A, 3): ("create", None),
        (VIN_A, 4): ("retry", "Failed: VehicleConnectionTimeout"),
        (VIN_B, 1): ("retry", "outcome unknown"),
        (VIN_C, 1): ("update", "takeover"),
    }
    # retries (a retried deletion too) and takeovers are updates
    assert slot_counts(result) == Counts(create=1, update=4, delete=1)
    assert change_counts(result) == Counts(create=2, update=7, delete=2)


def test_slot_counts_multiply_by_the_vehicles_of_each_group() -> None:
    vins = tuple(sorted(make_vin(i) for i in range(100_000)))
    before = SlotView(OLD, "cb", "s")
    group = ChangeGroup(
        vins,
        (
            SlotChange(1, Action.UPDATE, before, SlotView(program(1, "PT6H"), "cb", "s")),
            SlotChange(2, Action.DELETE, SlotView(program(2), "cb", "s"), None),
            SlotChange(3, Action.CREATE, None, SlotView(program(3), "cb", "s")),
            SlotChange(4, Action.CREATE, None, SlotView(program(4), "cb", "s")),
        ),
    )
    one = ChangeGroup((VIN_A,), (SlotChange(1, Action.DELETE, before, None),))
    document = Plan("fleet-1", "lineage-1", 3, "sha256:m", groups=(group, one)).to_dict()
    assert change_counts(document) == Counts(create=200_000, update=100_000, delete=100_001)


def test_gitlab_report_is_exactly_the_widget_document() -> None:
    recorded = state(
        {VIN_A: {1: SlotRecord(OLD, "cb", "a1", SlotKind.SET, "s")}},
        {"a1": action(VIN_A, "Success")},
        callbacks=[callback("cb"), callback("gone")],
    )
    want = desired(
        {VIN_A: [program(1, "PT6H"), program(2)], VIN_B: [program(1)]}, callbacks=[callback("cb"), callback("new")]
    )
    out = io.StringIO()
    render_gitlab(plan(want, recorded).to_dict(), out)
    # callback.new created, callback.gone deleted; VIN_A slot 2 and VIN_B slot 1 set, VIN_A slot 1 changed
    assert out.getvalue() == '{"create": 3, "update": 1, "delete": 1}\n'
    assert list(json.loads(out.getvalue())) == ["create", "update", "delete"]
    nothing = io.StringIO()
    render_gitlab(plan(desired({VIN_A: [OLD]}), state({VIN_A: {1: SlotRecord(OLD, "cb", None)}})).to_dict(), nothing)
    assert nothing.getvalue() == '{"create": 0, "update": 0, "delete": 0}\n'
