"""The controller's metrics: requests named by what they do, quota read from every answer, causes bounded."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.controller.metrics import MAX_CAUSES, Metrics, ObservedTransport, call_kind
from reconciler.webhook.app import one_line

BASE = "/connectedcar/v3/fleets/f1"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", f"{BASE}/vehicles", "list_vehicles"),
        ("GET", f"{BASE}/vehicles/v1/status", "vehicle_status"),
        ("POST", f"{BASE}/remote/callbacks", "create_callback"),
        ("PUT", f"{BASE}/remote/callbacks/c1", "update_callback"),
        ("PUT", f"{BASE}/remote/callbacks/c1/status", "callback_status"),
        ("DELETE", f"{BASE}/remote/callbacks/c1", "delete_callback"),
        ("POST", f"{BASE}/vehicles/v1/callbacks/c1/remotes", "post_remote"),
        ("GET", f"{BASE}/vehicles/v1/callbacks/c1/remotes/r1", "get_remote"),
        ("GET", "/connectedcar/v3/fleets", "other"),
        ("PATCH", f"{BASE}/vehicles", "other"),
    ],
)
def test_calls_are_named_by_what_they_do(method: str, path: str, kind: str) -> None:
    assert call_kind(method, path) == kind


def test_every_exchange_is_counted_and_the_quota_read_from_its_headers() -> None:
    metrics = Metrics()
    answers = iter([200, 429])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers, None)
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        headers = {"X-RateLimit-Remaining-1": str(900 - status), "X-RateLimit-Remaining-2": "3"}
        return httpx.Response(status, headers=headers)

    with httpx.Client(transport=ObservedTransport(httpx.MockTransport(handler), metrics)) as client:
        client.get(f"https://api{BASE}/vehicles")
        client.post(f"https://api{BASE}/vehicles/v1/callbacks/c1/remotes")
        with pytest.raises(httpx.ConnectError):
            client.get(f"https://api{BASE}/vehicles")
    text = generate_latest(metrics.registry).decode()
    assert 'reconciler_api_calls_total{kind="list_vehicles",result="200"} 1.0' in text
    assert 'reconciler_api_calls_total{kind="post_remote",result="429"} 1.0' in text
    assert 'reconciler_api_calls_total{kind="list_vehicles",result="error"} 1.0' in text
    assert 'reconciler_quota_remaining{window="day"} 471.0' in text
    assert 'reconciler_quota_remaining{window="second"} 3.0' in text


def test_failure_causes_are_bounded_and_pending_steps_are_not_outcomes() -> None:
    metrics = Metrics()
    # events as the receiver records them (normalised by the envelope parser)
    events = [{"remoteActionId": "r", "type": "Pending", "status": "Accepted"}]
    events += [
        {"remoteActionId": f"r{n}", "type": "Done", "status": "Failed", "failureCause": f"Cause{n}"}
        for n in range(MAX_CAUSES + 5)
    ]
    events.append({"remoteActionId": "s", "type": "Done", "status": "Success"})
    metrics.count_outcomes(events)
    text = generate_latest(metrics.registry).decode()
    assert 'reconciler_outcomes_total{cause="other",outcome="Failed"} 5.0' in text
    assert 'reconciler_outcomes_total{cause="",outcome="Success"} 1.0' in text
    assert "Pending" not in text
    assert text.count("reconciler_outcomes_total{") == MAX_CAUSES + 2


def test_a_cause_from_the_network_is_a_printable_bounded_label() -> None:
    metrics = Metrics()
    hostile = "Bad\x00\x1b[31mRed\u202e" + "x" * 500
    metrics.count_outcomes([{"remoteActionId": "r", "type": "Done", "status": "Failed", "failureCause": hostile}])
    (cause,) = [
        sample.labels["cause"]
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
        if sample.name == "reconciler_outcomes_total"
    ]
    assert cause == "Bad[31mRed" + "x" * 115  # cut to 128 characters, then the controls left out


def test_a_log_line_of_an_error_carries_no_terminal_control() -> None:
    line = one_line(ValueError("manifests/evil\x1b[2J.yaml: bad\nsecond line \u202eRTL"))
    assert line == "manifests/evil[2J.yaml: bad; second line RTL"
