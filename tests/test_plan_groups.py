"""Plans at fleet scale: vehicles that get the same change are one group; plan files, previews and status read
the groups; notices are grouped the same way."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler.errors import PlanError
from reconciler.model import Desired
from reconciler.plan import Action, CallKind, read_plan_file, write_plan_file
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.state.model import SlotRecord, State
from reconciler.status import fleet_status
from tests.planning import action, desired, plan, program, record_success, state

FLEET = [f"VF3UHNKF5RL{i:06d}" for i in range(500)]


def edited_fleet() -> tuple[Desired, State]:
    """500 vehicles recorded with slots 1 and 2 at 07:30 and 18:00; the manifests move slot 1 to 06:45 for all,
    and three vehicles differ: one also loses slot 2, one was never applied, one is in flight."""
    old = {vin: [program(1), program(2, "PT18H")] for vin in FLEET}
    recorded = record_success(plan(desired(old), None), State("L", 1, "fleet-1", "salt"), desired(old))
    recorded.slots[FLEET[7]] = {}
    pending = recorded.slots[FLEET[9]][1].action
    assert pending is not None
    recorded.actions[pending] = action(FLEET[9], "Pending", status="SentToVehicle")
    new = {vin: [program(1, "PT6H45M"), program(2, "PT18H")] for vin in FLEET}
    new[FLEET[3]] = [program(1, "PT6H45M")]
    return desired(new), recorded


def test_a_fleet_wide_edit_is_one_group_and_the_exceptions_their_own() -> None:
    want, recorded = edited_fleet()
    result = plan(want, recorded)
    largest, *others = result.groups
    assert len(largest.vins) == 498 and FLEET[3] not in largest.vins and FLEET[7] not in largest.vins
    assert [(c.slot, c.action, c.diffs[0].after) for c in largest.slots] == [(1, Action.UPDATE, "PT6H45M")]
    by_vin = {group.vins: group for group in others}
    assert [(c.slot, c.action) for c in by_vin[(FLEET[3],)].slots] == [(1, Action.UPDATE), (2, Action.DELETE)]
    assert [(c.slot, c.action) for c in by_vin[(FLEET[7],)].slots] == [(1, Action.CREATE), (2, Action.CREATE)]
    assert len(result.groups) == 3  # FLEET[9]'s slot 1 differs from what is in flight: it is in the big group
    # each vehicle still gets its own call, one per callback, carrying its changes
    summary = result.summary()
    assert (summary.vehicles, summary.calls, summary.slots_set, summary.slots_deleted) == (500, 500, 501, 1)
    calls = [call for call in result.calls if call.kind is CallKind.REMOTE]
    assert len(calls) == 500 and len({call.vin for call in calls}) == 500
    assert [call.vin for call in calls] == sorted(call.vin for call in calls)  # apply goes by VIN
    three = next(call for call in calls if call.vin == FLEET[3])
    assert [(verb, p.slot) for verb, p in three.programs] == [("Set", 1), ("Delete", 2)]
    assert three.schedules == ("s", "s")


def test_the_plan_document_holds_every_vin_once_and_reads_back(tmp_path: Path) -> None:
    want, recorded = edited_fleet()
    result = plan(want, recorded)
    data = result.to_dict()
    assert data["format_version"] == "2.0"
    assert [group["vehicles"] for group in data["groups"]] == [498, 1, 1]
    listed = [vin for group in data["groups"] for vin in group["vins"]]
    assert len(listed) == len(set(listed)) == 500  # every vehicle that changes, once
    [call] = data["groups"][0]["calls"]
    assert call == {
        "callback": "cb",
        "slots": [1],
        "programs": [
            {
                "actionsType": "Set",
                "slot": 1,
                "enabled": True,
                "recurrence": "Daily",
                "start": "PT6H45M",
                "occurence": {"day": ["Mon", "Tue", "Wed", "Thu", "Fri"]},
            }
        ],
    }
    write_plan_file(result, tmp_path / "plan.json")
    again = read_plan_file(tmp_path / "plan.json")
    assert again == result
    assert again.calls == result.calls


def test_a_plan_file_of_another_format_or_with_a_vin_added_is_refused(tmp_path: Path) -> None:
    want, recorded = edited_fleet()
    path = tmp_path / "plan.json"
    write_plan_file(plan(want, recorded), path)
    data = json.loads(path.read_text())
    data["groups"][1]["vins"].append("VF3UHNKF5RL999999")
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="was changed after it was made"):
        read_plan_file(path)
    path.write_text(json.dumps({**data, "format_version": "1.0"}))
    with pytest.raises(PlanError, match=r"has plan format 1\.0; this reconciler reads 2\.0: make a new plan"):
        read_plan_file(path)


def test_the_preview_of_a_fleet_wide_edit_fits_on_a_screen_and_lists_the_exceptions() -> None:
    want, recorded = edited_fleet()
    out = io.StringIO()
    render_text(plan(want, recorded).to_dict(), out)
    text = out.getvalue()
    assert len(text.splitlines()) < 30
    assert "~ 498 vehicles, the same change each (498 calls via cb)\n      ~ slot 1: start 07:30 -> 06:45\n" in text
    assert "... and 488 more (every VIN: --format json)" in text
    assert f"~ vehicle {FLEET[3]} (1 call via cb)\n      ~ slot 1: start 07:30 -> 06:45\n      - slot 2:" in text
    assert f"~ vehicle {FLEET[7]} (1 call via cb)\n      + slot 1: 06:45 Mon-Fri\n      + slot 2:" in text
    markdown = io.StringIO()
    render_markdown(plan(want, recorded).to_dict(), markdown)
    assert "498 vehicles, the same change each" in markdown.getvalue()
    assert len(markdown.getvalue()) < 20_000


def test_notices_are_grouped_and_counted() -> None:
    recorded = state(
        {vin: {1: SlotRecord(program(1), "cb", f"r{vin}", "Set", "s")} for vin in FLEET[:30]},
        {f"r{vin}": action(vin, "Failed", cause="MissingRights") for vin in FLEET[:30]},
    )
    result = plan(desired({vin: [program(1)] for vin in FLEET[:30]}), recorded)
    [failed] = result.notice_groups
    assert (failed.kind, failed.slots, len(failed.vins), failed.failure) == ("failed", (1,), 30, "MissingRights")
    assert result.summary().failed == 30
    out = io.StringIO()
    render_text(result.to_dict(), out)
    assert (
        f"Failed: 30 vehicles ({', '.join(FLEET[:3])} and 27 more) slot 1: MissingRights "
        "(retried only with --retry-failed)\n"
    ) in out.getvalue()


def test_notices_past_the_lines_shown_are_counted() -> None:
    """25 vehicles in flight since 25 different times: 25 groups, 20 lines of them, then a count."""
    recorded = state(
        {vin: {1: SlotRecord(program(1), "cb", f"r{vin}", "Foreign", "s")} for vin in FLEET[:3]}
        | {vin: {1: SlotRecord(program(1), "cb", f"r{vin}", "Set", "s")} for vin in FLEET[3:28]},
        {f"r{vin}": action(vin, "Failed", cause=f"Cause{n}") for n, vin in enumerate(FLEET[3:28])},
    )
    result = plan(desired({vin: [program(1)] for vin in FLEET[:28]}), recorded)
    assert len(result.groups) == 25  # transient causes, each its own: retried
    [foreign] = result.notice_groups  # the same detail on the same slot: one group of 3
    assert foreign.kind == "foreign" and foreign.vins == tuple(FLEET[:3])
    permanent = state(
        {vin: {1: SlotRecord(program(1), "cb", f"r{vin}", "Set", "s")} for vin in FLEET[:25]},
        {f"r{vin}": action(vin, "Failed", cause="MissingRights") for vin in FLEET[:25]}
        | {f"r{FLEET[n]}": action(FLEET[n], "Pending", status=f"Step{n}") for n in range(25)},
    )
    in_flight = plan(desired({vin: [program(1)] for vin in FLEET[:25]}), permanent)
    assert len(in_flight.notice_groups) == 25
    out = io.StringIO()
    render_text(in_flight.to_dict(), out)
    assert "In flight: 25 slots on 25 vehicles are Pending; nothing to do yet." in out.getvalue()


def test_status_counts_each_vehicle_once() -> None:
    """A vehicle with one slot to change and another in flight is to change, not both."""
    recorded = state(
        {
            vin: {
                1: SlotRecord(program(1), "cb", "done", "Set", "s"),
                2: SlotRecord(program(2), "cb", "pending", "Set", "s"),
            }
            for vin in FLEET[:4]
        },
        {"done": action(FLEET[0], "Success"), "pending": action(FLEET[0], "Pending")},
    )
    want = desired(
        {vin: [program(1, "PT9H"), program(2)] for vin in FLEET[:2]}
        | {vin: [program(1), program(2)] for vin in FLEET[2:4]}
    )
    status = fleet_status(want, recorded, plan(want, recorded), [])
    assert (status["vehicles"], status["to_change"], status["in_flight"], status["converged"]) == (4, 2, 2, 0)
    assert status["converged"] + status["in_flight"] + status["to_change"] + status["failed"] == status["vehicles"]
