"""Holds end to end: vehicles of the sandbox that answer TooManyWakeUpsOverMonth or VehicleBatteryChargeTooLow,
apply --wait recording the outcomes, and what plan, apply and status do with the held vehicles next."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from reconciler.clock import isotime, parse_time
from reconciler.state.record import next_month
from tests.commands import ALLOW, apply, backend_of, desired_programs, environment, run
from tests.files import edit
from tests.planning import json_changes, json_notices
from tests.servers import Sandbox, sandbox

pytestmark = pytest.mark.slow

MONTHLY, BATTERY = "TooManyWakeUpsOverMonth", "VehicleBatteryChargeTooLow"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with sandbox(vehicles=40, asleep_rate=0.0, offline_rate=0.0, speed=50.0) as running:
        yield running


def fail(box: Sandbox, vin: str, cause: str | None) -> None:
    httpx.put(f"{box.root}/_sandbox/vehicles/{vin}", json={"fails_with": cause}, timeout=10).raise_for_status()


def remotes_to(box: Sandbox, vin: str) -> int:
    return sum(1 for r in box.inspect("remotes")["remotes"] if r["vin"] == vin)


def test_failed_vehicles_are_held_and_sent_nothing_until_their_hold_ends(any_repo: Path, box: Sandbox) -> None:
    repo = any_repo
    (repo / "reconciler.yaml").write_text((repo / "reconciler.yaml").read_text() + "timezone: Europe/Paris\n")
    out_of_wakeups, low_battery = sorted(desired_programs(repo))[:2]
    fail(box, out_of_wakeups, MONTHLY)
    fail(box, low_battery, BATTERY)
    before = datetime.now(UTC).replace(microsecond=0)  # as the state writes times
    first = apply(repo, box, "--wait=30")
    assert "Outcomes: 2 Failed, 28 Success." in first.stdout, first.stdout + first.stderr
    state = backend_of(repo).load()
    assert state is not None
    monthly, backoff = state.holds[out_of_wakeups], state.holds[low_battery]
    assert state.holds.keys() == {out_of_wakeups, low_battery}
    # the first of next month, 00:00 in Paris; 5 minutes after the failure
    assert (monthly.cause, monthly.attempts) == (MONTHLY, 1)
    assert monthly.until == isotime(next_month(before, ZoneInfo("Europe/Paris")))
    assert (backoff.cause, backoff.attempts) == (BATTERY, 1)
    assert timedelta(minutes=5) <= parse_time(backoff.until) - before <= timedelta(minutes=6)

    # the vehicles would answer now, but their holds are in force: a plan retries neither
    fail(box, out_of_wakeups, None)
    fail(box, low_battery, None)
    env = environment(box)
    plan = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
    assert json_changes(plan) == []
    held = {n["address"].split(".")[1]: n["detail"] for n in json_notices(plan) if n["kind"] == "held"}
    assert held.keys() == {out_of_wakeups, low_battery}
    local = parse_time(monthly.until).astimezone(ZoneInfo("Europe/Paris"))
    assert local.day == 1 and local.hour == 0
    assert held[out_of_wakeups] == f"held until {local:%Y-%m-%dT%H:%M} Europe/Paris ({MONTHLY})"
    assert held[low_battery].endswith(f" Europe/Paris ({BATTERY}, attempt 1)")
    text = run("plan", cwd=repo, env=env).stdout
    assert f"Held: {out_of_wakeups} slots " in text and f": held until {local:%Y-%m-%dT%H:%M}" in text

    status = json.loads(run("status", "--format", "json", cwd=repo, env=env).stdout)
    assert (status["held"], status["converged"]) == (2, 28)
    assert status["fleet_health"]["health"]["Held"] == 2
    assert {h["vin"] for h in status["fleet_health"]["held"]} == {out_of_wakeups, low_battery}

    # a new program for every vehicle: the backed-off vehicle gets it (new work), the monthly one nothing
    edit(repo / "manifests" / "schedules.yaml", 'start: "06:45"', 'start: "06:50"')
    calls = {vin: remotes_to(box, vin) for vin in (out_of_wakeups, low_battery)}
    second = apply(repo, box, "--wait=30", *ALLOW)
    assert second.returncode == 0, second.stdout + second.stderr
    assert remotes_to(box, out_of_wakeups) == calls[out_of_wakeups]
    assert remotes_to(box, low_battery) == calls[low_battery] + 1
    state = backend_of(repo).load()
    assert state is not None and state.holds.keys() == {out_of_wakeups}  # the Success let the other go
