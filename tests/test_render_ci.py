"""What CI systems read from a plan: the counts behind GitLab's merge-request widget and GitHub's step outputs,
the pull-request comment, and the step summaries of plan and apply."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from reconciler.errors import ExitCode
from reconciler.plan import Action, ChangeGroup, Limit, Plan, SlotChange, SlotView
from reconciler.render.counts import Counts, callback_counts, change_counts, slot_counts
from reconciler.render.github import apply_summary, output_text, plan_outputs, plan_summary, size
from reconciler.render.gitlab import render_gitlab
from reconciler.render.markdown import render_markdown
from reconciler.state.model import SlotKind, SlotRecord
from reconciler.vin import make_vin
from tests.bigplans import scattered_plan
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
    # the comment's table counts the same way
    table = markdown(result)
    assert "| callbacks | 1 | 3 | 1 |\n| slots | 1 | 4 | 1 |\n" in table


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


def markdown(document: dict[str, Any], **kwargs: Any) -> str:
    out = io.StringIO()
    render_markdown(document, out, **kwargs)
    return out.getvalue()


def test_markdown_starts_with_the_marker_and_puts_the_summary_above_the_sections() -> None:
    recorded = state({VIN_A: {1: SlotRecord(OLD, "cb", "a1", SlotKind.SET, "s")}}, {"a1": action(VIN_A, "Success")})
    text = markdown(plan(desired({VIN_A: [program(1, "PT6H")]}), recorded).to_dict())
    lines = text.splitlines()
    assert lines[0] == "<!-- reconciler-plan fleet=fleet-1 -->"
    summary = lines.index(
        "**Plan: 0 callbacks to create, 0 to update, 0 to delete; 1 vehicle to update (1 slot set, 0 deleted) "
        "in 1 call.**"
    )
    assert (
        summary < lines.index("| slots | 0 | 1 | 0 |") < min(i for i, line in enumerate(lines) if "<details>" in line)
    )


@pytest.mark.parametrize("fleet", ["fleet --> <b>x</b>", "a\nb", "--!>", "ünï"])
def test_no_fleet_id_ends_the_marker_early(fleet: str) -> None:
    text = markdown(Plan(fleet, None, None, "sha256:m").to_dict())
    first = text.split("\n", 1)[0]
    assert first.startswith("<!-- reconciler-plan fleet=") and first.endswith(" -->")
    inside = first.removeprefix("<!--").removesuffix("-->")
    assert "-->" not in inside and "--!>" not in inside and ">" not in inside


def test_a_fleet_of_thousands_of_distinct_changes_stays_under_githubs_comment_limit() -> None:
    document = scattered_plan(100_000, 5_000).to_dict()
    text = markdown(document)
    assert len(text) < 65_536 - 5_000  # room left for what a pipeline adds around the comment
    shown = text.count("<details>")
    assert 5 < shown < 5_000
    cut = re.search(
        r"\n_([\d,]+) more sections are not shown, to stay under the comment size limit: ([\d,]+) vehicle groups "
        r"\(([\d,]+) vehicles\)\. The whole plan is in `reconciler plan --format json`, and in the plan file "
        r"`plan --out` saves \(keep it as the pipeline's artifact\)\._\n",
        text,
    )
    assert cut is not None
    sections, groups, vehicles = (int(n.replace(",", "")) for n in cut.groups())
    assert sections == groups == 5_000 - shown
    assert vehicles == sum(group["vehicles"] for group in document["groups"][shown:]) == 100_000 - 20 * shown
    assert text.endswith(f"\n<sub>plan {document['digest']}</sub>\n")


def test_a_cut_names_the_callback_changes_it_leaves_out() -> None:
    recorded = state(callbacks=[callback("cb")])
    want = desired({VIN_A: [program(1)]}, callbacks=[callback("cb"), *(callback(f"new-{n}") for n in range(5))])
    text = markdown(plan(want, recorded).to_dict(), limit=1_800)
    assert len(text) <= 1_800
    assert re.search(
        r"_\d more sections are not shown, to stay under the comment size limit: \d callback changes "
        r"and 1 vehicle group \(1 vehicle\)\.",
        text,
    )


def test_the_limit_can_count_bytes() -> None:
    document = scattered_plan(2_000, 400, fleet="flotte-é").to_dict()
    text = markdown(document, limit=20_000, measure=lambda s: len(s.encode()), where="step summary")
    assert len(text.encode()) <= 20_000 < len(markdown(document, limit=10**6).encode())
    assert "to stay under the step summary size limit" in text


def test_notes_do_not_push_the_plan_past_the_limit() -> None:
    guards = [
        {"name": f"g{n}", "limit": "1", "count": 2, "total": 2, "maximum": 1, "exceeded": True} for n in range(2_000)
    ]
    document = {**Plan("fleet-1", None, None, "sha256:m").to_dict(), "guards": guards}
    text = markdown(document, limit=8_000)
    assert len(text) <= 8_000
    assert re.search(r"> - [\d,]+ more notes: `--format json` has every one\.", text)


def read_outputs(text: str) -> dict[str, str]:
    """Step outputs read back as GitHub's runner reads the file: `name=value`, or `name<<DELIMITER` lines."""
    values: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if heredoc >= 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"no closing delimiter for {name}")
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def test_step_outputs_of_a_plan() -> None:
    recorded = state(
        {VIN_A: {1: SlotRecord(OLD, "cb", "a1", SlotKind.SET, "s")}},
        {"a1": action(VIN_A, "Success")},
        callbacks=[callback("cb"), callback("gone")],
    )
    want = desired({VIN_A: [program(1, "PT6H"), program(2)], VIN_B: [program(1)]})
    document = plan(want, recorded).to_dict()
    text = output_text(plan_outputs(document))
    assert text == (f"changes=true\ncreate=2\nupdate=1\ndelete=1\nplan-digest={document['digest']}\n")
    same = plan(desired({VIN_A: [OLD]}), state({VIN_A: {1: SlotRecord(OLD, "cb", None)}})).to_dict()
    assert read_outputs(output_text(plan_outputs(same))) == {
        "changes": "false",
        "create": "0",
        "update": "0",
        "delete": "0",
        "plan-digest": same["digest"],
    }


