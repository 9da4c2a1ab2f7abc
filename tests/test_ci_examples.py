"""The CI examples (examples/ci/) and the pre-commit hook, checked as their users' CI systems would check them.

- The GitHub workflows pass actionlint and the GitLab pipeline GitLab's own schema (offline); both checks are
  shown to fail on a broken copy.
- Every `reconciler ...` they run parses against the CLI as it is, so the examples cannot rot.
- Their scripts run for real, as the runners run them (bash -eo pipefail, the job's environment built from the
  file), in a copy of examples/ given the copied CI files, against the sandbox and a PostgreSQL state: the exit
  codes they act on (2 is no failure, 5 is retried, 3, 4, 7 explained) are the ones they get.
- The plan comment (GitHub) and note (GitLab) stay ONE per pull request, found again by the plan's marker line.
- The pre-commit hook's entry, run as pre-commit runs it, passes a good config repo and fails a broken one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.cli import cli
from reconciler.operations import open_workspace
from reconciler.state.backend import LockInfo
from reconciler.vin import make_vin
from tests.commands import EXAMPLES_FLEET, SECRETS, desired_programs, held_programs, measured
from tests.files import EXAMPLES, REPO, copy_examples, edit
from tests.servers import Sandbox, sandbox, serve_app

CI = EXAMPLES / "ci"
GITHUB = CI / "github"
GITLAB = CI / "gitlab"
WORKFLOWS = sorted((GITHUB / ".github" / "workflows").glob("*.yml"))
GITLAB_CI = GITLAB / ".gitlab-ci.yml"
PLAN_NOTE = GITLAB / ".gitlab" / "plan-note.py"
HOOKS = REPO / ".pre-commit-hooks.yaml"
BIN = Path(sys.executable).parent  # the venv's scripts: reconciler, actionlint, check-jsonschema
MARKER = f"<!-- reconciler-plan fleet={EXAMPLES_FLEET} -->"
# tokens a shell script ends a command with (shlex's punctuation)
SEPARATORS = {"||", "&&", "|", ";", "&", ">", ">>", "<", "(", ")", ";;", "\n"}


def tool(name: str) -> str:
    """A linter the dev dependencies install beside the Python running the tests."""
    found = BIN / name
    if not found.exists():
        pytest.fail(f"{name} is missing: install the dev dependencies (pip install -e '.[dev]')")
    return str(found)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def workflow(name: str) -> dict[str, Any]:
    spec = dict(load(GITHUB / ".github" / "workflows" / f"reconciler-{name}.yml"))
    spec["on"] = spec.pop(True)  # a YAML 1.1 reader takes the key `on` for true
    return spec


def command_choices(command: str, param: str) -> tuple[str, ...]:
    """The values the CLI accepts for one option, e.g. ("text", "markdown", "json") for plan's --format."""
    for option in cli.commands[command].params:
        if option.name == param and isinstance(option.type, click.Choice):
            return tuple(str(choice) for choice in option.type.choices)
    raise AssertionError(f"reconciler {command} has no choice option {param}")


# `plan --format gitlab` and `show --format gitlab` come with the GitLab report; until the CLI offers them the
# GitLab plan job is expected to fail on them (and must: a strict xfail that passes is an error)
GITLAB_REPORT = "gitlab" in command_choices("plan", "fmt")
needs_gitlab_report = pytest.mark.xfail(
    not GITLAB_REPORT, reason="the CLI has no `--format gitlab` yet (the GitLab report)", strict=True
)


# ---- the scripts in the example files ---------------------------------------------------------------------


def github_steps() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(workflow file, job, step name, step) for every step of every workflow."""
    for path in WORKFLOWS:
        for job_name, job in load(path)["jobs"].items():
            for index, step in enumerate(job["steps"]):
                yield path.name, job_name, step.get("id", step.get("name", str(index))), step


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    return {name: job for name, job in load(GITLAB_CI).items() if isinstance(job, dict) and "script" in job}


def scripts() -> list[tuple[str, str]]:
    """(where, shell script) for every script the examples and the hook run."""
    found = [(f"{file}:{job}:{step}", s["run"]) for file, job, step, s in github_steps() if "run" in s]
    for name, job in gitlab_jobs().items():
        found += [(f".gitlab-ci.yml:{name}", line) for line in job["script"]]
    config = load(GITLAB_CI)
    found += [(".gitlab-ci.yml:default", line) for line in config["default"]["before_script"]]
    found += [(f".pre-commit-hooks.yaml:{hook['id']}", hook["entry"]) for hook in load(HOOKS)]
    return found


def invocations(script: str) -> list[list[str]]:
    """The argument lists of every `reconciler` command a shell script runs (not those quoted in messages)."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            at_start = index == 0 or tokens[index - 1] in SEPARATORS or tokens[index - 1] in {"then", "else", "do"}
            if token == "reconciler" and at_start:
                args = []
                for arg in tokens[index + 1 :]:
                    if arg in SEPARATORS:
                        break
                    args.append(arg)
                found.append(args)
    return found


