"""Plan renderers against golden files (regenerate with UPDATE_GOLDEN=1 after checking the change)."""

from __future__ import annotations

import io
import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import Desired
from reconciler.plan import Limit, Plan
from reconciler.render.blocks import days_text, hhmm
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.selectors import Selector
from reconciler.state.model import SlotRecord
from tests.planning import VIN_A, VIN_B, VIN_C, action, callback, desired, plan, program, state

GOLDEN = Path(__file__).parent / "golden"
GROUP = [f"W0LZGBZE8RS{i:06d}" for i in range(60)]


def scenario() -> Plan:
    old = program(1, "PT7H30M")
    recorded = state(
        {
            VIN_A: {
                1: SlotRecord(old, "cb", "a1", "Set", "s"),
                2: SlotRecord(program(2, "PT18H"), "cb", "a1", "Set", "s"),
                4: SlotRecord(program(4, "PT12H"), "cb", "f1", "Set", "s"),
            },
            VIN_B: {1: SlotRecord(old, "cb", "p1", "Set", "s")},
            VIN_C: {1: SlotRecord(old, "cb", "x1", "Set", "s")},
            **{vin: {1: SlotRecord(old, "cb", "a1", "Set", "s")} for vin in GROUP},
        },
        {
            "a1": action(VIN_A, "Success"),
            "f1": action(VIN_A, "Failed", cause="VehicleConnectionTimeout"),
            "p1": action(VIN_B, "Pending", status="SentToVehicle"),
            "x1": action(VIN_C, "Failed", cause="MissingRights"),
        },
        callbacks=[callback("cb", secret="one"), callback("retired"), callback("quiet")],
    )
    want = desired(
        {
            VIN_A: [program(1, "PT7H15M"), program(3, "PT9H", ("Sat", "Sun"), enabled=False), program(4, "PT12H")],
            VIN_B: [old],
            VIN_C: [old],
            **{vin: [program(1, "PT6H45M", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat"))] for vin in GROUP},
        },
        callbacks=[
            callback("cb", secret="two", batch_notify={"size": 10, "timeWindow": 60}),
            callback("new", secret="s3cret-canary"),
            callback("quiet", status="Paused"),
        ],
    )
    return plan(want, recorded, guards={"max_changed_vehicles": Limit.parse("10%")})


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def rendered(render: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    render(scenario().to_dict(), out, **kwargs)
    return out.getvalue()


def test_text_golden() -> None:
    check_golden("plan.txt", rendered(render_text))


def test_text_colour_only_adds_escapes() -> None:
    coloured = rendered(render_text, colour=True)
    assert "\x1b[32m+\x1b[0m" in coloured
    stripped = coloured
    for code in ("\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[35m", "\x1b[1m", "\x1b[0m", "\x1b[0m"):
        stripped = stripped.replace(code, "")
    assert stripped == rendered(render_text)


def test_markdown_golden() -> None:
    check_golden("plan.md", rendered(render_markdown))


def test_json_golden_and_round_trip() -> None:
    text = rendered(render_json, result="changes")
    check_golden("plan.json", text)
    data = json.loads(text)
    assert data["result"] == "changes"
    assert data["format_version"] == "2.0"
    del data["result"]
    again = Plan.from_dict(data, "plan.json")
    assert again == scenario()
    assert again.digest == data["digest"]


def test_secret_values_never_reach_any_output() -> None:
    for render, kwargs in ((render_text, {}), (render_markdown, {}), (render_json, {})):
        out = rendered(render, **kwargs)
        assert "s3cret-canary" not in out
        assert "two" not in out.replace("two ", "")  # the rotated secret's value


@pytest.mark.parametrize("limit", [1_500, 3_000, 60_000])
def test_markdown_is_cut_with_a_note_under_the_limit(limit: int) -> None:
    text = rendered(render_markdown, limit=limit)
    assert len(text) <= limit
    if limit < 60_000:
        assert re.search(r"_\d+ more sections? (is|are) not shown, to stay under the comment size limit", text)
        assert "1 more sections" not in text
    else:
        assert "not shown" not in text


def test_many_vehicles_with_one_change_are_one_block() -> None:
    text = rendered(render_text)
    assert "60 vehicles, the same change each (60 calls via cb)" in text
    assert "... and 50 more (every VIN: --format json)" in text


@pytest.mark.parametrize(
    ("start", "text"), [("PT7H5M", "07:05"), ("PT0H0M", "00:00"), ("PT7H", "07:00"), ("PT45M", "00:45")]
)
def test_hhmm(start: str, text: str) -> None:
    assert hhmm(start) == text


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (("Mon", "Tue", "Wed"), "Mon-Wed"),
        (("Mon", "Tue"), "Mon,Tue"),
        (("Mon", "Wed", "Thu", "Fri", "Sun"), "Mon,Wed-Fri,Sun"),
        (("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), "daily"),
    ],
)
def test_days_text(days: tuple[str, ...], text: str) -> None:
    assert days_text(days) == text


def test_no_changes_says_what_it_compared() -> None:
    recorded = state({VIN_A: {1: SlotRecord(program(1), "cb", None, "Set", "s")}})
    empty = plan(desired({VIN_A: [program(1)]}), recorded)
    out = io.StringIO()
    render_text(empty.to_dict(), out)
    assert out.getvalue() == "No changes: the manifests match the recorded state (serial 3).\n"
    markdown = io.StringIO()
    render_markdown(empty.to_dict(), markdown)
    assert "**No changes: the manifests match the recorded state (serial 3).**" in markdown.getvalue()
    nothing = plan(Desired({}, {}, {}, {}, (), "sha256:none"), None)
    out = io.StringIO()
    render_text(nothing.to_dict(), out)
    assert out.getvalue() == "No changes: the manifests declare nothing and no state is recorded yet.\n"


def test_no_changes_in_a_targeted_plan_says_so() -> None:
    recorded = state({VIN_A: {1: SlotRecord(program(1), "cb", None, "Set", "s")}})
    want = desired({VIN_A: [program(1)], VIN_B: [program(1)]})
    targeted = plan(want, recorded, targets=(Selector.parse(f"vin:{VIN_A}"),))
    out = io.StringIO()
    render_text(targeted.to_dict(), out)
    assert out.getvalue().splitlines()[-1] == (
        "No changes in the targeted part of the manifests: it matches the recorded state (serial 3)."
    )


def test_counts_of_one_are_singular() -> None:
    one = plan(desired({VIN_A: [program(1)]}, callbacks=[callback("cb")]), state({}, callbacks=[callback("cb")]))
    out = io.StringIO()
    render_text(one.to_dict(), out)
    text = out.getvalue()
    assert "vehicle VF3UHNKF5RL000005 (1 call via cb)" in text
    assert text.splitlines()[-1] == (
        "Plan: 0 callbacks to create, 0 to update, 0 to delete; 1 vehicle to update (1 slot set, 0 deleted) in 1 call."
    )
    markdown = io.StringIO()
    render_markdown(one.to_dict(), markdown)
    assert "1 vehicle changes, in 1 call." in markdown.getvalue()


def test_pending_timeout_in_notices_uses_age() -> None:
    recorded = state(
        {VIN_A: {1: SlotRecord(program(1), "cb", "p", "Set", "s")}},
        {"p": action(VIN_A, "Pending", age=timedelta(hours=3))},
    )
    result = plan(desired({VIN_A: [program(1)]}), recorded)
    assert str(result.changes[0].cause) == "Pending for 3h00m, past the 30m timeout"
