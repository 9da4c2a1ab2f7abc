"""The sandbox over real HTTP: endpoints, paging, auth, errors, the remote state machine, notifications,
rate limits and fault knobs."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from reconciler.sandbox.app import BASE, SandboxSettings
from reconciler.sandbox.world import World
from reconciler.vin import make_vin
from tests.servers import Sandbox, sandbox, webhook


def subscribe(target: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "label": "fleet-ops",
        "callback": {"webhook": {"target": target, "name": "ops"}},
        "remoteTypes": ["ThermalPreconditioning"],
    }
    body.update(extra)
    return body


def precondition(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"label": "test", "preconditioning": {"airConditioning": {"programs": list(entries)}}}


def program(slot: int, start: str = "PT7H30M", action: str = "Set") -> dict[str, Any]:
    return {
        "actionsType": action,
        "slot": slot,
        "enabled": True,
        "recurrence": "Daily",
        "start": start,
        "occurence": {"day": ["Mon", "Tue"]},
    }


def first_vehicle(box: Sandbox, client: httpx.Client, index: int = 0) -> dict[str, Any]:
    return client.get(f"{box.fleet_url}/vehicles").json()["_embedded"]["vehicles"][index]


def make_callback(box: Sandbox, client: httpx.Client, target: str, **extra: Any) -> str:
    response = client.post(f"{box.fleet_url}/remote/callbacks", json=subscribe(target, **extra))
    assert response.status_code == 200, response.text
    return str(response.json()["callbackId"])


def post_remote(box: Sandbox, client: httpx.Client, vid: str, cbid: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"{box.fleet_url}/vehicles/{vid}/callbacks/{cbid}/remotes", json=body)


def wait_done(box: Sandbox, client: httpx.Client, vid: str, cbid: str, rid: str) -> dict[str, Any]:
    url = f"{box.fleet_url}/vehicles/{vid}/callbacks/{cbid}/remotes/{rid}"
    return box.wait(lambda: (r := client.get(url).json())["status"] in ("Success", "AlreadyDone", "Failed") and r)  # type: ignore[no-any-return]


# ---- auth, errors, fleets, vehicles -----------------------------------------------------------------------


@pytest.mark.slow
def test_auth_needs_basic_credentials_and_client_id() -> None:
    with sandbox() as box:
        url = f"{box.api}/fleets"
        missing = httpx.get(url)
        assert missing.status_code == 401
        body = missing.json()
        assert body["code"] == 40101
        assert set(body) == {"code", "uuid", "message", "timestamp"}
        assert httpx.get(url, auth=("sandbox", "sandbox-password")).status_code == 401
        assert httpx.get(url, auth=("sandbox", "wrong"), params={"client_id": "sandbox-client"}).status_code == 401
        with box.client() as client:
            fleets = client.get(url)
            assert fleets.status_code == 200
            assert fleets.headers["content-type"] == "application/hal+json"
            assert fleets.json()["_embedded"]["fleets"][0]["id"] == box.settings.fleet
            assert client.get(box.fleet_url).json()["id"] == box.settings.fleet
            unknown = client.get(f"{box.api}/fleets/nope/vehicles")
            assert (unknown.status_code, unknown.json()["code"]) == (404, 40401)


@pytest.mark.slow
def test_vehicles_are_paged_with_hal_links() -> None:
    with sandbox(vehicles=20) as box, box.client() as client:
        page = client.get(f"{box.fleet_url}/vehicles", params={"pageSize": 7}).json()
        assert (page["total"], page["totalPage"], page["currentPage"]) == (20, 3, 0)
        assert set(page["_links"]) == {"self", "first", "next", "last"}
        seen = [v["vin"] for v in page["_embedded"]["vehicles"]]
        while "next" in page["_links"]:
            page = httpx.get(page["_links"]["next"]["href"], auth=("sandbox", "sandbox-password")).json()
            seen += [v["vin"] for v in page["_embedded"]["vehicles"]]
        assert seen == [make_vin(i) for i in range(1, 21)]
        assert page["currentPage"] == 2 and "prev" in page["_links"]
        ranged = client.get(f"{box.fleet_url}/vehicles", params={"indexRange": "5-9"}).json()
        assert [v["vin"] for v in ranged["_embedded"]["vehicles"]] == [make_vin(i) for i in range(6, 11)]
        prefix = client.get(f"{box.fleet_url}/vehicles", params={"vinPrefix": "w0l"}).json()
        assert {v["vin"][:3] for v in prefix["_embedded"]["vehicles"]} == {"W0L"}
        for bad in ({"pageSize": 61}, {"pageSize": 0}, {"pageToken": "garbage"}, {"indexRange": "x-"}):
            response = client.get(f"{box.fleet_url}/vehicles", params=bad)
            assert response.status_code == 400, bad
            assert str(response.json()["code"]).startswith("400")


@pytest.mark.slow
def test_one_vehicle_and_its_status() -> None:
    with sandbox() as box, box.client() as client:
        vehicle = first_vehicle(box, client)
        assert client.get(f"{box.fleet_url}/vehicles/{vehicle['id']}").json()["vin"] == vehicle["vin"]
        status = client.get(f"{box.fleet_url}/vehicles/{vehicle['id']}/status").json()
        assert status["vin"] == vehicle["vin"]
        assert "programs" not in status["preconditioning"]["airConditioning"]
        assert client.get(f"{box.fleet_url}/vehicles/nope").status_code == 404


def test_same_seed_same_fleet() -> None:
    one, two, other = (
        World.create("f", 50, 7, 0.3, 0.1),
        World.create("f", 50, 7, 0.3, 0.1),
        World.create("f", 50, 8, 0.3, 0.1),
    )
    describe = lambda w: [(v.id, v.vin, v.asleep, v.offline, v.motorization) for v in w.vehicles.values()]  # noqa: E731
    assert describe(one) == describe(two)
    assert describe(one) != describe(other)
    assert [v.vin for v in one.vehicles.values()] == [make_vin(i) for i in range(1, 51)]


# ---- callbacks --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_callback_lifecycle() -> None:
    with sandbox() as box, box.client() as client:
        base = f"{box.fleet_url}/remote/callbacks"
        cbid = make_callback(box, client, "http://127.0.0.1:9/hook")
        listed = client.get(base).json()
        assert [c["id"] for c in listed["_embedded"]["callbacks"]] == [cbid]
        assert client.get(base, params={"types": "Horn"}).json()["_embedded"]["callbacks"] == []
        got = client.get(f"{base}/{cbid}").json()
        assert got["subscribe"]["label"] == "fleet-ops" and got["status"] == "Running"
        updated = client.put(f"{base}/{cbid}", json=subscribe("http://127.0.0.1:9/other"))
        assert updated.status_code == 202 and updated.json()["callbackId"] == cbid
        assert client.get(f"{base}/{cbid}").json()["subscribe"]["callback"]["webhook"]["target"].endswith("/other")
        paused = client.put(f"{base}/{cbid}/status", json={"status": "Paused"})
        assert (paused.status_code, paused.json()["status"]) == (202, "Paused")
        assert client.put(f"{base}/{cbid}/status", json={"status": "Stopped"}).status_code == 400
        assert client.post(base, json={"label": "no webhook"}).status_code == 400
        assert client.post(base, content=b"{not json").json()["code"] == 40001
        assert client.delete(f"{base}/{cbid}").status_code == 204
        assert client.get(f"{base}/{cbid}").status_code == 404
        assert client.delete(f"{base}/{cbid}").status_code == 404


# ---- remotes and the state machine -------------------------------------------------------------------------


@pytest.mark.slow
def test_remote_walks_the_state_machine_and_sets_the_programs() -> None:
    with webhook() as hook, sandbox(asleep_rate=1.0) as box, box.client() as client:
        cbid = make_callback(box, client, hook.url)
        vehicle = first_vehicle(box, client)
        posted = post_remote(box, client, vehicle["id"], cbid, precondition(program(1), program(3, "PT18H")))
        assert posted.status_code == 202
        body = posted.json()
        assert body["type"] == "ThermalPreconditioning"
        rid = body["remoteActionId"]
        assert wait_done(box, client, vehicle["id"], cbid, rid)["status"] == "Success"
        events = hook.wait_for(5)
        assert [(e["eventStatus"]["type"], e["eventStatus"]["status"]) for e in events] == [
            ("Pending", "Accepted"),
            ("Pending", "WakingUpVehicle"),
            ("Pending", "CheckingVehicle"),
            ("Pending", "SentToVehicle"),
            ("Done", "Success"),
        ]
        assert {e["remoteActionId"] for e in events} == {rid}
        assert {e["vin"] for e in events} == {vehicle["vin"]}
        status = client.get(f"{box.fleet_url}/vehicles/{vehicle['id']}/status").json()
        assert [p["slot"] for p in status["preconditioning"]["airConditioning"]["programs"]] == [1, 3]
        # the same programs again: AlreadyDone; then a Delete entry clears a slot
        again = post_remote(box, client, vehicle["id"], cbid, precondition(program(1), program(3, "PT18H"))).json()
        assert wait_done(box, client, vehicle["id"], cbid, again["remoteActionId"])["status"] == "AlreadyDone"
        cleared = post_remote(box, client, vehicle["id"], cbid, precondition(program(3, "PT18H", "Delete"))).json()
        assert wait_done(box, client, vehicle["id"], cbid, cleared["remoteActionId"])["status"] == "Success"
        programs = box.inspect(f"vehicles/{vehicle['vin']}")["programs"]
        assert [p["slot"] for p in programs] == [1]
        listed = client.get(f"{box.fleet_url}/vehicles/{vehicle['id']}/callbacks/{cbid}/remotes").json()
        assert listed["total"] == 3


@pytest.mark.slow
def test_remote_refusals() -> None:
    with sandbox() as box, box.client() as client:
        horn = client.post(
            f"{box.fleet_url}/remote/callbacks", json={**subscribe("http://127.0.0.1:9/h"), "remoteTypes": ["Horn"]}
        ).json()["callbackId"]
        cbid = make_callback(box, client, "http://127.0.0.1:9/h")
        vid = first_vehicle(box, client)["id"]
        wrong_type = post_remote(box, client, vid, horn, precondition(program(1)))
        assert (wrong_type.status_code, wrong_type.json()["code"]) == (400, 40008)
        two = post_remote(box, client, vid, cbid, {**precondition(program(1)), "horn": {"state": "Activated"}})
        assert (two.status_code, two.json()["code"]) == (400, 40007)
        twice = post_remote(box, client, vid, cbid, precondition(program(1), program(1, "PT8H")))
        assert "only be used once" in twice.json()["message"]
        bad_slot = post_remote(box, client, vid, cbid, precondition(program(5)))
        assert (bad_slot.status_code, bad_slot.json()["code"]) == (400, 40002)
        assert post_remote(box, client, "nope", cbid, precondition(program(1))).status_code == 404
        assert post_remote(box, client, vid, "nope", precondition(program(1))).status_code == 404
        assert client.get(f"{box.fleet_url}/vehicles/{vid}/callbacks/{cbid}/remotes/nope").status_code == 404


@pytest.mark.slow
def test_second_remote_while_one_is_in_progress_fails_and_pending_blocks_delete() -> None:
    with sandbox(speed=20.0, asleep_rate=0.0) as box, box.client() as client:
        cbid = make_callback(box, client, "http://127.0.0.1:9/h")
        vid = first_vehicle(box, client)["id"]
        first = post_remote(box, client, vid, cbid, precondition(program(1))).json()["remoteActionId"]
        second = post_remote(box, client, vid, cbid, precondition(program(2))).json()["remoteActionId"]
        refused = client.delete(f"{box.fleet_url}/remote/callbacks/{cbid}")
        assert (refused.status_code, refused.json()["code"]) == (400, 40006)
        done = wait_done(box, client, vid, cbid, second)
        assert (done["status"], done["failureCause"]) == ("Failed", "SameActionInProgress")
        assert wait_done(box, client, vid, cbid, first)["status"] == "Success"
        assert client.delete(f"{box.fleet_url}/remote/callbacks/{cbid}").status_code == 204


@pytest.mark.slow
def test_offline_vehicle_times_out_and_failure_rate_draws_causes() -> None:
    with sandbox(offline_rate=1.0) as box, box.client() as client:
        cbid = make_callback(box, client, "http://127.0.0.1:9/h")
        vid = first_vehicle(box, client)["id"]
        rid = post_remote(box, client, vid, cbid, precondition(program(1))).json()["remoteActionId"]
        assert wait_done(box, client, vid, cbid, rid)["failureCause"] == "VehicleConnectionTimeout"
    with sandbox(failure_rate=1.0) as box, box.client() as client:
        cbid = make_callback(box, client, "http://127.0.0.1:9/h")
        causes = set()
        for index in range(8):
            vid = first_vehicle(box, client, index)["id"]
            rid = post_remote(box, client, vid, cbid, precondition(program(1))).json()["remoteActionId"]
            done = wait_done(box, client, vid, cbid, rid)
            assert done["status"] == "Failed"
            causes.add(done["failureCause"])
        assert len(causes) >= 2
        assert box.inspect("vehicles")["vehicles"][0]["programs"] == []


# ---- notifications ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_envelope_attributes_and_variables() -> None:
    with webhook() as hook, sandbox(asleep_rate=0.0) as box, box.client() as client:
        attributes = [
            {"type": "Header", "key": "Authorization", "value": "Bearer t0ken"},
            {"type": "Header", "key": "X-Vin", "value": "$vin"},
            {"type": "Query", "key": "fleet", "value": "$fleetID"},
            {"type": "Body", "key": "cb", "value": "$callbackID"},
            {"type": "Body", "key": "kind", "value": "$remoteType"},
        ]
        body = subscribe(hook.url)
        body["callback"]["webhook"]["attributes"] = attributes
        cbid = client.post(f"{box.fleet_url}/remote/callbacks", json=body).json()["callbackId"]
        vehicle = first_vehicle(box, client)
        post_remote(box, client, vehicle["id"], cbid, precondition(program(1)))
        hook.wait_for(4)
        request = hook.received[0]
        assert request["headers"]["authorization"] == "Bearer t0ken"
        assert request["headers"]["x-vin"] == vehicle["vin"]
        assert request["query"] == {"fleet": box.settings.fleet}
        assert request["path"] == "/remote/webhook"
        assert request["body"]["callbackId"] == cbid
        assert request["body"]["attributes"] == [
            {"key": "cb", "value": cbid},
            {"key": "kind", "value": "ThermalPreconditioning"},
        ]
        assert len(request["body"]["events"]) == 1  # no batchNotify: one event per request


@pytest.mark.slow
def test_batch_notify_by_size_and_time_window() -> None:
    with webhook() as hook, sandbox(asleep_rate=0.0, speed=500.0) as box, box.client() as client:
        cbid = make_callback(box, client, hook.url, batchNotify={"size": 3, "timeWindow": 60})
        for index in range(3):
            post_remote(box, client, first_vehicle(box, client, index)["id"], cbid, precondition(program(1)))
        hook.wait_for(12)
        sizes = [len(r["body"]["events"]) for r in hook.received]
        assert sum(sizes) == 12
        assert max(sizes) == 3
    with webhook() as hook, sandbox(asleep_rate=0.0, speed=500.0) as box, box.client() as client:
        cbid = make_callback(box, client, hook.url, batchNotify={"size": 10, "timeWindow": 60})
        post_remote(box, client, first_vehicle(box, client)["id"], cbid, precondition(program(1)))
        hook.wait_for(4)
        # fewer events than the size: the time window sends them, together
        assert [len(r["body"]["events"]) for r in hook.received] == [4]


@pytest.mark.slow
def test_bounded_retry_policy_retries_then_delivers() -> None:
    with webhook(failures=2) as hook, sandbox(asleep_rate=0.0) as box, box.client() as client:
        cbid = make_callback(
            box, client, hook.url, retryPolicy={"policy": "Bounded", "retryNumber": 3, "retryDelay": 1}
        )
        post_remote(box, client, first_vehicle(box, client)["id"], cbid, precondition(program(1)))
        hook.wait_for(4 + 2)  # two failed attempts of the first batch, then everything
        deliveries = box.wait(
            lambda: len(box.inspect("deliveries")["deliveries"]) >= 6 and box.inspect("deliveries")["deliveries"]
        )
        first_batch = [d for d in deliveries if d["batch"] == deliveries[0]["batch"]]
        assert [(d["attempt"], d["status"]) for d in first_batch] == [(1, 500), (2, 500), (3, 200)]


@pytest.mark.slow
def test_policy_none_retries_once_then_gives_up() -> None:
    with webhook(failures=100) as hook, sandbox(asleep_rate=0.0) as box, box.client() as client:
        cbid = make_callback(box, client, hook.url, retryPolicy={"policy": "None"})
        post_remote(box, client, first_vehicle(box, client)["id"], cbid, precondition(program(1)))
        box.wait(lambda: len(box.inspect("deliveries")["deliveries"]) >= 8)
        time.sleep(0.2)
        deliveries = box.inspect("deliveries")["deliveries"]
        assert {d["attempt"] for d in deliveries} == {1, 2}
        assert len(deliveries) == 8 and len(hook.received) == 8


@pytest.mark.slow
def test_paused_callback_sends_nothing() -> None:
    with webhook() as hook, sandbox(asleep_rate=0.0) as box, box.client() as client:
        cbid = make_callback(box, client, hook.url)
        client.put(f"{box.fleet_url}/remote/callbacks/{cbid}/status", json={"status": "Paused"})
        vid = first_vehicle(box, client)["id"]
        rid = post_remote(box, client, vid, cbid, precondition(program(1))).json()["remoteActionId"]
        assert wait_done(box, client, vid, cbid, rid)["status"] == "Success"
        box.wait(lambda: len(box.inspect("deliveries")["suppressed"]) == 4)
        assert hook.received == []


@pytest.mark.slow
def test_webhooks_off_this_machine_are_not_contacted() -> None:
    with sandbox(asleep_rate=0.0) as box, box.client() as client:
        cbid = make_callback(box, client, "https://hooks.example.com/stellantis")
        post_remote(box, client, first_vehicle(box, client)["id"], cbid, precondition(program(1)))
        deliveries = box.wait(lambda: box.inspect("deliveries")["deliveries"])
        assert deliveries[0]["status"] is None
        assert deliveries[0]["error"].startswith("not sent: the target is not on this machine")


# ---- rate limits and faults -------------------------------------------------------------------------------


@pytest.mark.slow
def test_rate_limit_headers_and_429() -> None:
    with sandbox(rate_limit=5.0, daily_limit=1000) as box, box.client() as client:
        responses = [client.get(f"{box.api}/fleets") for _ in range(12)]
        ok = responses[0]
        assert ok.headers["X-RateLimit-Limit-1"] == "1000"
        assert ok.headers["X-RateLimit-Limit-2"] == "5"
        assert int(ok.headers["X-RateLimit-Remaining-2"]) == 4
        limited = [r for r in responses if r.status_code == 429]
        assert limited, [r.status_code for r in responses]
        assert limited[0].json()["code"] == 42901
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert sum(r.status_code == 200 for r in responses) <= 6


@pytest.mark.slow
def test_daily_limit() -> None:
    with sandbox(daily_limit=3) as box, box.client() as client:
        codes = [client.get(f"{box.api}/fleets").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]


@pytest.mark.slow
def test_error_rate_answers_500_in_the_api_shape() -> None:
    with sandbox(error_rate=1.0) as box, box.client() as client:
        response = client.get(f"{box.api}/fleets")
        assert response.status_code == 500
        assert response.json()["code"] == 50001
        assert "X-RateLimit-Remaining-1" in response.headers


@pytest.mark.slow
def test_dropped_connection_after_the_work_is_done() -> None:
    with sandbox(drop_rate=1.0) as box, box.client() as client:
        with pytest.raises(httpx.TransportError):
            client.post(f"{box.fleet_url}/remote/callbacks", json=subscribe("http://127.0.0.1:9/h"))
        assert box.inspect("stats")["callbacks"] == 1  # the API did create it
        assert box.inspect("stats")["dropped"] == 1


@pytest.mark.slow
def test_latency_is_added() -> None:
    with sandbox(latency_ms=150) as box, box.client() as client:
        start = time.monotonic()
        client.get(f"{box.api}/fleets")
        assert time.monotonic() - start >= 0.15


@pytest.mark.slow
def test_out_of_band_program_change_shows_in_status() -> None:
    with sandbox() as box, box.client() as client:
        vehicle = first_vehicle(box, client)
        foreign = program(2, "PT5H")
        del foreign["actionsType"]
        httpx.put(f"{box.root}/_sandbox/vehicles/{vehicle['vin']}", json={"programs": [foreign]})
        status = client.get(f"{box.fleet_url}/vehicles/{vehicle['id']}/status").json()
        assert status["preconditioning"]["airConditioning"]["programs"] == [foreign]


@pytest.mark.parametrize("programs", [{"slot": 1}, [{"start": "PT5H"}], [{"slot": "1"}], [{"slot": 9}], ["x"]])
def test_out_of_band_programs_that_are_not_program_entries_are_refused(programs: object) -> None:
    with sandbox() as box, box.client() as client:
        vehicle = first_vehicle(box, client)
        answer = httpx.put(f"{box.root}/_sandbox/vehicles/{vehicle['vin']}", json={"programs": programs})
        assert answer.status_code == 400 and "a slot from 1 to 4" in answer.json()["message"]


def test_settings_defaults_are_documented_values() -> None:
    settings = SandboxSettings()
    assert (settings.username, settings.password, settings.client_id) == (
        "sandbox",
        "sandbox-password",
        "sandbox-client",
    )
    assert settings.fleet == "0a123bc5d1e873066454b4d9"


@pytest.mark.slow
def test_a_client_that_goes_away_mid_request_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import socket as sockets

    logger = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate: listen where it writes
    with sandbox() as box:
        logger.addHandler(caplog.handler)  # once the server configured its logging
        port = int(box.root.rsplit(":", 1)[1])
        with sockets.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(
                f"POST {BASE}/fleets/{box.settings.fleet}/remote/callbacks?client_id=sandbox-client HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Basic c2FuZGJveDpzYW5kYm94LXBhc3N3b3Jk\r\n"
                'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"label":'.encode()
            )
        time.sleep(0.5)  # the sandbox reads on, and finds the connection gone
        assert box.inspect("stats")["requests"] >= 1
    logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
