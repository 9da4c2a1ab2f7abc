"""The CLI as users and CI run it: a real subprocess, exit codes, formats, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main
from tests.commands import SECRETS, run
from tests.files import EXAMPLES, FIXTURES, WriteFiles


def test_examples_validate_with_chdir_and_secrets_never_shown() -> None:
    result = run("--chdir", str(EXAMPLES), "validate", env=SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "Valid: 3 files, 1 callback, 2 vehicle groups, 2 schedules; 30 vehicles, 84 slots."
    )
    for secret in SECRETS.values():
        assert secret not in result.stdout + result.stderr


def test_examples_without_secrets_warn_and_strict_fails() -> None:
    relaxed = run("-C", str(EXAMPLES), "validate")
    assert relaxed.returncode == 0
    assert (
        "reconciler.yaml:9:13: warning: api.password: environment variable FLEET_API_PASSWORD not set" in relaxed.stdout
    )
    assert (
        "manifests/callbacks.yaml:10:20: warning: webhook.headers.Authorization: "
        "environment variable WEBHOOK_AUTH not set" in relaxed.stdout
    )
    strict = run("-C", str(EXAMPLES), "validate", "--strict")
    assert strict.returncode == 7
    assert "reconciler.yaml:9:13: api.password: environment variable FLEET_API_PASSWORD not set" in strict.stdout
    assert strict.stdout.strip().splitlines()[-1] == "Invalid: 4 errors, 0 warnings in 3 files."


def test_invalid_manifest_exits_7_with_location_and_no_traceback(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "repo", ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log"))
    shutil.copy(FIXTURES / "bad" / "slot-five.yaml", tmp_path / "repo" / "manifests" / "five.yaml")
    result = run("validate", cwd=tmp_path / "repo")
    assert result.returncode == 7
    assert "manifests/five.yaml:6:11: slot 5 is out of range: a vehicle has slots 1 to 4" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_json_format_lists_diagnostics_with_result(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "repo", ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log"))
    shutil.copy(FIXTURES / "bad" / "start-24-00.yaml", tmp_path / "repo" / "manifests" / "late.yaml")
    result = run("validate", "--format", "json", cwd=tmp_path / "repo", env=SECRETS)
    assert result.returncode == 7
    report = json.loads(result.stdout)
    assert report["result"] == "invalid"
    assert report["exit_code"] == 7
    assert report["diagnostics"] == [
        {
            "file": "manifests/late.yaml",
            "line": 7,
            "column": 12,
            "severity": "error",
            "rule": "start-range",
            "message": "start '24:00' is outside 00:00..23:59",
        },
        {  # the schedule with the bad start still takes part in the slot checks, in the same run
            "file": "manifests/schedules.yaml",
            "line": 12,
            "column": 11,
            "severity": "error",
            "rule": "slot-conflict",
            "message": "slot 2 of vehicle W0LZGBZE8RS000003 is claimed by both 'midnight' (manifests/late.yaml:6:11) "
            "and 'weekday-shifts' (manifests/schedules.yaml:12:11)",
        },
    ]
    valid = json.loads(run("-C", str(EXAMPLES), "validate", "--format", "json", env=SECRETS).stdout)
    assert valid["result"] == "ok"
    assert valid["summary"]["vehicles"] == 30
    assert valid["diagnostics"] == []


def test_github_format_annotates_files(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "repo", ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log"))
    shutil.copy(FIXTURES / "bad" / "misspelt-day.yaml", tmp_path / "repo" / "manifests" / "days.yaml")
    result = run("validate", "--format", "github", cwd=tmp_path / "repo", env=SECRETS)
    assert result.returncode == 7
    assert result.stdout.splitlines()[0] == (
        "::error file=manifests/days.yaml,line=8,col=17,title=days-unknown::unknown day 'Tues': "
        "days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (did you mean 'Tue'?)"
    )


@pytest.mark.parametrize(
    "args",
    [["validate", "--bogus"], ["nonsense"], ["validate", "--format", "xml"], ["--chdir", "/no/such/dir", "validate"]],
)
def test_usage_errors_exit_64(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 64
    assert "Error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_version_exit_0() -> None:
    assert run("--help").returncode == 0
    version = run("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("reconciler, version ")


def test_the_installed_reconciler_script_is_the_cli_and_passes_its_exit_code_on(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("reconciler")  # what pip installed beside this interpreter
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FLEET_API_", "WEBHOOK_"))}

    def script_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env={**environ, **SECRETS}, capture_output=True, text=True, timeout=60, check=False
        )

    valid = script_run("-C", str(EXAMPLES), "validate")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.strip().splitlines()[-1].startswith("Valid: 3 files, 1 callback")
    assert script_run("-C", str(EXAMPLES), "nonsense").returncode == 64
    missing = script_run("-C", str(tmp_path), "validate")
    assert missing.returncode == 7
    assert missing.stdout.startswith("reconciler.yaml: no such file")


def test_help_lists_every_command_group() -> None:
    listed = run("--help").stdout.split("Commands:")[1]
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert names == [
        "apply",
        "import",
        "plan",
        "refresh",
        "sandbox",
        "serve",
        "show",
        "state",
        "status",
        "validate",
        "webhook",
    ]


def test_the_console_script_runs_main() -> None:
    from importlib.metadata import entry_points

    from reconciler.cli import main_entry

    (script,) = entry_points(group="console_scripts", name="reconciler")
    assert script.value == "reconciler.cli:main_entry"
    assert script.load() is main_entry
    installed = Path(sys.executable).parent / "reconciler"
    if installed.exists():  # an installed environment: the script itself
        result = subprocess.run([installed, "--version"], capture_output=True, text=True, timeout=60, check=False)
        assert (result.returncode, result.stdout.startswith("reconciler, version ")) == (0, True)


def test_missing_config_is_exit_7(tmp_path: Path) -> None:
    result = run("validate", cwd=tmp_path)
    assert result.returncode == 7
    assert result.stdout.startswith(
        "reconciler.yaml: no such file (run in your config repo, or pass --config or --chdir)"
    )


def test_config_flag_and_env_override(write: WriteFiles, tmp_path: Path) -> None:
    write(
        {
            "conf/settings.yaml": "fleet: f1\nmanifests: [../m]\nallow_manifests_outside_repo: true\n",
            "m/group.yaml": "kind: VehicleGroup\nname: g\nvins: [VF3UHNKF5RL000005]\n",
            "other/group.yaml": "kind: VehicleGroup\nname: h\nvins: [VF3UHNKF5RL000005, VF7SHMZH8RP000001]\n",
        }
    )
    assert run("--config", "conf/settings.yaml", "validate", cwd=tmp_path).returncode == 0
    env = {"RECONCILER_CONFIG": "conf/settings.yaml", "RECONCILER_MANIFESTS": "../other"}
    result = run("validate", "--format", "json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["summary"]["groups"] == 1
    bad = run("validate", cwd=tmp_path, env={**env, "RECONCILER_API_PARALLELISM": "many"})
    assert bad.returncode == 7
    assert "$RECONCILER_API_PARALLELISM: api.parallelism must be a whole number, not the string 'many'" in bad.stdout


def test_main_in_process_returns_codes(write: WriteFiles, chdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write({"reconciler.yaml": "fleet: f1\nmanifests: [m.yaml]\n", "m.yaml": "kind: VehicleGroup\nname: g\nvins: []\n"})
    assert main(["validate"]) == 0
    assert "Valid: 1 file" in capsys.readouterr().out
    assert main(["validate", "--what"]) == 64
    assert "No such option" in capsys.readouterr().err


def test_internal_error_is_reported_briefly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("reconciler.cli.validate.validate_project", broken)
    monkeypatch.delenv("RECONCILER_DEBUG", raising=False)
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Internal error: RuntimeError: boom")
    assert "Traceback" not in err


def test_every_kind_of_finding_is_reported_in_one_run(write: WriteFiles, tmp_path: Path) -> None:
    """A schema error, a bad start, a bad VIN and a slot conflict: one run reports all four. The bad start and
    the bad VIN sit in the very documents that conflict, so checking them in stages would hide the conflict."""
    write(
        {
            "reconciler.yaml": "fleet: f1\nmanifests: [manifests]\n",
            "manifests/callbacks.yaml": """
                kind: Callback
                name: ops
                webhook: {target: "http://127.0.0.1:8081/hook", headers: {Authorization: x}}
                remoteTypes: [ThermalPreconditioning]
                """,
            "manifests/groups.yaml": """
                kind: VehicleGroup
                name: north
                vins: [VF3UHNKF5RL000005, VF3UHNKF5RLOOOOO5]
                """,
            "manifests/schedules.yaml": """
                kind: Preconditioning
                name: early
                callback: ops
                vehicles: {groups: [north]}
                programs:
                  - {slot: 1, start: "07:00", days: weekdays}
                  - {slot: 2, start: "25:00", days: weekdays}
                ---
                kind: Preconditioning
                name: late
                callback: ops
                vehicles: {vins: [VF3UHNKF5RL000005]}
                programs:
                  - {slot: 1, start: "08:00", days: weekdays}
                """,
            "manifests/broken.yaml": """
                kind: Preconditioning
                name: broken
                callback: ops
                vehicles: {vins: [VF7SHMZH8RP000001]}
                programs:
                  - {slot: 1, start: "06:00", days: daily, colour: red}
                """,
        }
    )
    result = run("validate", cwd=tmp_path)
    assert result.returncode == 7
    assert result.stdout.splitlines() == [
        "manifests/broken.yaml:6:44: unknown field 'colour' in programs[0]",
        "manifests/groups.yaml:3:27: malformed VIN 'VF3UHNKF5RLOOOOO5': a VIN is 17 letters and digits, "
        "without I, O or Q",
        "manifests/schedules.yaml:7:22: start '25:00' is outside 00:00..23:59",
        "manifests/schedules.yaml:14:12: slot 1 of vehicle VF3UHNKF5RL000005 is claimed by both 'early' "
        "(manifests/schedules.yaml:6:12) and 'late' (manifests/schedules.yaml:14:12)",
        "Invalid: 4 errors, 0 warnings in 4 files.",
    ]
    report = json.loads(run("validate", "--format", "json", cwd=tmp_path).stdout)
    assert [d["rule"] for d in report["diagnostics"]] == ["unknown-field", "vin-format", "start-range", "slot-conflict"]
