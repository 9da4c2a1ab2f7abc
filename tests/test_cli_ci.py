"""plan, show and apply as CI pipelines run them: GitLab's report, GitHub's step outputs and summary. Real
subprocesses on a copy of examples/."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands import SECRETS, record_converged, run


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