# the `--allow GUARD` pairs the apply scripts build from the guards a person chose (checked against the CLI's
# guards by test_the_guards_a_person_may_allow_are_the_cli_s, and run by the guard test)
ALLOW_LISTS = {"${allow[@]}", "$@"}


def parse(args: list[str]) -> None:
    """Parse `reconciler ARGS` as the CLI would, without running it: unknown commands, flags and values fail."""
    args = [arg for arg in args if arg not in ALLOW_LISTS]
    command: click.Command = cli
    name = "reconciler"
    while isinstance(command, click.Group):
        while args and args[0].startswith("-"):  # the group's own options and their values
            option = args.pop(0)
            if option in {"--config", "-c", "--chdir", "-C"}:
                args.pop(0)
            elif "=" not in option:
                raise click.UsageError(f"{name} has no option {option}")
        if not args or args[0] not in command.commands:
            raise click.UsageError(f"{name} has no command {args[0] if args else '(none)'}")
        name = args.pop(0)
        command = command.commands[name]
    with command.make_context(name, list(args)) as _:
        pass


def test_every_reconciler_command_in_the_examples_exists() -> None:
    found = [(where, args) for where, script in scripts() for args in invocations(script)]
    used = {" ".join(args[:1]) for _, args in found}
    assert {"validate", "plan", "show", "apply", "refresh"} <= used, used
    failures = []
    for where, args in found:
        if not GITLAB_REPORT and "gitlab" in args:
            continue  # checked by test_the_gitlab_report_formats_exist once the CLI offers them
        try:
            parse(args)
        except click.ClickException as error:
            failures.append(f"{where}: reconciler {shlex.join(args)}: {error.format_message()}")
    assert failures == []


@needs_gitlab_report
def test_the_gitlab_report_formats_exist() -> None:
    parse(["plan", "--format", "gitlab"])
    parse(["show", "plan.json", "--format", "gitlab"])


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("reconciler plan --out plan.json --detailed-exit-code > plan.md", "--detailed-exit-code"),
        ("code=0; reconciler apply --auto-aprove || code=$?", "--auto-aprove"),
        ("reconciler validate --format gitlab", "gitlab"),
        ('reconciler apply --auto-approve "${allow[@]}" --allow max_everything', "max_everything"),
        ("if true; then reconciler refrsh; fi", "refrsh"),
        ("reconciler state unlok ID", "unlok"),
    ],
)
def test_the_command_check_finds_a_mistyped_command_flag_or_value(script: str, problem: str) -> None:
    [args] = invocations(script)
    with pytest.raises(click.ClickException) as raised:
        parse(args)
    assert problem in raised.value.format_message()


def test_reconciler_quoted_in_a_message_is_not_a_command() -> None:
    script = """echo "::error::reconciler apply failed; 'reconciler state unlock LOCK_ID' removes it" # reconciler x"""
    assert invocations(script) == []
    assert invocations("reconciler plan\nreconciler show plan.json --format json > x") == [
        ["plan"],
        ["show", "plan.json", "--format", "json"],
    ]


def test_the_guards_a_person_may_allow_are_the_cli_s() -> None:
    guards = set(command_choices("apply", "allow"))
    for options in (
        workflow("apply")["on"]["workflow_dispatch"]["inputs"]["allow"]["options"],
        load(GITLAB_CI)["variables"]["APPLY_ALLOW"]["options"],
    ):
        assert options[0] == ""  # allow nothing unless a person says so
        assert {guard for option in options for guard in option.split()} == guards
        assert " ".join(sorted(guards, reverse=True)) in options  # both at once


