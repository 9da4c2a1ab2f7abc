"""The Fleet API client on httpx.MockTransport: auth, variants, errors, retries, paging, request schemas."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconciler.api.client import ApiConfig
from reconciler.api.limiter import RateLimiter
from reconciler.api.wire import callback_body as api_body
from reconciler.api.wire import program_entry
from reconciler.errors import ApiRequestError, ApiStatusError
from reconciler.model import Program
from tests.mockapi import Recorder, client, error
from tests.official import official_errors
from tests.planning import callback


def test_requests_carry_basic_auth_client_id_and_accept() -> None:
    recorder = Recorder([httpx.Response(200, json={"callbackId": "cb-1", "status": "Running"})])
    with client(recorder) as api:
        assert api.create_callback(api_body(callback("cb"))) == "cb-1"
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/connectedcar/v3/fleets/fleet-1/remote/callbacks"
    assert request.url.params["client_id"] == "app-1"
    assert request.headers["authorization"] == "Basic bXpwOnB3"
    assert "application/hal+json" in request.headers["accept"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [(200, {"callbackId": "a"}, "a"), (202, {"callbackId": "b"}, "b"), (200, {"id": "c", "status": "Running"}, "c")],
)
def test_callback_answer_variants(status: int, body: dict[str, Any], expected: str) -> None:
    with client(Recorder([httpx.Response(status, json=body)])) as api:
        assert api.create_callback(api_body(callback("cb"))) == expected


@pytest.mark.parametrize("kind", ["ThermalPreconditioning", ["ThermalPreconditioning"]])
def test_remote_type_as_string_or_list(kind: Any) -> None:
    answer = httpx.Response(202, json={"remoteActionId": "r-1", "type": kind, "_links": {}})
    with client(Recorder([answer])) as api:
        assert api.post_remote("v-1", "cb-1", {"preconditioning": {"airConditioning": {"programs": []}}}) == (
            "r-1",
            "ThermalPreconditioning",
        )


def test_status_errors_carry_the_api_code_uuid_and_message() -> None:
    with client(Recorder([error(400, 40002, "bad body")])) as api, pytest.raises(ApiStatusError) as raised:
        api.update_callback("cb-1", api_body(callback("cb")))
    assert (raised.value.status, raised.value.code, raised.value.uuid, raised.value.api_message) == (
        400,
        40002,
        "u-1",
        "bad body",
    )
    assert str(raised.value) == "HTTP 400 (code 40002): bad body [uuid u-1]"


def test_429_waits_as_told_then_succeeds() -> None:
    sleeps: list[float] = []
    now = [100.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    recorder = Recorder([error(429, 42901, **{"Retry-After": "3"}), httpx.Response(202, json={"callbackId": "cb-1"})])
    api = client(recorder, sleeps)
    api.limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    api.set_callback_status("cb-1", "Paused")
    assert len(recorder.requests) == 2
    assert sleeps[0] == pytest.approx(3.0)  # held by the limiter for Retry-After, every thread alike
    assert sum(sleeps) == pytest.approx(3.0)  # by then the bucket has refilled
    assert api.retries == 1


def test_5xx_and_connection_errors_are_retried_with_bounded_backoff() -> None:
    sleeps: list[float] = []
    answers: list[httpx.Response | Exception] = [
        error(500, 50001),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"id": "s", "_links": {}, "vin": "V", "createdAt": "t"}),
    ]
    with client(Recorder(answers), sleeps) as api:
        assert api.vehicle_status("v-1")["id"] == "s"
    assert len(sleeps) == 3
    assert all(0 <= s <= 2.0 for s in sleeps)


def test_retries_stop_after_the_attempts() -> None:
    with client(Recorder([error(503, 50301)] * 4)) as api, pytest.raises(ApiStatusError) as raised:
        api.vehicles()
    assert raised.value.status == 503


def test_callback_create_is_not_repeated_when_its_outcome_is_unknown() -> None:
    for answer in (httpx.ReadTimeout("lost"), error(500, 50001)):
        recorder = Recorder([answer, httpx.Response(200, json={"callbackId": "dup"})])
        with client(recorder) as api, pytest.raises((ApiRequestError, ApiStatusError)):
            api.create_callback(api_body(callback("cb")))
        assert len(recorder.requests) == 1
    refused = Recorder([httpx.ConnectError("refused"), httpx.Response(200, json={"callbackId": "cb-1"})])
    with client(refused) as api:
        assert api.create_callback(api_body(callback("cb"))) == "cb-1"  # never sent: safe to send again


def test_remote_is_resent_when_its_outcome_is_unknown() -> None:
    recorder = Recorder(
        [
            httpx.RemoteProtocolError("cut"),
            httpx.Response(202, json={"remoteActionId": "r-2", "type": "ThermalPreconditioning"}),
        ]
    )
    with client(recorder) as api:
        assert api.post_remote("v", "c", {})[0] == "r-2"
    assert len(recorder.requests) == 2


def test_delete_of_a_missing_callback_is_done() -> None:
    with client(Recorder([error(404, 40403)])) as api:
        api.delete_callback("gone")


def test_paging_follows_next_links_keeping_their_query() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("pageToken")
        base = "https://api.example/connectedcar/v3/fleets/fleet-1/vehicles?client_id=app-1&pageSize=60"
        if token is None:
            assert request.url.params["pageSize"] == "60"
            return httpx.Response(
                200,
                json={
                    "_links": {"next": {"href": base + "&pageToken=p2"}},
                    "_embedded": {"vehicles": [{"id": "v1", "vin": "vin1"}]},
                },
            )
        assert token == "p2" and request.url.params["pageSize"] == "60"
        assert request.url.params.get_list("client_id") == ["app-1"]
        return httpx.Response(200, json={"_links": {}, "_embedded": {"vehicles": [{"id": "v2", "vin": "VIN2"}]}})

    with client(Recorder(pages)) as api:
        assert api.vehicles() == {"VIN1": "v1", "VIN2": "v2"}


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        limiter.acquire()
    assert now[0] == pytest.approx(2.9)  # one at once (a burst of a tenth of a second), then one every 0.1 s


def test_every_request_body_validates_against_the_official_schemas() -> None:
    bodies: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        bodies.append((request.method, request.url.path, body))
        if request.url.path.endswith("/remotes"):
            return httpx.Response(202, json={"remoteActionId": "r", "type": "ThermalPreconditioning"})
        return httpx.Response(200, json={"callbackId": "c"})

    full = callback(
        "cb",
        secret="s",
        retry_policy={"policy": "Bounded", "retryNumber": 3, "retryDelay": 60},
        batch_notify={"size": 10, "timeWindow": 60},
    )
    program = Program(2, "PT6H45M", ("Mon", "Sat"), "None", False)
    with client(Recorder(answer)) as api:
        api.create_callback(api_body(full))
        api.update_callback("c", api_body(callback("plain")))
        api.set_callback_status("c", "Paused")
        api.post_remote(
            "v",
            "c",
            {
                "label": "reconciler",
                "preconditioning": {
                    "airConditioning": {"programs": [program_entry("Set", program), program_entry("Delete", program)]}
                },
            },
        )
    schemas = {
        "POST /remote/callbacks": "RemoteCallbackSubscribe",
        "PUT /remote/callbacks/c": "RemoteCallbackSubscribe",
        "PUT /remote/callbacks/c/status": "RemoteCallbacksStatusSetter",
        "POST /remotes": "Remote",
    }
    checked = 0
    for method, path, body in bodies:
        for key, schema in schemas.items():
            verb, suffix = key.split(" ")
            if method == verb and path.endswith(suffix):
                assert official_errors(schema, body) == [], (method, path)
                checked += 1
                break
    assert checked == 4


def test_mutual_tls_context_loads_the_client_certificate_and_the_ca_bundle(tmp_path: Any) -> None:
    import ssl

    import trustme

    from reconciler.api.client import tls_context

    authority = trustme.CA()
    client_cert = authority.issue_cert("fleet-client@example")
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = ApiConfig(
        "https://api.example/v3",
        "c",
        "u",
        "p",
        client_cert=str(tmp_path / "client.pem"),
        client_key=str(tmp_path / "client.key"),
        ca_bundle=str(tmp_path / "ca.pem"),
    )
    context = tls_context(config)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1  # the bundle given, not the system store
    with pytest.raises(ssl.SSLError):
        tls_context(
            ApiConfig(
                "https://a/",
                "c",
                "u",
                "p",
                client_cert=str(tmp_path / "ca.pem"),
                client_key=str(tmp_path / "client.key"),
            )
        )