def test_a_multi_line_value_cannot_set_another_output(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"note": "first\nchanges=false\nghadelimiter_1", "changes": "true"}
    # the first delimiter drawn is in the value: another is drawn
    drawn = iter(["1", "2"])
    monkeypatch.setattr("reconciler.render.github.uuid.uuid4", lambda: next(drawn))
    text = output_text(values)
    assert text == "note<<ghadelimiter_2\nfirst\nchanges=false\nghadelimiter_1\nghadelimiter_2\nchanges=true\n"
    assert read_outputs(text) == values
    with pytest.raises(ValueError, match="not a step output name"):
        output_text({"a=b": "1"})


def test_plan_summary_stays_within_its_budget_in_bytes() -> None:
    document = scattered_plan(2_000, 400, fleet="flotte-é").to_dict()
    text = plan_summary(document, 30_000)
    assert size(text) <= 30_000
    assert "to stay under the step summary size limit" in text
    assert text.startswith("<!-- reconciler-plan fleet=flotte-%C3%A9 -->\n")


def test_apply_summary_shows_the_result_then_the_plan_within_the_budget() -> None:
    document = scattered_plan(2_000, 400).to_dict()
    result = "Apply: 4 calls done, 1 failed, 0 skipped in 1.0 s.\n  failed (x): 1, e.g. a ``` b: c\n"
    text = apply_summary(document["fleet"], document, result, ExitCode.PARTIAL, 40_000)
    assert size(text) <= 40_000
    assert text.startswith(
        f"### reconciler apply to fleet `{document['fleet']}`\n\nResult: **partial** (exit 3)\n\n````text\n{result}````\n"
    )
    assert text.index("Result:") < text.index("<!-- reconciler-plan") < text.index("<details>")
    # too little room for the plan: the result alone, saying the plan is left out
    small = apply_summary(document["fleet"], document, result, ExitCode.PARTIAL, 1_000)
    assert size(small) <= 1_000 and "<details>" not in small
    assert small.endswith("_The plan is not shown, to stay under the step summary size limit._\n")
    # a long result is cut at a line
    long = "".join(f"  failed (cause {n}): 1, e.g. call {n}\n" for n in range(10_000))
    cut = apply_summary(None, None, long, ExitCode.PARTIAL, 50_000)
    assert size(cut) <= 50_000
    assert cut.startswith("### reconciler apply\n\nResult: **partial** (exit 3)\n\n```text\n  failed (cause 0)")
    assert "\n... (cut: the whole result is in the job's log)\n```\n" in cut


def test_apply_summary_of_an_allowed_guard_says_allowed() -> None:
    recorded = state(
        {vin: {1: SlotRecord(OLD, "cb", "a1", SlotKind.SET, "s")} for vin in (VIN_A, VIN_B)},
        {"a1": action(VIN_A, "Success")},
    )
    want = desired({VIN_A: [program(1, "PT6H")], VIN_B: [program(1, "PT6H")]})
    document = plan(want, recorded, guards={"max_changed_vehicles": Limit.parse("1")}).to_dict()
    refused = apply_summary("fleet-1", document, "Error: blocked\n", ExitCode.GUARD, 100_000)
    assert "apply will refuse without --allow max_changed_vehicles" in refused
    allowed = apply_summary(
        "fleet-1", document, "Apply: ...\n", ExitCode.OK, 100_000, allowed=("max_changed_vehicles",)
    )
    assert "allowed by --allow max_changed_vehicles" in allowed
