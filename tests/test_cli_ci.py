"""plan, show and apply as CI pipelines run them: GitLab's report, GitHub's step outputs and summary. Real
subprocesses on a copy of examples/."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.commands import ALLOW, SECRETS, environment, record_converged, run
from tests.commands import EXAMPLES_FLEET as FLEET
from tests.files import edit
from tests.perf.fleetgen import write_fleet
from tests.servers import sandbox


def test_gitlab_report_from_plan_and_show(repo: Path) -> None:
    first = run("plan", "--format", "gitlab", "--out", "plan.json", cwd=repo, env=SECRETS)
    assert first.returncode == 0, first.stderr
    # the callback, and 84 slots on 30 vehicles
    assert first.stdout == '{"create": 85, "update": 0, "delete": 0}\n'
    assert run("show", "plan.json", "--format", "gitlab", cwd=repo).stdout == first.stdout
    detailed = run("plan", "--format", "gitlab", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert (detailed.returncode, detailed.stdout) == (2, first.stdout)

    record_converged(repo)
    same = run("plan", "--format", "gitlab", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert (same.returncode, same.stdout) == (0, '{"create": 0, "update": 0, "delete": 0}\n')
    schedules = repo / "manifests" / "schedules.yaml"
    schedules.write_text(schedules.read_text().replace("start: PT8H30M", 'start: "08:15"'))
    edited = run("plan", "--format", "gitlab", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert (edited.returncode, json.loads(edited.stdout)) == (2, {"create": 0, "update": 24, "delete": 0})


def test_gitlab_format_is_for_plans_not_the_state(repo: Path) -> None:
    result = run("show", "--state", "--format", "gitlab", cwd=repo, env=SECRETS)
    assert result.returncode == 64
    assert "--format gitlab reports a plan's changes" in result.stderr
    assert result.stdout == ""


def read_outputs(text: str) -> dict[str, str]:
    """Step outputs as GitHub's runner reads them: `name=value` lines (none here has a line break)."""
    return dict(line.split("=", 1) for line in text.splitlines())


def test_plan_appends_step_outputs_and_summary_on_github(repo: Path, tmp_path: Path) -> None:
    outputs, summary = tmp_path / "output", tmp_path / "summary.md"
    outputs.write_text("earlier=1\n")
    summary.write_text("# earlier step\n")
    github = {**SECRETS, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    result = run("plan", "--detailed-exitcode", "--out", "plan.json", cwd=repo, env=github)
    assert result.returncode == 2, result.stderr
    digest = json.loads((repo / "plan.json").read_text())["digest"]
    assert outputs.read_text() == (f"earlier=1\nchanges=true\ncreate=85\nupdate=0\ndelete=0\nplan-digest={digest}\n")
    written = summary.read_text()
    markdown = run("show", "plan.json", "--format", "markdown", cwd=repo).stdout
    assert written == "# earlier step\n" + markdown
    assert markdown.startswith(f"<!-- reconciler-plan fleet={FLEET} -->\n")
    # stdout is the plan as asked for, nothing more
    assert result.stdout == run("show", "plan.json", cwd=repo).stdout

    record_converged(repo)
    again = run("plan", "--format", "json", cwd=repo, env=github)
    assert again.returncode == 0
    lines = outputs.read_text().splitlines()
    assert read_outputs("\n".join(lines[6:])) == {
        "changes": "false",
        "create": "0",
        "update": "0",
        "delete": "0",
        "plan-digest": json.loads(again.stdout)["digest"],
    }
    assert summary.read_text().count("<!-- reconciler-plan") == 2
    assert "**No changes: the manifests match the recorded state (serial 1).**" in summary.read_text()


def test_without_the_variables_nothing_is_written(repo: Path) -> None:
    before = sorted(p.name for p in repo.iterdir())
    result = run("plan", "--detailed-exitcode", cwd=repo, env=SECRETS)
    assert result.returncode == 2 and result.stderr == ""
    assert sorted(p.name for p in repo.iterdir()) == before
    empty = run("plan", cwd=repo, env={**SECRETS, "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": ""})
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, result.stdout, "")