# ---- linters: actionlint and GitLab's schema ----------------------------------------------------------------


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, paths)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_github_workflows_pass_actionlint() -> None:
    assert [path.name for path in WORKFLOWS] == [
        "reconciler-apply.yml",
        "reconciler-drift.yml",
        "reconciler-plan.yml",
    ]
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "old", "new", "finding"),
    [
        # a misspelt key
        ("plan", "cancel-in-progress: true", "cancel-in-progres: true", "cancel-in-progres"),
        # a pull request's title pasted into a script: script injection
        ("plan", "code=0\n", 'code=0\n          echo "${{ github.event.pull_request.title }}"\n', "untrusted"),
        # an input the dispatch form does not have
        ("apply", "ALLOW: ${{ inputs.allow }}", "ALLOW: ${{ inputs.guard }}", "guard"),
        # a cron line that is no schedule
        ("drift", '"17 5 * * *"', '"17 5 * * 8"', "cron"),
    ],
)
def test_actionlint_fails_on_a_broken_workflow(tmp_path: Path, name: str, old: str, new: str, finding: str) -> None:
    broken = tmp_path / f"reconciler-{name}.yml"
    shutil.copy(GITHUB / ".github" / "workflows" / broken.name, broken)
    edit(broken, old, new)
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert finding in result.stdout


