"""reconciler.yaml: defaults, ${env:...}, RECONCILER_* overrides, errors with positions."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import pytest

from reconciler.config import load_settings, parse_duration
from reconciler.diagnostics import Severity
from reconciler.errors import ConfigError, ExitCode
from reconciler.plan import Limit
from tests.files import WriteFiles

FULL = """
fleet: 0a123bc5d1e873066454b4d9
manifests: [manifests, extra.yaml]
api:
  url: https://api-cert.groupe-psa.com/connectedcar/v3
  client_id: ${env:PSA_CLIENT_ID}
  username: ${env:PSA_USERNAME}
  password: ${env:PSA_PASSWORD}
  client_cert: certs/client.pem
  rate_limit: 20
  parallelism: 8
state:
  backend: file
  path: .reconciler/state.json
guards:
  max_deleted_slots: 25%
  max_changed_vehicles: 40
pending_timeout: 45m
"""


def test_full_settings_resolve(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": FULL})
    env = {"PSA_CLIENT_ID": "app", "PSA_USERNAME": "mzp", "PSA_PASSWORD": "s3cret"}
    settings = load_settings(tmp_path / "reconciler.yaml", env)
    assert settings.require(settings.fleet, "fleet") == "0a123bc5d1e873066454b4d9"
    assert settings.manifests == (tmp_path / "manifests", tmp_path / "extra.yaml")
    assert settings.require(settings.api.password, "api.password") == "s3cret"
    assert settings.path(settings.api.client_cert, "api.client_cert") == tmp_path / "certs/client.pem"  # type: ignore[arg-type]
    assert settings.api.rate_limit == 20.0
    assert settings.guards["max_deleted_slots"] == Limit(25.0, True, "25%")
    assert settings.guards["max_changed_vehicles"] == Limit(40.0, False, "40")
    assert settings.pending_timeout == 2700.0
    assert settings.diagnostics == ()
    assert "s3cret" not in repr(settings)


def test_defaults_when_file_is_empty(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "# nothing yet\n"})
    settings = load_settings(tmp_path / "reconciler.yaml", {})
    assert settings.manifests == (tmp_path / "manifests",)
    assert settings.state.backend == "file"
    assert settings.path(settings.state.path, "state.path") == tmp_path / ".reconciler/state.json"  # type: ignore[arg-type]
    assert settings.api.parallelism == 8
    assert settings.pending_timeout == 1800.0
    with pytest.raises(ConfigError) as raised:
        settings.require(settings.fleet, "fleet")
    assert raised.value.diagnostics[0].message == "fleet is not set in reconciler.yaml"


def test_missing_variable_is_a_warning_until_the_value_is_needed(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": FULL})
    settings = load_settings(tmp_path / "reconciler.yaml", {"PSA_CLIENT_ID": "app"})
    assert [(d.severity, d.source.line, d.message) for d in settings.diagnostics] == [
        (Severity.WARNING, 6, "api.username: environment variable PSA_USERNAME not set"),
        (Severity.WARNING, 7, "api.password: environment variable PSA_PASSWORD not set"),
    ]
    with pytest.raises(ConfigError) as raised:
        settings.require(settings.api.password, "api.password")
    assert raised.value.exit_code is ExitCode.INVALID
    assert str(raised.value).endswith("reconciler.yaml:7:13: api.password: environment variable PSA_PASSWORD not set")


def test_environment_overrides_win_and_are_typed(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": FULL})
    env = {
        "RECONCILER_FLEET": "other-fleet",
        "RECONCILER_API_RATE_LIMIT": "2.5",
        "RECONCILER_API_PARALLELISM": "3",
        "RECONCILER_STATE_PATH": "/var/lib/reconciler/state.json",
        "RECONCILER_GUARDS_MAX_DELETED_SLOTS": "10",
        "RECONCILER_MANIFESTS": "a:b",
        "RECONCILER_PENDING_TIMEOUT": "90",
        "PSA_CLIENT_ID": "x",
        "PSA_USERNAME": "y",
        "PSA_PASSWORD": "z",
    }
    settings = load_settings(tmp_path / "reconciler.yaml", env)
    assert settings.require(settings.fleet, "fleet") == "other-fleet"
    assert settings.api.rate_limit == 2.5
    assert settings.api.parallelism == 3
    assert settings.path(settings.state.path, "state.path") == Path("/var/lib/reconciler/state.json")  # type: ignore[arg-type]
    assert settings.guards["max_deleted_slots"] == Limit(10.0, False, "10")
    assert settings.manifests == (tmp_path / "a", tmp_path / "b")
    assert settings.pending_timeout == 90.0


def test_unknown_override_warns_with_suggestion(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "fleet: f\n"})
    settings = load_settings(tmp_path / "reconciler.yaml", {"RECONCILER_STATE_PAHT": "x", "RECONCILER_DEBUG": "1"})
    assert [d.format() for d in settings.diagnostics] == [
        "$RECONCILER_STATE_PAHT: warning: environment variable RECONCILER_STATE_PAHT is not a reconciler setting "
        "(did you mean 'RECONCILER_STATE_PATH'?)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "fleet: f\nguards:\n  max_deleted_slots: 25 percent\n",
            "reconciler.yaml:3:22: guards.max_deleted_slots: the string '25 percent' is not valid: "
            "a count from 0 to 100000000, or a percentage from 0% to 100% such as 25%.",
        ),
        (
            "fleet: f\nstate:\n  backend: s3\n",
            "reconciler.yaml:3:12: state.backend: the string 's3' is not one of file, postgres",
        ),
        (
            "fleet: f\napi:\n  rate: 5\n",
            "reconciler.yaml:3:3: unknown field 'rate' in api (did you mean 'rate_limit'?)",
        ),
        ("fleet: f\napi:\n  parallelism: 0\n", "reconciler.yaml:3:16: api.parallelism must be at least 1, not 0"),
        ("fleet: f\n\tapi: {}\n", "reconciler.yaml:2:1: tab character in indentation: YAML indents with spaces"),
        ("- fleet\n", "reconciler.yaml:1:1: reconciler.yaml must be a mapping of settings"),
        ("fleet: f\n---\nfleet: g\n", "reconciler.yaml:3:1: reconciler.yaml holds one document"),
        ("fleet: f\nstate: {backend: postgres}\n", "reconciler.yaml:2:8: state.dsn is required with backend postgres"),
        (
            "fleet: ${env:}\n",
            "reconciler.yaml:1:8: malformed reference '${env:}': write ${env:NAME} with a variable name",
        ),
        (
            "fleet: f\npending_timeout: soon\n",
            "reconciler.yaml:2:18: pending_timeout: the string 'soon' is not valid: how long a remote may stay "
            "Pending before plan retries it: seconds, or 90s / 30m / 2h, up to 7 days (168h).",
        ),
    ],
)
def test_bad_settings(write: WriteFiles, chdir: Path, text: str, expected: str) -> None:
    write({"reconciler.yaml": text})
    with pytest.raises(ConfigError) as raised:
        load_settings("reconciler.yaml", {})
    assert [d.format() for d in raised.value.diagnostics if d.is_error] == [expected]


LIMIT = "a count from 0 to 100000000, or a percentage from 0% to 100% such as 25%."
PENDING = "how long a remote may stay Pending before plan retries it: seconds, or 90s / 30m / 2h, up to 7 days (168h)."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api:\n  rate_limit: 1e-300\n", "2:15: api.rate_limit must be at least 0.01, not 1e-300"),
        ("api:\n  rate_limit: 0\n", "2:15: api.rate_limit must be at least 0.01, not 0"),
        ("api:\n  rate_limit: 20000\n", "2:15: api.rate_limit must be at most 10000, not 20000"),
        ("api:\n  rate_limit: .nan\n", "2:15: api.rate_limit must be a number, not the value .nan"),
        ("api:\n  timeout: 1e308\n", "2:12: api.timeout must be at most 600, not 1e+308"),
        ("api:\n  timeout: .inf\n", "2:12: api.timeout must be a number, not the value .inf"),
        ("api:\n  timeout: 0.01\n", "2:12: api.timeout must be at least 0.1, not 0.01"),
        ("api:\n  parallelism: 8.0\n", "2:16: api.parallelism must be a whole number, not the number 8.0"),
        ("api:\n  parallelism: true\n", "2:16: api.parallelism must be a whole number, not the boolean true"),
        ("api:\n  parallelism: 100000\n", "2:16: api.parallelism must be at most 256, not 100000"),
        ("pending_timeout: 999h\n", "1:18: pending_timeout must be from 1s to 168h (7 days), not 999h"),
        ("serve:\n  interval: 100000000h\n", "2:13: serve.interval must be from 1s to 24h, not 100000000h"),
        ("serve:\n  lease_period: 25h\n", "2:17: serve.lease_period must be from 1s to 24h, not 25h"),
        ("pending_timeout: 0s\n", "1:18: pending_timeout must be from 1s to 168h (7 days), not 0s"),
        ("pending_timeout: 604801\n", f"1:18: pending_timeout: the number 604801 is not valid: {PENDING}"),
        ("pending_timeout: 60.0\n", f"1:18: pending_timeout: the number 60.0 is not valid: {PENDING}"),
        (
            "guards:\n  max_deleted_slots: 150%\n",
            f"2:22: guards.max_deleted_slots: the string '150%' is not valid: {LIMIT}",
        ),
        (
            "guards:\n  max_deleted_slots: 10.0\n",
            f"2:22: guards.max_deleted_slots: the number 10.0 is not valid: {LIMIT}",
        ),
        (
            "guards:\n  max_changed_vehicles: 1000000000000\n",
            f"2:25: guards.max_changed_vehicles: the number 1000000000000 is not valid: {LIMIT}",
        ),
        ("api:\n  url: ftp://x\n", "2:8: api.url 'ftp://x' is not an http(s) URL with a host"),
        ("api:\n  url: ftp://me:pw@x/\n", "2:8: api.url 'ftp://***@x/' is not an http(s) URL with a host"),
        ("api:\n  url: api.example.com\n", "2:8: api.url 'api.example.com' is not an http(s) URL with a host"),
        ("api:\n  url: ''\n", "2:8: api.url must not be empty"),
        ("api:\n  url: http://[::1/v3\n", "2:8: api.url 'http://[::1/v3' is not a valid URL"),
        ("api:\n  url: https://x:99999/v3\n", "2:8: api.url 'https://x:99999/v3' is not a valid URL"),
    ],
)
def test_numbers_and_urls_out_of_range_are_refused_where_written(
    write: WriteFiles, chdir: Path, text: str, expected: str
) -> None:
    write({"reconciler.yaml": text})
    with pytest.raises(ConfigError) as raised:
        load_settings("reconciler.yaml", {})
    assert [d.format() for d in raised.value.diagnostics if d.is_error] == [f"reconciler.yaml:{expected}"]
    assert raised.value.exit_code is ExitCode.INVALID


def test_values_at_the_bounds_are_accepted(write: WriteFiles, tmp_path: Path) -> None:
    write(
        {
            "reconciler.yaml": "api:\n  url: http://127.0.0.1:8080/connectedcar/v3\n  rate_limit: 0.01\n"
            "  timeout: 600\n  parallelism: 256\npending_timeout: 168h\n"
            "guards: {max_deleted_slots: 100%, max_changed_vehicles: 0}\n"
        }
    )
    settings = load_settings(tmp_path / "reconciler.yaml", {})
    assert (settings.api.rate_limit, settings.api.timeout, settings.api.parallelism) == (0.01, 600.0, 256)
    assert settings.pending_timeout == 7 * 24 * 3600
    assert settings.require(settings.api.url, "api.url") == "http://127.0.0.1:8080/connectedcar/v3"


def test_api_url_from_the_environment_is_checked_when_needed_and_not_shown(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "fleet: f\napi:\n  url: ${env:API_URL}\n"})
    settings = load_settings(tmp_path / "reconciler.yaml", {"API_URL": "ftp://secret-host/v3"})  # validate is fine
    with pytest.raises(ConfigError) as raised:
        settings.require(settings.api.url, "api.url")
    assert str(raised.value).endswith("reconciler.yaml:3:8: api.url '${env:API_URL}' is not an http(s) URL with a host")
    assert "secret-host" not in str(raised.value)
    assert raised.value.diagnostics[0].rule == "api-url"
    override = {"RECONCILER_API_URL": "api.example.com"}
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "reconciler.yaml", override)
    assert str(raised.value) == "$RECONCILER_API_URL: api.url 'api.example.com' is not an http(s) URL with a host"


def test_huge_numbers_in_overrides_are_type_errors_not_crashes(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "fleet: f\n"})
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "reconciler.yaml", {"RECONCILER_API_PARALLELISM": "9" * 5000})
    [diagnostic] = raised.value.diagnostics
    assert diagnostic.format().startswith("$RECONCILER_API_PARALLELISM: api.parallelism must be a whole number, not")
    assert len(diagnostic.message) < 200


def test_manifest_paths_stay_in_the_config_repo_unless_allowed(write: WriteFiles, tmp_path: Path) -> None:
    write({"repo/manifests/a.yaml": "x: 1\n", "elsewhere/b.yaml": "x: 1\n"})
    (tmp_path / "repo" / "linked").symlink_to(tmp_path / "elsewhere")
    config = tmp_path / "repo" / "reconciler.yaml"
    cases = {
        "manifests: [/]\n": ("1:13", "/"),
        "manifests: ../elsewhere\n": ("1:12", "../elsewhere"),
        "manifests: [manifests, linked]\n": ("1:24", "linked"),  # a link in the repo to elsewhere
    }
    for text, (place, shown) in cases.items():
        write({"repo/reconciler.yaml": text})
        with pytest.raises(ConfigError) as raised:
            load_settings(config, {})
        assert [(d.rule, d.format()) for d in raised.value.diagnostics] == [
            (
                "manifests-outside",
                f"{config}:{place}: manifest path '{shown}' is outside the config repo (the folder of "
                "reconciler.yaml); set allow_manifests_outside_repo: true to read manifests from elsewhere",
            )
        ]
    write(
        {"repo/reconciler.yaml": "manifests: [manifests, linked, ../elsewhere]\nallow_manifests_outside_repo: true\n"}
    )
    settings = load_settings(config, {})
    assert settings.manifests == (tmp_path / "repo/manifests", tmp_path / "repo/linked", tmp_path / "repo/../elsewhere")
    write({"repo/reconciler.yaml": "manifests: [linked]\n"})
    allowed = load_settings(config, {"RECONCILER_ALLOW_MANIFESTS_OUTSIDE_REPO": "true"})
    assert allowed.manifests == (tmp_path / "repo/linked",)


def test_limits_at_n_and_n_plus_one() -> None:
    percent = Limit.parse("25%")
    assert percent.allowed(100) == 25  # 25 let through, 26 not
    absolute = Limit.parse(3)
    assert absolute.allowed(1000) == 3


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0)])
def test_parse_duration(value: int | str, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_api_settings_for_apply_resolve_certificates_beside_the_config(write: WriteFiles, tmp_path: Path) -> None:
    from reconciler.operations import api_config, open_workspace

    mtls = "  client_cert: certs/client.pem\n  client_key: certs/client.key\n  ca_bundle: /etc/ssl/stellantis.pem\n"
    write({"reconciler.yaml": FULL.replace("  client_cert: certs/client.pem\n", mtls)})
    env = {"PSA_CLIENT_ID": "app", "PSA_USERNAME": "mzp", "PSA_PASSWORD": "s3cret"}
    config = api_config(open_workspace(tmp_path / "reconciler.yaml", env), parallelism=3)
    assert config.client_cert == str(tmp_path / "certs/client.pem")
    assert config.client_key == str(tmp_path / "certs/client.key")
    assert config.ca_bundle == "/etc/ssl/stellantis.pem"
    assert (config.client_id, config.username, config.password, config.parallelism) == ("app", "mzp", "s3cret", 3)
    with pytest.raises(ConfigError, match=r"api\.password: environment variable PSA_PASSWORD not set"):
        api_config(open_workspace(tmp_path / "reconciler.yaml", {"PSA_CLIENT_ID": "app", "PSA_USERNAME": "mzp"}))


def test_a_settings_file_that_is_not_a_regular_file_is_named_so(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for name, what in [
        ("fifo.yaml", "a FIFO (named pipe)"),
        ("folder.yaml", "a folder"),
        ("zero.yaml", "a character device"),
    ]:
        with pytest.raises(ConfigError) as raised:
            load_settings(tmp_path / name, {})
        assert [(d.rule, d.message) for d in raised.value.diagnostics] == [
            ("file-unreadable", f"{what}, not a regular file")
        ]


def test_the_schema_documents_the_defaults_the_client_uses() -> None:
    from reconciler import api
    from reconciler.schema import load_schema

    documented = load_schema("config.schema.json")["properties"]["api"]["properties"]
    for name in ("rate_limit", "parallelism", "timeout", "max_retry_wait"):
        assert documented[name]["default"] == getattr(api, name.upper()), name


@pytest.mark.parametrize(
    ("text", "allowed"),
    [("50%", 5), ("12.5%", 1), ("100%", 11), ("7", 7), ("20000", 11)],
)
def test_daily_budget_is_a_share_or_a_count_of_the_days_quota(
    write: WriteFiles, tmp_path: Path, text: str, allowed: int
) -> None:
    write({"reconciler.yaml": f"api:\n  daily_budget: {text if text.isdigit() else repr(text)}\n"})
    budget = load_settings(tmp_path / "reconciler.yaml", {}).api.daily_budget
    assert budget is not None and budget.text == text
    assert budget.allowed(11) == allowed  # of a quota of 11 requests a day, never more than the quota


def test_daily_budget_and_timezone_from_the_environment(write: WriteFiles, tmp_path: Path) -> None:
    write({"reconciler.yaml": "fleet: f\n"})
    env = {"RECONCILER_API_DAILY_BUDGET": "40%", "RECONCILER_TIMEZONE": "America/New_York"}
    settings = load_settings(tmp_path / "reconciler.yaml", env)
    assert settings.api.daily_budget is not None and settings.api.daily_budget.allowed(1000) == 400
    assert str(settings.zone) == "America/New_York"
    assert load_settings(tmp_path / "reconciler.yaml", {}).zone == UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timezone: Mars/Olympus\n", "1:11: timezone 'Mars/Olympus' is not a time zone this system knows"),
        ("timezone: europe/paris\n", "1:11: timezone 'europe/paris' is not a time zone this system knows"),
        ("timezone: ../../etc/passwd\n", "1:11: timezone '../../etc/passwd' is not a time zone this system knows"),
        ("api:\n  daily_budget: 0%\n", "2:17: api.daily_budget 0% lets no request through"),
        ("api:\n  daily_budget: 150%\n", "2:17: api.daily_budget: the string '150%' is not valid"),
        ("api:\n  daily_budget: 0\n", "2:17: api.daily_budget: the number 0 is not valid"),
    ],
)
def test_bad_timezone_and_daily_budget_are_refused_where_written(
    write: WriteFiles, chdir: Path, text: str, expected: str
) -> None:
    write({"reconciler.yaml": text})
    with pytest.raises(ConfigError) as raised:
        load_settings("reconciler.yaml", {})
    [message] = [d.format() for d in raised.value.diagnostics if d.is_error]
    assert message.startswith(f"reconciler.yaml:{expected}"), message