def test_unwritable_step_files_cost_one_warning_line_each(repo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    github = {**SECRETS, "GITHUB_OUTPUT": str(tmp_path), "GITHUB_STEP_SUMMARY": str(blocker / "summary.md")}
    plain = run("plan", "--detailed-exitcode", cwd=repo, env=SECRETS)
    result = run("plan", "--detailed-exitcode", cwd=repo, env=github)
    assert result.returncode == 2
    assert result.stdout == plain.stdout
    assert result.stderr.splitlines() == [
        f"Warning: could not write the step outputs to {tmp_path}: Is a directory.",
        f"Warning: could not write the step summary to {blocker}/summary.md: Not a directory.",
    ]


def test_a_step_summary_near_githubs_limit_is_not_pushed_past_it(tmp_path: Path) -> None:
    repo = write_fleet(tmp_path / "repo", 2_000, group_size=10, groups_per_schedule=1)  # 200 distinct changes
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"x" * 1_000_000 + b"\n")  # an earlier step left 47 KiB of the 1 MiB free
    result = run("plan", cwd=repo, env={**SECRETS, "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0 and result.stderr == ""
    assert 1_000_001 < summary.stat().st_size < 1024 * 1024
    added = summary.read_text()[1_000_001:]
    assert added.startswith("<!-- reconciler-plan fleet=bench-fleet -->\n")
    assert re.search(
        r"\n_[\d,]+ more sections are not shown, to stay under the step summary size limit: [\d,]+ vehicle groups",
        added,
    )
    # full: nothing added, and a warning says why
    summary.write_bytes(b"x" * 1_040_000)
    full = run("plan", cwd=repo, env={**SECRETS, "GITHUB_STEP_SUMMARY": str(summary)})
    assert full.returncode == 0
    assert summary.stat().st_size == 1_040_000
    assert full.stderr == (
        f"Warning: the step summary {summary} already holds 1,040,000 bytes; nothing added to it, to keep it "
        "under GitHub's limit of 1,048,576.\n"
    )


def test_secrets_never_reach_the_step_files(repo: Path, tmp_path: Path) -> None:
    canary = "Basic canary-9d8c7b"
    record_converged(repo)  # recorded with another secret: the plan shows it rotated
    outputs, summary = tmp_path / "output", tmp_path / "summary.md"
    env = {**SECRETS, "WEBHOOK_AUTH": canary, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    result = run("plan", cwd=repo, env=env)
    assert result.returncode == 0, result.stderr
    assert "webhook.headers.Authorization: (sensitive, changed)" in summary.read_text()
    for text in (outputs.read_text(), summary.read_text(), result.stdout, result.stderr):
        assert "canary" not in text


@pytest.mark.slow
def test_apply_appends_its_result_and_plan_to_the_step_summary(repo: Path, tmp_path: Path) -> None:
    canary = "Basic canary-1f2e3d"
    summary, outputs = tmp_path / "summary.md", tmp_path / "output"
    with sandbox(vehicles=40) as box:
        github = {
            **environment(box),
            "WEBHOOK_AUTH": canary,
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(outputs),
        }
        first = run("apply", "--auto-approve", "--wait=30", cwd=repo, env=github)
        assert first.returncode == 0, first.stderr
        written = summary.read_text()
        assert written.startswith(
            f"### reconciler apply to fleet `{FLEET}`\n\nResult: **ok** (exit 0)\n\n```text\n"
            "Apply: 31 calls done, 0 failed, 0 skipped in "
        )
        assert "\nOutcomes: 30 Success.\n```\n" in written
        assert written.index("Outcomes:") < written.index(f"<!-- reconciler-plan fleet={FLEET} -->\n")
        assert "**Plan: 1 callback to create, 0 to update, 0 to delete; 30 vehicles to update" in written
        assert not outputs.exists()  # step outputs are plan's

        # blocked by a guard: the plan it refused, and why
        edit(repo / "reconciler.yaml", "max_deleted_slots: 25%", "max_deleted_slots: 10%")
        edit(
            repo / "manifests" / "schedules.yaml",
            '  - slot: 2\n    start: "13:30"\n    days: [Mon, Tue, Wed, Thu, Fri]\n',
            "",
        )
        summary.unlink()
        blocked = run("apply", "--auto-approve", cwd=repo, env=github)
        assert blocked.returncode == 4
        refused = summary.read_text()
        assert refused.startswith(
            f"### reconciler apply to fleet `{FLEET}`\n\nResult: **blocked** (exit 4)\n\n```text\n"
            "Error: blocked by guard: "
        )
        assert "max_deleted_slots: 30 slots to delete > 10% (at most 8 of 84)" in refused
        assert "apply will refuse without --allow max_deleted_slots" in refused
        assert "<summary><code>~</code> 30 vehicles, the same change each" in refused

        summary.unlink()
        allowed = run("apply", "--auto-approve", *ALLOW, cwd=repo, env=github)
        assert allowed.returncode == 0, allowed.stderr
        assert "allowed by --allow max_deleted_slots" in summary.read_text()
        assert "Result: **ok** (exit 0)" in summary.read_text()

        summary.unlink()
        same = run("apply", "--auto-approve", cwd=repo, env=github)
        assert same.returncode == 0
        assert "```text\nNothing to apply: the plan has no changes.\n```\n" in summary.read_text()
    for text in (written, refused, first.stdout + first.stderr, blocked.stdout + blocked.stderr):
        assert "canary" not in text


def test_a_step_file_nobody_reads_does_not_hang_the_command(repo: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "output"
    os.mkfifo(fifo)
    result = run("plan", cwd=repo, env={**SECRETS, "GITHUB_OUTPUT": str(fifo)})
    assert result.returncode == 0
    assert result.stderr == f"Warning: could not write the step outputs to {fifo}: No such device or address.\n"