def check_gitlab(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the GitLab CI schema it ships; a proxy that answers nothing makes sure it reads
    no schema from the network."""
    offline = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **offline},
    )


def test_the_gitlab_pipeline_passes_gitlab_s_schema_offline() -> None:
    result = check_gitlab(GITLAB_CI)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("resource_group: reconciler-fleet", "resource_grop: reconciler-fleet"),
        ("terraform: plan.gitlab.json", "terraform: {file: plan.gitlab.json}"),
        ("expire_in: 30 days\n\napply:", "expire_in: [30, days]\n\napply:"),
    ],
)
def test_the_gitlab_check_fails_on_a_broken_pipeline(tmp_path: Path, old: str, new: str) -> None:
    broken = tmp_path / ".gitlab-ci.yml"
    shutil.copy(GITLAB_CI, broken)
    edit(broken, old, new)
    result = check_gitlab(broken)
    assert result.returncode == 1, result.stdout + result.stderr


# ---- what the pipelines promise -------------------------------------------------------------------------------


def test_apply_and_drift_run_one_at_a_time_per_fleet_and_are_never_cancelled() -> None:
    for name in ("apply", "drift"):
        concurrency = workflow(name)["concurrency"]
        assert concurrency["cancel-in-progress"] is False
        assert concurrency["group"].endswith(EXAMPLES_FLEET)  # reconciler.yaml's fleet, to edit with it
    # a GitHub group keeps one pending run: a drift check must not take the place of a waiting apply
    assert workflow("apply")["concurrency"]["group"] != workflow("drift")["concurrency"]["group"]
    jobs = gitlab_jobs()
    assert jobs["apply"]["resource_group"] == jobs["drift"]["resource_group"] == f"reconciler-fleet-{EXAMPLES_FLEET}"


def test_the_plan_is_kept_and_shown_where_reviewers_look() -> None:
    steps = {step.get("id", step.get("name")): step for _, job, _, step in github_steps() if job == "plan"}
    assert steps["Keep the plan file"]["uses"].startswith("actions/upload-artifact@")
    assert "plan.json" in steps["Keep the plan file"]["with"]["path"]
    assert steps["comment"]["uses"].startswith("actions/github-script@")
    plan = gitlab_jobs()["plan"]
    assert plan["artifacts"]["reports"] == {"terraform": "plan.gitlab.json"}
    assert "plan.json" in plan["artifacts"]["paths"]


def test_scripts_take_values_from_the_environment_never_from_expressions() -> None:
    """`${{ ... }}` inside a script is pasted in before the shell reads it (script injection); the examples
    pass values through `env:` instead, which is also what lets these tests run the scripts."""
    assert [where for where, script in scripts() if "${{" in script] == []


def test_secrets_come_from_the_secret_store() -> None:
    sensitive = {"RECONCILER_STATE_DSN", "FLEET_API_PASSWORD", "WEBHOOK_AUTH"}
    for file in ("plan", "apply", "drift"):
        for job in workflow(file)["jobs"].values():
            for name, value in job.get("env", {}).items():
                if name in sensitive:
                    assert value.startswith("${{ secrets."), (file, name, value)


# ---- running the scripts ----------------------------------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(secrets|vars|inputs|env)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class Job:
    """One job of an example pipeline, run here as its runner would: its script under bash -eo pipefail in the
    config repo, with the environment the file gives it."""

    system: str  # github | gitlab
    repo: Path
    secrets: dict[str, str]  # the secrets and variables set in the CI system's settings
    local: dict[str, str]  # what this machine changes: the sandbox's URL for the API's, a schema of the test's own

    @property
    def summary(self) -> Path:
        return self.repo / ".github_step_summary"

    def run(self, job: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        script, env = self.github(job) if self.system == "github" else self.gitlab(job)
        env.update(overrides)
        file = self.repo / f".{job}.sh"
        file.write_text(script)
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(file)],
            cwd=self.repo,
            env=measured({**base_environment(), **env, **self.local}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def writer(self) -> dict[str, str]:
        """The environment of a writer (apply, refresh) run by hand on the same state and API as the jobs."""
        state = {"RECONCILER_STATE_BACKEND": "postgres", "RECONCILER_STATE_DSN": self.secrets["STATE_DSN"]}
        return {**base_environment(), **self.secrets, **state, **self.local}

    def github(self, step_id: str) -> tuple[str, dict[str, str]]:
        for path in WORKFLOWS:
            spec = load(path)
            for job in spec["jobs"].values():
                for step in job["steps"]:
                    if step.get("id") == step_id and "run" in step:
                        env: dict[str, str] = {}
                        for layer in (spec.get("env", {}), job.get("env", {}), step.get("env", {})):
                            env.update({k: self.expand(str(v), env) for k, v in layer.items()})
                        env["GITHUB_OUTPUT"] = str(self.repo / ".github_output")
                        env["GITHUB_STEP_SUMMARY"] = str(self.summary)
                        return str(step["run"]), env
        raise AssertionError(f"no step with id {step_id} runs a script")

    def expand(self, value: str, env: Mapping[str, str]) -> str:
        def one(match: re.Match[str]) -> str:
            store, name = match.groups()
            return env.get(name, "") if store == "env" else self.secrets.get(name, "")

        expanded = EXPRESSION.sub(one, value)
        assert "${{" not in expanded, f"an expression these tests do not evaluate: {value}"
        return expanded

    def gitlab(self, name: str) -> tuple[str, dict[str, str]]:
        spec = load(GITLAB_CI)
        job = spec[name]
        # the runner would install reconciler first; here it is installed already
        assert spec["default"]["before_script"] == ['python -m pip install --quiet "$INSTALL_RECONCILER"']
        variables: dict[str, Any] = dict(spec.get("variables", {}))
        parents = job.get("extends", [])
        for parent in [parents] if isinstance(parents, str) else parents:
            variables.update(spec[parent].get("variables", {}))
        variables.update(job.get("variables", {}))
        env = {k: str(v["value"] if isinstance(v, dict) else v) for k, v in variables.items()}
        # the project's CI/CD variables win over the file's, as in GitLab; $NAME refers to any of them
        env.update(self.secrets)
        env = {k: re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), v) for k, v in env.items()}
        return "\n".join(job["script"]), env


def base_environment() -> dict[str, str]:
    """A runner's environment before the job's own: a PATH where `reconciler` is this checkout's."""
    base = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "LC_ALL", "TMPDIR"}}
    base["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return base


@pytest.fixture
def ci_repo(tmp_path: Path, request: pytest.FixtureRequest, pg_dsn: str, pg_schema: str) -> Iterator[Job]:
    """A copy of examples/ given the CI files of one system, as examples/ci/README.md says, and its state in
    PostgreSQL."""
    system = request.param
    repo = copy_examples(tmp_path / "fleet-config")
    shutil.rmtree(repo / "ci")
    shutil.copytree(CI / system, repo, dirs_exist_ok=True)
    secrets = {"STATE_DSN": pg_dsn, "WEBHOOK_AUTH": SECRETS["WEBHOOK_AUTH"]}
    yield Job(system, repo, secrets, {"RECONCILER_STATE_SCHEMA": pg_schema})


SYSTEMS = pytest.mark.parametrize("ci_repo", ["github", "gitlab"], indirect=True)
slow = pytest.mark.slow


def connect(job: Job, box: Sandbox) -> None:
    """Point the job's API calls at the sandbox, with the sandbox's credentials in the secret store."""
    job.secrets.update(
        FLEET_API_CLIENT_ID=box.settings.client_id,
        FLEET_API_USERNAME=box.settings.username,
        FLEET_API_PASSWORD=box.settings.password,
    )
    job.local.update(RECONCILER_API_URL=box.api, RECONCILER_API_RATE_LIMIT="500")


def job_name(job: Job, github: str, gitlab: str) -> str:
    return github if job.system == "github" else gitlab


@slow
@pytest.mark.parametrize("ci_repo", ["github", pytest.param("gitlab", marks=needs_gitlab_report)], indirect=True)
def test_the_plan_job_passes_with_changes_pending_and_keeps_the_plan(ci_repo: Job) -> None:
    result = ci_repo.run("plan")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Changes pending" in result.stdout
    saved = json.loads((ci_repo.repo / "plan.json").read_text())
    assert saved["fleet"] == EXAMPLES_FLEET
    assert saved["summary"]["callbacks_create"] == 1
    assert "callback.fleet-ops" in (ci_repo.repo / "plan.md").read_text()
    if ci_repo.system == "gitlab":
        report = json.loads((ci_repo.repo / "plan.gitlab.json").read_text())
        assert set(report) == {"create", "update", "delete"}
        assert sum(report.values()) > 0
        assert "PLAN_NOTE_TOKEN is not set" in result.stderr


@slow
@SYSTEMS
def test_the_plan_job_fails_on_invalid_manifests_with_the_diagnostic(ci_repo: Job) -> None:
    edit(ci_repo.repo / "manifests" / "schedules.yaml", "slot: 3", "slot: 5")
    result = ci_repo.run("plan")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "manifests/schedules.yaml:" in result.stderr
    assert "Changes pending" not in result.stdout


@slow
@SYSTEMS
def test_the_plan_job_fails_when_the_state_s_dsn_is_missing(ci_repo: Job) -> None:
    del ci_repo.secrets["STATE_DSN"]  # a pull request from a fork, or a secret not set
    result = ci_repo.run("plan")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "state.dsn" in result.stderr


@slow
@SYSTEMS
def test_the_apply_job_applies_and_a_second_run_has_nothing_to_do(ci_repo: Job) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        connect(ci_repo, box)
        first = ci_repo.run("apply")
        assert first.returncode == 0, first.stdout + first.stderr
        box.wait(lambda: held_programs(box) == desired_programs(ci_repo.repo))
        again = ci_repo.run("apply")
        assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout


@slow
@SYSTEMS
def test_the_apply_job_waits_for_a_lock_then_fails_explaining_it(ci_repo: Job) -> None:
    with sandbox(vehicles=40) as box:
        connect(ci_repo, box)
        backend = open_workspace(ci_repo.repo / "reconciler.yaml", ci_repo.writer()).backend
        holder = LockInfo.for_this_process("refresh")
        backend.acquire_lock(holder)
        try:
            result = ci_repo.run("apply", LOCK_RETRIES="3", LOCK_RETRY_SECONDS="0")
        finally:
            backend.release_lock(holder.id)
        assert result.returncode == 5, result.stdout + result.stderr
        assert result.stdout.count("trying again") == 2  # three attempts
        assert "stayed locked" in result.stdout
        assert holder.id in result.stderr  # reconciler names the holder
        assert [call for call in box.inspect("stats")["calls"] if not call.startswith("sandbox_")] == []
        done = ci_repo.run("apply", LOCK_RETRIES="3", LOCK_RETRY_SECONDS="0")  # the lock gone, it goes on
        assert done.returncode == 0, done.stdout + done.stderr


@slow
@SYSTEMS
def test_a_guard_stops_the_apply_job_until_a_person_allows_it(ci_repo: Job) -> None:
    allow = job_name(ci_repo, "ALLOW", "APPLY_ALLOW")
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        connect(ci_repo, box)
        assert ci_repo.run("apply").returncode == 0
        box.wait(lambda: held_programs(box) == desired_programs(ci_repo.repo))
        schedules = ci_repo.repo / "manifests" / "schedules.yaml"
        schedules.write_text(schedules.read_text().split("---\n")[0])  # the weekend schedule goes: 24 slots deleted
        blocked = ci_repo.run("apply")
        assert blocked.returncode == 4, blocked.stdout + blocked.stderr
        assert "Blocked by a guard (exit 4)" in blocked.stdout
        # 24 of 84 slots deleted and 24 of 30 vehicles changed: both guards stop it; allowing one is not enough
        one = ci_repo.run("apply", **{allow: "max_deleted_slots"})
        assert one.returncode == 4, one.stdout + one.stderr
        assert "max_changed_vehicles" in one.stdout + one.stderr
        allowed = ci_repo.run("apply", **{allow: "max_deleted_slots max_changed_vehicles"})
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        box.wait(lambda: held_programs(box) == desired_programs(ci_repo.repo))


@slow
@SYSTEMS
def test_the_apply_job_explains_invalid_manifests(ci_repo: Job) -> None:
    edit(ci_repo.repo / "manifests" / "schedules.yaml", "slot: 3", "slot: 5")
    with sandbox(vehicles=40) as box:
        connect(ci_repo, box)
        result = ci_repo.run("apply")
        assert [call for call in box.inspect("stats")["calls"] if not call.startswith("sandbox_")] == []
    assert result.returncode == 7, result.stdout + result.stderr
    assert "manifests/schedules.yaml:" in result.stderr
    assert "Invalid manifests or settings, or a " in result.stdout and "not set (exit 7)" in result.stdout


@slow
@SYSTEMS
def test_the_apply_job_without_the_api_password_names_what_is_missing(ci_repo: Job) -> None:
    """GitLab leaves a variable nobody set unset: reconciler names it (7). GitHub sets a missing secret to "",
    which reaches the API: it refuses the credentials and the run stops at once (1), naming the settings."""
    with sandbox(vehicles=40) as box:
        connect(ci_repo, box)
        del ci_repo.secrets["FLEET_API_PASSWORD"]
        result = ci_repo.run("apply")
        sent = [call for call in box.inspect("stats")["calls"] if not call.startswith("sandbox_")]
    if ci_repo.system == "gitlab":
        assert result.returncode == 7, result.stdout + result.stderr
        assert "FLEET_API_PASSWORD not set" in result.stderr
        assert sent == []
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "refused the credentials" in result.stderr and "api.password" in result.stderr
        assert "reconciler apply failed (exit 1)" in result.stdout
        assert len(sent) <= 2  # stopped at the first refusal


@slow
@SYSTEMS
def test_the_drift_job_fails_on_drift_and_reports_it(ci_repo: Job) -> None:
    drift = job_name(ci_repo, "refresh", "drift")
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        connect(ci_repo, box)
        applied = subprocess.run(
            [str(BIN / "reconciler"), "apply", "--auto-approve", "--wait=30"],
            cwd=ci_repo.repo,
            env=measured(ci_repo.writer()),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        clean = ci_repo.run(drift)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "No drift" in clean.stdout
        vin = make_vin(1)
        httpx.put(f"{box.root}/_sandbox/vehicles/{vin}", json={"programs": []})
        found = ci_repo.run(drift)
    assert found.returncode == 2, found.stdout + found.stderr
    assert "Drift found (exit 2)" in found.stdout
    assert vin in found.stdout
    if ci_repo.system == "github":
        summary = ci_repo.summary.read_text()
        assert summary.startswith("### Drift check")
        assert vin in summary
    else:
        assert vin in (ci_repo.repo / "refresh.txt").read_text()


# ---- one comment per pull request -------------------------------------------------------------------------------

NODE_HARNESS = r"""
// Runs a github-script step's script with a stand-in for the GitHub API that keeps the comments in a file.
const fs = require('fs');
const [scriptFile, worldFile] = process.argv.slice(2);
const world = JSON.parse(fs.readFileSync(worldFile, 'utf8'));
const save = () => fs.writeFileSync(worldFile, JSON.stringify(world));
const issues = {
  listComments: async (p) => ({ data: world.comments.filter((c) => c.issue === p.issue_number) }),
  updateComment: async (p) => {
    const c = world.comments.find((c) => c.id === p.comment_id);
    c.body = p.body;
    world.calls.push(['update', p.comment_id]);
    return { data: c };
  },
  createComment: async (p) => {
    const c = { id: world.next++, issue: p.issue_number, user: { type: 'Bot' }, body: p.body };
    world.comments.push(c);
    world.calls.push(['create', c.id]);
    return { data: c };
  },
};
const github = { rest: { issues }, paginate: async (method, params) => (await method(params)).data };
const context = {
  repo: { owner: 'fleet', repo: 'fleet-config' },
  issue: { number: world.issue },
  payload: { pull_request: { head: { sha: world.sha } } },
  serverUrl: 'https://github.invalid',
  runId: 42,
};
const core = { setFailed: (m) => { world.failed = m; }, info: () => {}, warning: () => {} };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', fs.readFileSync(scriptFile, 'utf8'))(
  require, github, context, core,
).then(save, (error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed in CI to run the pull request comment's script")
        pytest.skip("node is not installed here")
    return found


def comment(node: str, tmp_path: Path, world: dict[str, Any], plan: str) -> dict[str, Any]:
    """Run the workflow's comment step once, for a plan whose markdown is `plan`."""
    step = next(s for _, job, _, s in github_steps() if s.get("id") == "comment")
    (tmp_path / "plan.md").write_text(plan)
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "harness.js").write_text(NODE_HARNESS)
    (tmp_path / "world.json").write_text(json.dumps(world))
    result = subprocess.run(
        [node, "harness.js", "script.js", "world.json"],
        cwd=tmp_path,
        env={**os.environ, **step["env"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads((tmp_path / "world.json").read_text()))


def plan_markdown(line: str) -> str:
    return f"{MARKER}\n### reconciler plan for fleet `{EXAMPLES_FLEET}`\n\n**{line}**\n"


def test_the_pull_request_gets_one_plan_comment_updated_on_every_push(node: str, tmp_path: Path) -> None:
    someone = {"id": 1, "issue": 7, "user": {"type": "User"}, "body": f"{MARKER}\nquoted by a person"}
    elsewhere = {"id": 2, "issue": 8, "user": {"type": "Bot"}, "body": plan_markdown("another pull request")}
    world: dict[str, Any] = {"issue": 7, "sha": "a" * 40, "next": 100, "calls": [], "comments": [someone, elsewhere]}
    world = comment(node, tmp_path, world, plan_markdown("Plan: 1 callback to create"))
    assert world["calls"] == [["create", 100]]
    world["sha"] = "b" * 40
    world = comment(node, tmp_path, world, plan_markdown("No changes"))
    assert world["calls"] == [["create", 100], ["update", 100]]
    [ours] = [c for c in world["comments"] if c["id"] == 100]
    assert ours["body"].startswith(MARKER + "\n")
    assert "No changes" in ours["body"] and "Plan: 1 callback" not in ours["body"]
    assert f"Plan of {'b' * 40}" in ours["body"]
    assert [c["body"] for c in world["comments"] if c["id"] != 100] == [someone["body"], elsewhere["body"]]
    assert "failed" not in world


def test_the_comment_step_refuses_a_plan_without_its_marker(node: str, tmp_path: Path) -> None:
    world: dict[str, Any] = {"issue": 7, "sha": "a" * 40, "next": 100, "calls": [], "comments": []}
    world = comment(node, tmp_path, world, "Plan: 1 callback to create\n")
    assert world["calls"] == []
    assert "does not start with the plan marker" in world["failed"]


def test_a_plan_near_the_comment_limit_is_posted_without_the_footer(node: str, tmp_path: Path) -> None:
    world: dict[str, Any] = {"issue": 7, "sha": "a" * 40, "next": 100, "calls": [], "comments": []}
    plan = plan_markdown("big") + "x" * (65_536 - len(plan_markdown("big")) - 10)
    world = comment(node, tmp_path, world, plan)
    assert world["comments"][0]["body"] == plan


@dataclass
class GitLabApi:
    """A stand-in for GitLab's notes API: the notes of merge request 5 of project 12, two to a page."""

    notes: list[dict[str, Any]]
    token: str = "glpat-canary-5"
    requests: list[str] | None = None

    def app(self) -> Starlette:
        self.requests = []
        base = "/api/v4/projects/12/merge_requests/5/notes"

        async def user(request: Request) -> Response:
            return self.guard(request) or JSONResponse({"id": 77, "username": "project_12_bot"})

        async def notes(request: Request) -> Response:
            if refused := self.guard(request):
                return refused
            if request.method == "POST":
                note = {"id": 900 + len(self.notes), "author": {"id": 77}, **(await request.json())}
                self.notes.append(note)
                return JSONResponse(note, status_code=201)
            page = int(request.query_params.get("page", "1"))
            assert request.query_params.get("per_page") == "100"
            shown = self.notes[(page - 1) * 2 : page * 2]
            more = len(self.notes) > page * 2
            return JSONResponse(shown, headers={"X-Next-Page": str(page + 1) if more else ""})

        async def note(request: Request) -> Response:
            if refused := self.guard(request):
                return refused
            [found] = [n for n in self.notes if n["id"] == int(request.path_params["id"])]
            if found["author"]["id"] != 77:
                return JSONResponse({"message": "403 Forbidden"}, status_code=403)
            found["body"] = (await request.json())["body"]
            return JSONResponse(found)

        return Starlette(
            routes=[
                Route("/api/v4/user", user),
                Route(base, notes, methods=["GET", "POST"]),
                Route(base + "/{id:int}", note, methods=["PUT"]),
            ]
        )

    def guard(self, request: Request) -> Response | None:
        assert self.requests is not None
        self.requests.append(f"{request.method} {request.url.path}")
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return None


def post_note(root: str, plan: Path, token: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "CI_API_V4_URL": f"{root}/api/v4",
        "CI_PROJECT_ID": "12",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_COMMIT_SHA": "c" * 40,
        "CI_JOB_URL": "https://gitlab.invalid/fleet/fleet-config/-/jobs/3",
        "PLAN_NOTE_TOKEN": token,
    }
    return subprocess.run(
        [sys.executable, str(PLAN_NOTE), str(plan)],
        env=measured(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_merge_request_gets_one_plan_note_updated_on_every_push(tmp_path: Path) -> None:
    people = [
        {"id": 1, "author": {"id": 3}, "body": "looks good"},
        {"id": 2, "author": {"id": 3}, "body": f"{MARKER}\nquoted by a person"},
        {"id": 3, "author": {"id": 77}, "body": "added 1 commit", "system": True},
    ]
    api = GitLabApi([dict(n) for n in people])
    plan = tmp_path / "plan.md"
    with serve_app(api.app()) as root:
        plan.write_text(plan_markdown("Plan: 1 callback to create"))
        first = post_note(root, plan, api.token)
        assert first.returncode == 0, first.stderr
        assert first.stdout == "created note 903\n"
        plan.write_text(plan_markdown("No changes"))
        second = post_note(root, plan, api.token)  # our note is on the second page now
        assert second.returncode == 0, second.stderr
        assert second.stdout == "updated note 903\n"
    ours = api.notes[3]
    assert ours["body"].startswith(plan_markdown("No changes"))
    assert f"Plan of {'c' * 40}" in ours["body"]
    assert api.notes[:3] == people
    assert "GET /api/v4/projects/12/merge_requests/5/notes" in (api.requests or [])


def test_the_plan_note_fails_clearly_without_leaking_its_token(tmp_path: Path) -> None:
    api = GitLabApi([])
    plan = tmp_path / "plan.md"
    plan.write_text(plan_markdown("Plan"))
    with serve_app(api.app()) as root:
        refused = post_note(root, plan, "glpat-wrong-canary-6")
    assert refused.returncode == 1
    assert "could not post the plan on the merge request: HTTP Error 401" in refused.stderr
    assert "canary" not in refused.stdout + refused.stderr
    assert api.notes == []
    plan.write_text("no marker\n")
    unmarked = post_note("http://127.0.0.1:9", plan, api.token)
    assert unmarked.returncode == 1
    assert "does not start with the plan marker" in unmarked.stderr


# ---- the pre-commit hook ----------------------------------------------------------------------------------------


def hook() -> dict[str, Any]:
    [found] = [h for h in load(HOOKS) if h["id"] == "reconciler-validate"]
    return dict(found)


def run_hook(repo: Path) -> subprocess.CompletedProcess[str]:
    """Run the hook as pre-commit does with pass_filenames false: its entry and args, no file names, at the
    repository's root, from the environment where it installed this package (language: python)."""
    spec = hook()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FLEET_API_", "WEBHOOK_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [*shlex.split(spec["entry"]), *spec.get("args", [])],
        cwd=repo,
        env=measured(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_hook_is_a_python_hook_run_once_on_manifest_changes() -> None:
    spec = hook()
    assert spec["language"] == "python"
    assert spec["pass_filenames"] is False
    files = re.compile(spec["files"])
    for path in [
        "reconciler.yaml",
        "manifests/callbacks.yaml",
        "manifests/depots/north.yml",
        "fleets/a/reconciler.yaml",
    ]:
        assert files.search(path), path
    for path in ["README.md", ".gitlab-ci.yml", "docs/manifests.md", "myreconciler.yaml", "manifests/notes.txt"]:
        assert not files.search(path), path


def test_the_hook_passes_a_good_config_repo(tmp_path: Path) -> None:
    result = run_hook(copy_examples(tmp_path / "fleet-config"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nValid: 3 files" in result.stdout  # with warnings for the secrets a laptop need not have


def test_the_hook_fails_a_broken_config_repo_naming_the_place(tmp_path: Path) -> None:
    repo = copy_examples(tmp_path / "fleet-config")
    edit(repo / "manifests" / "schedules.yaml", 'start: "13:30"', 'start: "25:30"')
    result = run_hook(repo)
    assert result.returncode == 7, result.stdout + result.stderr
    assert re.search(r"manifests/schedules\.yaml:\d+:\d+: .*start", result.stdout + result.stderr)
    assert "Traceback" not in result.stderr


def test_the_ci_readme_names_every_secret_the_examples_read() -> None:
    """What examples/ci/README.md tells users to set: every ${env:...} of examples/, and the state's DSN."""
    names = set()
    for path in [EXAMPLES / "reconciler.yaml", *sorted((EXAMPLES / "manifests").glob("*.yaml"))]:
        names |= set(re.findall(r"\$\{env:(\w+)\}", path.read_text()))
    readme = (CI / "README.md").read_text()
    assert names == {"FLEET_API_CLIENT_ID", "FLEET_API_USERNAME", "FLEET_API_PASSWORD", "WEBHOOK_AUTH"}
    for name in [*names, "STATE_DSN"]:
        assert f"`{name}`" in readme, name
    for path in WORKFLOWS:
        for name in names:
            if "apply" in path.name or "drift" in path.name:
                assert f"{name}: ${{{{ " in path.read_text(), (path.name, name)
