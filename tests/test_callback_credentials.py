"""A callback's credentials are what keeps forged notifications out: empty ones are errors, none is a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.commands import SECRETS, run

CALLBACK = """kind: Callback
name: fleet-ops
webhook:
  target: https://hooks.example.com/stellantis
{attributes}remoteTypes: [ThermalPreconditioning]
"""


def with_callback(repo: Path, attributes: str) -> Path:
    (repo / "manifests" / "callbacks.yaml").write_text(CALLBACK.format(attributes=attributes))
    return repo


@pytest.mark.parametrize(
    ("attributes", "env", "message"),
    [
        (
            '  headers: {Authorization: ""}\n',
            {},
            "manifests/callbacks.yaml:5:28: webhook.headers.Authorization: the value is empty; an empty credential "
            "lets anyone post notifications for this callback",
        ),
        (
            '  headers: {Authorization: "${env:WEBHOOK_AUTH}"}\n',
            {"WEBHOOK_AUTH": ""},
            "manifests/callbacks.yaml:5:28: webhook.headers.Authorization: ${env:WEBHOOK_AUTH} is set to an empty "
            "value; an empty credential lets anyone post notifications for this callback",
        ),
        (
            "  query:\n    token: ${env:HOOK_TOKEN}\n",
            {"HOOK_TOKEN": ""},
            "manifests/callbacks.yaml:6:12: webhook.query.token: ${env:HOOK_TOKEN} is set to an empty value; an "
            "empty credential lets anyone post notifications for this callback",
        ),
    ],
)
def test_an_empty_credential_is_an_error_for_every_command(
    repo: Path, attributes: str, env: dict[str, str], message: str
) -> None:
    with_callback(repo, attributes)
    for command in (("validate",), ("plan",), ("status",)):
        result = run(*command, cwd=repo, env={**SECRETS, **env})
        assert result.returncode == 7, (command, result.stdout, result.stderr)
        assert message in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_body_attribute_may_be_empty(repo: Path) -> None:
    with_callback(repo, '  headers: {Authorization: "${env:WEBHOOK_AUTH}"}\n  body: {note: ""}\n')
    assert run("validate", "--strict", cwd=repo, env=SECRETS).returncode == 0


@pytest.mark.parametrize("attributes", ["", "  headers: {X-Vin: $vin}\n  body: {token: secret}\n"])
def test_a_callback_without_credentials_is_a_warning_and_an_error_when_strict(repo: Path, attributes: str) -> None:
    with_callback(repo, attributes)
    relaxed = run("validate", "--format", "json", cwd=repo, env=SECRETS)
    assert relaxed.returncode == 0
    [warning] = [d for d in json.loads(relaxed.stdout)["diagnostics"] if d["rule"] == "webhook-unauthenticated"]
    assert (warning["file"], warning["line"], warning["column"], warning["severity"]) == (
        "manifests/callbacks.yaml",
        3,
        1,
        "warning",
    )
    assert warning["message"].startswith(
        "callback 'fleet-ops' has no headers or query attribute to authenticate its notifications"
    )
    strict = run("validate", "--strict", cwd=repo, env=SECRETS)
    assert strict.returncode == 7
    assert "manifests/callbacks.yaml:3:1: callback 'fleet-ops' has no headers or query attribute" in strict.stdout
