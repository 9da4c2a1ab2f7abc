"""Systemic failures stop a run in seconds: the breaker, bounded and interruptible waits, on MockTransport."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from reconciler.api.breaker import DailyBudget
from reconciler.api.client import ApiConfig, FleetClient, RetryPolicy
from reconciler.clock import isotime
from reconciler.errors import ApiAnswerError, ApiRequestError, ApiStatusError, ApiUnavailableError, RunInterrupted
from tests.mockapi import CONFIG, FLEET, Recorder, client, error


def status_ok(vehicle: str) -> httpx.Response:
    return httpx.Response(200, json={"_links": {}, "vin": vehicle, "createdAt": "t"})


def test_a_refused_password_stops_the_run_at_the_first_answer() -> None:
    recorder = Recorder(lambda request: error(401, 40101, "Unauthorized"))
    with client(recorder) as api:
        with pytest.raises(ApiUnavailableError) as raised:
            api.vehicle_status("v-1")
        assert "https://api.example/connectedcar/v3 refused the credentials" in str(raised.value)
        assert "pw" not in str(raised.value)  # the password is never shown
        with pytest.raises(ApiUnavailableError):
            api.vehicle_status("v-2")
    assert len(recorder.requests) == 1  # nothing more was sent, no retry either
    assert api.stop.is_set()


def test_an_unreachable_api_stops_after_a_few_attempts_not_a_fleet() -> None:
    recorder = Recorder(lambda request: (_ for _ in ()).throw(httpx.ConnectError("[Errno 111] Connection refused")))
    sleeps: list[float] = []
    with FleetClient(CONFIG, FLEET, transport=httpx.MockTransport(recorder), sleep=sleeps.append) as api:
        with pytest.raises(ApiUnavailableError) as raised:
            api.vehicles()  # one path, retried: every failed connection counts
        for vehicle in range(100):
            with pytest.raises(ApiUnavailableError):
                api.vehicle_status(f"v-{vehicle}")
    assert len(recorder.requests) == 5  # of the 6 attempts the retry policy allows
    assert sum(sleeps) <= 0.5 + 1 + 2 + 4  # the backoff before the fifth attempt, at most
    assert "is not usable: 5 requests failed in a row, the last with ConnectError" in str(raised.value)


def test_the_stop_names_the_api_without_the_password_its_url_carries() -> None:
    config = dataclasses.replace(CONFIG, url="https://bob:CANARY-URL-999@api.example/connectedcar/v3")
    recorder = Recorder(lambda request: (_ for _ in ()).throw(httpx.ConnectError("[Errno 111] Connection refused")))
    with (
        FleetClient(config, FLEET, transport=httpx.MockTransport(recorder), sleep=lambda _: None) as api,
        pytest.raises(ApiUnavailableError) as raised,
    ):
        api.vehicles()
    assert "the Fleet API at https://***@api.example/connectedcar/v3 is not usable" in str(raised.value)
    assert "CANARY" not in str(raised.value) and "bob" not in str(raised.value)


def test_timeouts_trip_only_when_several_vehicles_fail_in_a_row() -> None:
    def answers(request: httpx.Request) -> httpx.Response:
        if "v-slow" in request.url.path:
            raise httpx.ReadTimeout("slow")
        return status_ok("V")

    with client(Recorder(answers)) as api:
        for _ in range(3):  # one vehicle timing out again and again fails alone
            with pytest.raises(ApiRequestError):
                api.vehicle_status("v-slow")
            api.vehicle_status("v-fine")
        assert not api.breaker.tripped
    failing = Recorder(lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow")))
    with client(failing) as api:
        for vehicle in range(4):
            with pytest.raises(ApiRequestError):
                api.vehicle_status(f"v-{vehicle}")
        assert not api.breaker.tripped  # retries on one vehicle count once
        with pytest.raises(ApiUnavailableError):
            api.vehicle_status("v-4")


def test_403_on_a_vehicle_fails_that_vehicle_on_the_fleet_it_stops_the_run() -> None:
    def answers(request: httpx.Request) -> httpx.Response:
        return error(403, 40301, "vehicle not accessible") if "v-gone" in request.url.path else status_ok("V")

    with client(Recorder(answers)) as api:
        with pytest.raises(ApiStatusError):
            api.vehicle_status("v-gone")
        api.vehicle_status("v-1")
        assert not api.breaker.tripped
    refused = Recorder(lambda request: error(403, 40302, "no rights on this fleet"))
    with client(refused) as api, pytest.raises(ApiUnavailableError, match="refused access to fleet fleet-1"):
        api.callbacks()


def test_a_quota_wait_longer_than_max_retry_wait_stops_and_says_when_it_resets() -> None:
    sleeps: list[float] = []
    spent = error(429, 42901, "Too many requests", **{"Retry-After": "86400", "X-RateLimit-Reset": "86400"})
    recorder = Recorder(lambda request: spent)
    with client(recorder, sleeps) as api, pytest.raises(ApiUnavailableError) as raised:
        api.vehicles()
    assert len(recorder.requests) == 1
    assert sum(sleeps) < 1  # never slept the day away
    message = str(raised.value)
    assert "asks to wait 86,400 s before the next request (HTTP 429: its quota resets at 20" in message
    assert "longer than api.max_retry_wait (60 s)" in message


def test_the_longer_of_retry_after_and_rate_limit_reset_is_the_wait() -> None:
    answers = error(429, 42901, "Too many requests", **{"Retry-After": "1", "X-RateLimit-Reset": "3600"})
    with client(Recorder(lambda request: answers)) as api, pytest.raises(ApiUnavailableError, match="3,600 s"):
        api.vehicles()


def test_waits_end_at_once_when_the_run_stops() -> None:
    """A real sleep (no injected one): a stop during a 30 s Retry-After wait ends it within a fraction."""
    stop = threading.Event()
    config = ApiConfig("https://api.example/v3", "c", "u", "p", rate_limit=1000, max_retry_wait=3600)
    recorder = Recorder(lambda request: error(429, 42901, "slow down", **{"Retry-After": "30"}))
    api = FleetClient(config, FLEET, transport=httpx.MockTransport(recorder), stop=stop)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RunInterrupted):
        api.vehicles()
    assert time.monotonic() - started < 10  # not 30 s: the wait ended with the stop
    assert len(recorder.requests) == 1


def test_next_page_links_to_another_host_are_not_followed() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "api.example", "credentials sent to another host"
        return httpx.Response(
            200,
            json={
                "_links": {"next": {"href": "https://collector.example/steal?pageToken=2"}},
                "_embedded": {"vehicles": [{"id": "v1", "vin": "VIN1"}]},
            },
        )

    recorder = Recorder(pages)
    with client(recorder) as api, pytest.raises(ApiAnswerError, match=r"points to https://collector\.example"):
        api.vehicles()
    assert len(recorder.requests) == 1


def test_relative_next_links_are_followed_on_the_api() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("pageToken") == "2":
            return httpx.Response(200, json={"_links": {}, "_embedded": {"vehicles": [{"id": "v2", "vin": "vin2"}]}})
        return httpx.Response(
            200,
            json={
                "_links": {"next": {"href": "/connectedcar/v3/fleets/fleet-1/vehicles?pageToken=2"}},
                "_embedded": {"vehicles": [{"id": "v1", "vin": "VIN1"}, {"vin": None}, "garbage"]},
            },
        )

    with client(Recorder(pages)) as api:
        assert api.vehicles() == {"VIN1": "v1", "VIN2": "v2"}


def test_a_remote_whose_answer_was_lost_is_adopted_not_sent_again() -> None:
    posts: list[dict[str, Any]] = []

    def answers(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request.read().decode())  # type: ignore[arg-type]
            raise httpx.RemoteProtocolError("connection cut after the request was sent")
        return httpx.Response(
            200,
            json={
                "_links": {},
                "_embedded": {
                    "remoteActions": [
                        {"remoteActionId": "r-old", "remote": {"label": "reconciler:older"}, "type": "X"},
                        {"remoteActionId": "r-1", "remote": {"label": "reconciler:abc"}, "type": "X"},
                    ]
                },
            },
        )

    recorder = Recorder(answers)
    with client(recorder) as api:
        assert api.post_remote("v", "c", {"label": "reconciler:abc"}) == ("r-1", "X")
    assert len(posts) == 1
    assert [r.method for r in recorder.requests] == ["POST", "GET"]


def test_a_remote_the_api_did_not_get_is_sent_again() -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.RemoteProtocolError("cut"),
        httpx.Response(200, json={"_links": {}, "_embedded": {"remoteActions": []}}),
        httpx.Response(202, json={"remoteActionId": "r-2", "type": "ThermalPreconditioning"}),
    ]
    recorder = Recorder(answers)
    with client(recorder) as api:
        assert api.post_remote("v", "c", {"label": "reconciler:xyz"})[0] == "r-2"
    assert [r.method for r in recorder.requests] == ["POST", "GET", "POST"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(202, json=["not", "an", "object"]),
        httpx.Response(202, json={"type": "ThermalPreconditioning"}),
        httpx.Response(202, content=b"<html>oops</html>"),
    ],
)
def test_malformed_answers_are_errors_not_crashes(answer: httpx.Response) -> None:
    with client(Recorder([answer])) as api, pytest.raises(ApiAnswerError):
        api.post_remote("v", "c", {})


def test_api_error_messages_are_bounded_and_printable() -> None:
    hostile = error(400, 40001, "\x1b[31mred\x1b[0m" + "x" * 10_000)
    with client(Recorder([hostile])) as api, pytest.raises(ApiStatusError) as raised:
        api.set_callback_status("c", "Paused")
    assert "\x1b" not in str(raised.value)
    assert len(str(raised.value)) < 600


def test_retry_policy_still_applies_below_the_breaker() -> None:
    sleeps: list[float] = []
    answers: list[httpx.Response | Exception] = [error(503, 50301), error(503, 50301), status_ok("V")]
    api = FleetClient(
        CONFIG,
        FLEET,
        transport=httpx.MockTransport(Recorder(answers)),
        retry=RetryPolicy(attempts=4, base=0.5, cap=2.0),
        sleep=sleeps.append,
    )
    assert api.vehicle_status("v-1")["vin"] == "V"
    assert len(sleeps) == 2 and not api.breaker.tripped


def quota_answers(limit: int, used: int, reset: str | None = None) -> Recorder:
    """An API whose daily quota of `limit` had `used` requests before ours; each answer counts one more."""
    count = iter(range(used + 1, 10**9))

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"X-RateLimit-Limit-1": str(limit), "X-RateLimit-Remaining-1": str(max(0, limit - next(count)))}
        if reset is not None:
            headers["X-RateLimit-Reset"] = reset
        return httpx.Response(200, json={"_links": {}, "vin": "V", "createdAt": "t"}, headers=headers)

    return Recorder(answer)


@pytest.mark.parametrize(("budget", "used", "sent"), [("50%", 0, 5), ("50%", 3, 2), ("7", 0, 7), ("50%", 9, 1)])
def test_the_daily_budget_stops_sending_once_the_days_requests_reach_it(budget: str, used: int, sent: int) -> None:
    """A quota of 10 a day, `used` of it by others: the budget counts the day's requests, ours and theirs."""
    recorder = quota_answers(10, used)
    config = dataclasses.replace(CONFIG, daily_budget=DailyBudget.parse(budget))
    with (
        FleetClient(config, FLEET, transport=httpx.MockTransport(recorder), sleep=lambda s: None) as api,
        pytest.raises(ApiUnavailableError) as raised,
    ):
        for vehicle in range(20):
            api.vehicle_status(f"v-{vehicle}")
    assert len(recorder.requests) == sent
    assert api.quota["day"] == 10 - used - sent
    message = str(raised.value)
    assert f"stopped: api.daily_budget is spent: {used + sent} of the Fleet API's 10 requests a day used" in message
    assert "nothing more is sent until the day's requests age out of the API's 24-hour window: by 20" in message
    assert raised.value.resets_at is not None


def test_the_daily_budget_says_when_the_quota_resets_when_the_api_does() -> None:
    recorder = quota_answers(100, 60, reset="3600")
    config = dataclasses.replace(CONFIG, daily_budget=DailyBudget.parse("60%"))
    before = datetime.now(UTC)
    with FleetClient(config, FLEET, transport=httpx.MockTransport(recorder), sleep=lambda s: None) as api:
        api.vehicle_status("v-1")  # answered (the request was sent), then nothing more
        with pytest.raises(ApiUnavailableError) as raised:
            api.vehicle_status("v-2")
    assert len(recorder.requests) == 1
    assert raised.value.resets_at is not None
    assert timedelta(seconds=3599) <= raised.value.resets_at - before <= timedelta(seconds=3601)
    assert f"until {isotime(raised.value.resets_at)}, when the API says its quota resets" in str(raised.value)


def test_without_a_budget_quota_headers_are_only_noted() -> None:
    recorder = quota_answers(10, 0)
    with client(recorder) as api:
        for vehicle in range(10):
            api.vehicle_status(f"v-{vehicle}")
    assert api.quota["day"] == 0 and not api.breaker.tripped
