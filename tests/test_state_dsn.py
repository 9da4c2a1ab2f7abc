"""A PostgreSQL DSN is a secret: a malformed one is refused as invalid configuration without repeating any part
of it, and libpq's messages are shown with anything password-like masked. No database is needed: nothing is
connected to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.errors import StateError
from reconciler.state.dsn import INVALID_DSN, dsn_problem, masked, where
from reconciler.state.postgres import PostgresBackend
from tests.commands import SECRETS, run
from tests.postgres import use_postgres

# (DSN, the password its writer meant, pieces of it a message might show once libpq split it elsewhere)
MALFORMED = [
    ("postgressql://reconciler:S3cret-pw!@127.0.0.1:55432/fleet", ["S3cret-pw!"]),  # a typo in the scheme
    ("postgresql//reconciler:S3cret-pw!@127.0.0.1:55432/fleet", ["S3cret-pw!"]),  # no colon
    ("postgresql://reconciler:S3cret-pw!@[127.0.0.1:55432/fleet", ["S3cret-pw!"]),  # an unclosed [ host
    ("postgresql://reconciler:S3cret-pw!127.0.0.1:55432/fleet", ["S3cret-pw!"]),  # no @
    ("postgresql://ci:p@ss/w:rd#1@127.0.0.1:55432/fleet", ["p@ss/w:rd#1", "ss/w", "w:rd", "rd#1"]),  # @ and / unencoded
    ("postgresql://ci:S3cret-pw!@db@127.0.0.1:55432/fleet", ["S3cret-pw!"]),  # two @
    ("postgresql://ci:S3cret-pw!@127.0.0.1:port/fleet", ["S3cret-pw!"]),  # a port that is not a number
    ("host=127.0.0.1 port=55432 password=S3cret-pw! dbname", ["S3cret-pw!"]),  # key=value with no value
    ("host=127.0.0.1 password='S3cret-pw! dbname=fleet", ["S3cret-pw!"]),  # an unclosed quote
]


@pytest.mark.slow  # the CLI as a subprocess, once per case
@pytest.mark.parametrize(("dsn", "secrets"), MALFORMED, ids=[str(n) for n in range(len(MALFORMED))])
def test_a_malformed_dsn_is_invalid_configuration_and_never_shown(repo: Path, dsn: str, secrets: list[str]) -> None:
    use_postgres(repo, "reconciler")
    env = {**SECRETS, "STATE_DSN": dsn}
    for command in (("plan", "--format", "json"), ("webhook", "serve", "--listen", "127.0.0.1:0")):
        result = run(*command, cwd=repo, env=env)
        shown = result.stdout + result.stderr
        assert result.returncode == 7, (command, shown)
        assert f"reconciler.yaml:14:8: {INVALID_DSN}" in result.stderr, (command, shown)
        assert "Traceback" not in shown
        for secret in secrets:
            assert secret not in shown, (command, secret, shown)
        assert "127.0.0.1" not in shown and "55432" not in shown  # no part of the DSN at all
    answer = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
    assert answer["diagnostics"][0]["rule"] == "state-dsn"


def test_a_dsn_written_in_the_file_is_checked_by_validate_too(repo: Path) -> None:
    use_postgres(repo, "reconciler")
    config = repo / "reconciler.yaml"
    config.write_text(config.read_text().replace("${env:STATE_DSN}", "postgresql://ci:p@ss/w:rd#1@db/fleet"))
    result = run("validate", cwd=repo, env=SECRETS)
    assert result.returncode == 7, result.stdout + result.stderr
    shown = result.stdout + result.stderr
    assert f"reconciler.yaml:14:8: {INVALID_DSN}" in shown and "rd#1" not in shown


@pytest.mark.parametrize(("dsn", "secrets"), MALFORMED, ids=[str(n) for n in range(len(MALFORMED))])
def test_the_backend_refuses_a_malformed_dsn_without_repeating_it(dsn: str, secrets: list[str]) -> None:
    assert dsn_problem(dsn) is not None
    with pytest.raises(StateError) as raised:
        PostgresBackend(dsn, "fleet-1")
    assert str(raised.value) == INVALID_DSN
    assert "cannot be read" not in where(dsn) and all(secret not in where(dsn) for secret in secrets)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://reconciler:p%40ss%2Fw%3Ard@db.example:5432/fleet?sslmode=verify-full",
        "postgres://ci:pa:ss@db.example/fleet",  # libpq splits user and password at the first colon
        "postgresql://ci:secret@h1:5432,h2:5433/fleet?target_session_attrs=read-write",
        "postgresql://ci:secret@[::1]:5432/fleet?user=ci@azure",
        "postgresql:///fleet?host=/var/run/postgresql",
        "host=db.example port=5432 dbname=fleet user=ci password='a b@c/d'",
        "dbname=fleet",
    ],
)
def test_well_formed_dsns_are_accepted(dsn: str) -> None:
    assert dsn_problem(dsn) is None


def test_libpq_messages_are_masked() -> None:
    dsn = "postgresql://ci:S3cret-pw!@db.example:5432/fleet"
    texts = [
        'missing "=" after "postgresql://ci:S3cret-pw!@db.example:5432/fleet" in connection info string',
        'invalid URI query parameter: "postgres://me:S3cret-pw!@x/y"',
        "could not connect with password=S3cret-pw! host=db",
        "password = 'S3cret pw' host=db",
        "server said S3cret-pw! somewhere",
    ]
    for text in texts:
        shown = masked(text, dsn)
        assert "S3cret" not in shown and "***" in shown, shown
    assert masked("connection refused", dsn) == "connection refused"
    assert where(dsn) == "db.example:5432/fleet"


@pytest.mark.slow  # the CLI as a subprocess, once per case
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_dsn_is_invalid_configuration_not_libpqs_defaults(repo: Path, empty: str) -> None:
    """libpq reads an empty DSN as localhost:5432/postgres: a variable set to nothing must not go there."""
    use_postgres(repo, "reconciler")
    for command in (("plan",), ("apply", "--auto-approve"), ("state", "pull")):
        result = run(*command, cwd=repo, env={**SECRETS, "STATE_DSN": empty})
        assert result.returncode == 7, (command, result.stdout + result.stderr)
        assert "reconciler.yaml:14:8: state.dsn is empty ($STATE_DSN is set to an empty string)" in result.stderr
        assert "could not be opened" not in result.stderr and "5432" not in result.stderr
