"""Sync windows (`serve.windows`): deny wins, an allow window must be open when any is listed, cron schedules in
their own time zone; checked in reconciler.yaml where written; applied by serve's loop and, when bound, by apply."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.config import SyncWindow, load_settings
from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.metrics import Metrics
from reconciler.errors import ConfigError, ExitCode
from reconciler.operations import open_workspace
from reconciler.windows import verdict
from tests.commands import SECRETS, environment, run
from tests.files import WriteFiles
from tests.servers import sandbox

HERE = Path("reconciler.yaml")


def window(kind: str, schedule: str, hours: float, timezone: str = "UTC") -> SyncWindow:
    from reconciler.diagnostics import Source

    return SyncWindow(kind, schedule, hours * 3600, timezone, Source(HERE, 1, 1))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NIGHT_DENY = window("deny", "0 22 * * *", 8)  # 22:00 to 06:00
DAY_ALLOW = window("allow", "0 9 * * 1-5", 8)  # weekdays 09:00 to 17:00


def test_no_window_listed_allows_any_time() -> None:
    assert verdict([], at("2026-11-25T03:00:00")).allowed


def test_a_deny_window_holds_writes_until_it_ends_and_says_so() -> None:
    inside = verdict([NIGHT_DENY], at("2026-11-25T03:00:00"))  # opened the evening before
    assert not inside.allowed and inside.until == at("2026-11-25T06:00:00")
    assert 'deny window "0 22 * * *" for 8h (UTC) is open until 2026-11-25T06:00:00Z' in inside.reason
    assert verdict([NIGHT_DENY], at("2026-11-25T05:59:59")).allowed is False
    assert verdict([NIGHT_DENY], at("2026-11-25T06:00:00")).allowed is True
    assert verdict([NIGHT_DENY], at("2026-11-25T21:59:59")).allowed is True


def test_with_allow_windows_listed_one_must_be_open() -> None:
    wednesday = verdict([DAY_ALLOW], at("2026-11-25T10:00:00"))
    assert wednesday.allowed
    saturday = verdict([DAY_ALLOW], at("2026-11-28T10:00:00"))
    assert not saturday.allowed and saturday.until == at("2026-11-30T09:00:00")
    assert "no allow window is open; the next" in saturday.reason


def test_deny_wins_over_an_open_allow_window() -> None:
    lunch = window("deny", "0 12 * * *", 1)
    assert verdict([DAY_ALLOW, lunch], at("2026-11-25T11:59:00")).allowed
    held = verdict([DAY_ALLOW, lunch], at("2026-11-25T12:30:00"))
    assert not held.allowed and held.until == at("2026-11-25T13:00:00")


def test_a_window_follows_its_time_zone_across_a_change_of_time() -> None:
    paris = window("deny", "0 22 * * *", 8, "Europe/Paris")
    # 22:00 in Paris is 21:00 UTC in winter, 20:00 UTC in summer
    assert not verdict([paris], at("2026-11-25T21:30:00")).allowed
    assert verdict([paris], at("2026-11-25T20:30:00")).allowed
    assert not verdict([paris], at("2026-07-01T20:30:00")).allowed
    # the night of the change to winter time (25 October 2026) lasts 9 hours of UTC but the window 8
    assert verdict([paris], at("2026-10-25T04:00:00")).allowed
    assert not verdict([paris], at("2026-10-25T03:59:00")).allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "serve:\n  windows:\n    - {kind: deny, schedule: '0 25 * * *', duration: 1h}\n",
            "reconciler.yaml:4:30: serve.windows: '0 25 * * *' is not a cron schedule (Bad hour)",
        ),
        (
            "serve:\n  windows:\n    - {kind: deny, schedule: '0 2 * * *', duration: 1h, timezone: Mars/Olympus}\n",
            "reconciler.yaml:4:67: serve.windows: 'Mars/Olympus' is not an IANA time zone (such as Europe/Paris)",
        ),
        (
            "serve:\n  windows:\n    - {kind: maybe, schedule: '0 2 * * *', duration: 1h}\n",
            "reconciler.yaml:4:14: serve.windows[0].kind: the string 'maybe' is not one of allow, deny",
        ),
    ],
)
def test_bad_windows_are_refused_where_written(write: WriteFiles, chdir: Path, text: str, expected: str) -> None:
    write({"reconciler.yaml": "fleet: f\n" + text})
    with pytest.raises(ConfigError) as raised:
        load_settings("reconciler.yaml", {})
    errors = [d.format() for d in raised.value.diagnostics if d.is_error]
    assert errors == [expected]
    assert raised.value.exit_code is ExitCode.INVALID


def serve_windows(repo: Path, *lines: str) -> None:
    config = repo / "reconciler.yaml"
    config.write_text(config.read_text() + "serve:\n  windows:\n" + "".join(f"    - {line}\n" for line in lines))


@pytest.mark.slow
def test_serve_holds_writes_in_a_deny_window_and_applies_when_it_ends(repo: Path) -> None:
    serve_windows(repo, "{kind: deny, schedule: '0 22 * * *', duration: 8h}")
    now = [at("2026-11-25T05:00:00")]
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**os.environ, **environment(box)}
        workspace = open_workspace(repo / "reconciler.yaml", env)
        leadership = Leadership(workspace.backend, 30)
        controller = Controller(workspace, env, leadership, Metrics(), now=lambda: now[0])
        held = controller.run_once()
        assert held.result == "window" and held.calls == 0 and held.changes == 31
        assert "open until 2026-11-25T06:00:00Z" in held.message
        assert box.inspect("remotes")["remotes"] == []
        now[0] += timedelta(hours=1)  # the window has ended
        applied = controller.run_once()
        assert applied.result == "applied" and applied.calls == 31
        assert len(box.inspect("remotes")["remotes"]) == 30


@pytest.mark.slow
def test_an_open_allow_window_lets_writes_through_and_a_deny_window_wins(repo: Path) -> None:
    allow = "{kind: allow, schedule: '0 9 * * 1-5', duration: 8h}"
    serve_windows(repo, allow, "{kind: deny, schedule: '0 12 * * *', duration: 1h, timezone: Europe/Paris}")
    now = [at("2026-11-25T11:30:00")]  # 12:30 in Paris: the deny window is open inside the allow window
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**os.environ, **environment(box)}
        workspace = open_workspace(repo / "reconciler.yaml", env)
        controller = Controller(workspace, env, Leadership(workspace.backend, 30), Metrics(), now=lambda: now[0])
        assert controller.run_once().result == "window"
        now[0] = at("2026-11-28T14:00:00")  # Saturday: no allow window open
        held = controller.run_once()
        assert held.result == "window" and "no allow window is open" in held.message
        assert box.inspect("remotes")["remotes"] == []
        now[0] = at("2026-11-25T14:00:00")  # Wednesday afternoon: allowed
        assert controller.run_once().result == "applied"
        assert len(box.inspect("remotes")["remotes"]) == 30


@pytest.mark.slow
def test_a_manual_apply_is_bound_by_the_windows_only_when_configured(repo: Path) -> None:
    serve_windows(repo, "{kind: deny, schedule: '* * * * *', duration: 1h}")  # always open
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        free = run("apply", "--auto-approve", cwd=repo, env=environment(box))
        assert free.returncode == 0, free.stderr
        config = repo / "reconciler.yaml"
        config.write_text(config.read_text() + "  windows_bind_manual_apply: true\n")
        edited = repo / "manifests" / "callbacks.yaml"
        edited.write_text(edited.read_text().replace("size: 10", "size: 5"))
        bound = run("apply", "--auto-approve", cwd=repo, env=environment(box))
        assert bound.returncode == 4
        assert "apply refused by the sync windows: the deny window" in bound.stderr
        assert "nothing was changed" in bound.stderr
        assert SECRETS["FLEET_API_PASSWORD"] not in bound.stderr


@pytest.mark.slow
def test_held_writes_go_out_when_the_window_ends_not_an_interval_later(repo: Path) -> None:
    import time

    serve_windows(repo, "{kind: deny, schedule: '0 22 * * *', duration: 8h}")
    base, started = at("2026-11-25T05:59:58"), time.monotonic()  # the deny window ends 2 seconds from now

    def now() -> datetime:
        return base + timedelta(seconds=time.monotonic() - started)

    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**os.environ, **environment(box)}
        workspace = open_workspace(repo / "reconciler.yaml", env)
        leadership = Leadership(workspace.backend, 30)
        leadership.claim()
        controller = Controller(workspace, env, leadership, Metrics(), interval=3600, now=now)
        controller.start()
        try:
            box.wait(lambda: len(controller.runs) >= 2, timeout=15)
        finally:
            controller.shutdown(30)
        held, applied = list(controller.runs)[:2]
        assert held.result == "window" and applied.result == "applied"
        assert len(box.inspect("remotes")["remotes"]) == 30
