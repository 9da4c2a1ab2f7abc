"""The receiver in-process: envelope checks at the door, folding that cannot be poisoned, work kept off the
event loop, and credentials reloaded only when they may have changed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.errors import StateError
from reconciler.state.events import fold, set_aside, tally
from reconciler.state.file import FileBackend
from reconciler.state.model import ActionRecord, State
from reconciler.state.record import record_callback
from reconciler.webhook.app import Credentials, Receiver, create_app, parse_envelope
from tests.official import WEBHOOK, official_errors
from tests.servers import serve_app
from tests.webhooks import wait_for

SECRET = "Basic cmVjZWl2ZXI6dGVzdA=="


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "remoteActionId": "r1",
        "vin": "VF3UHNKF5RL000005",
        "eventDate": "2026-11-25T08:00:05Z",
        "remoteType": "ThermalPreconditioning",
        "eventStatus": {"type": "Done", "status": "Failed", "failureCause": "VehicleConnectionTimeout"},
    }
    for key, value in changes.items():
        if key in ("type", "status", "failureCause", "feedbackDetail"):
            base["eventStatus"] = {**base["eventStatus"], key: value}
        else:
            base[key] = value
    return base


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"callbackId": "cb-1", "attributes": [{"key": "vin", "value": "VF3UHNKF5RL000005"}], "events": list(events)}


# -------------------------------------------------------------------------------------------------------------
# the door: every field's type and size


BAD = {
    "failureCause an object": (
        envelope(event(), event(), event(failureCause={"code": 1})),
        "events[2].eventStatus.failureCause: must be a string",
    ),
    "eventDate a number": (envelope(event(eventDate=1764057605)), "events[0].eventDate: must be a string"),
    "eventDate not a date": (
        envelope(event(eventDate="yesterday")),
        "events[0].eventDate: must be an ISO 8601 date-time",
    ),
    "vin a list": (envelope(event(vin=["VF3UHNKF5RL000005"])), "events[0].vin: must be a string"),
    "remoteType a number": (envelope(event(remoteType=7)), "events[0].remoteType: must be a string"),
    "remoteActionId missing": (envelope(event(remoteActionId=None)), "events[0].remoteActionId: is required"),
    "remoteActionId huge": (
        envelope(event(remoteActionId="r" * 257)),
        "events[0].remoteActionId: must be at most 256 characters",
    ),
    "failureCause huge": (
        envelope(event(failureCause="x" * 10_000)),
        "events[0].eventStatus.failureCause: must be at most 128 characters",
    ),
    "feedbackDetail a boolean": (
        envelope(event(feedbackDetail=True)),
        "events[0].eventStatus.feedbackDetail: must be a string",
    ),
    "type a list": (envelope(event(type=["Done"])), "events[0].eventStatus.type: must be a string"),
    "status a number": (envelope(event(status=3)), "events[0].eventStatus.status: must be a string"),
    "status object of a list": (
        envelope(event(status={"RemoteDoneEventStatus": ["Success"]})),
        "events[0].eventStatus.status.RemoteDoneEventStatus: must be a string",
    ),
    "status object of two": (
        envelope(event(status={"RemoteDoneEventStatus": "Success", "RemotePendingEventStatus": "Accepted"})),
        "events[0].eventStatus.status: must be a string or an object holding one status",
    ),
    "eventStatus a string": (envelope(event(eventStatus="Done")), "events[0].eventStatus: must be an object"),
    "event a string": (envelope("r1"), "events[0]: must be an object"),  # type: ignore[arg-type]
    "callbackId a number": ({**envelope(event()), "callbackId": 12}, "callbackId: must be a string"),
    "attributes an object": ({**envelope(event()), "attributes": {"k": "v"}}, "attributes: must be a list"),
    "attribute value a list": (
        {**envelope(event()), "attributes": [{"key": "k", "value": ["v"]}]},
        "attributes[0].value: must be a string",
    ),
    "events an object": ({"callbackId": "cb-1", "events": {}}, "events: must be a list"),
    "events empty": ({"callbackId": "cb-1", "events": []}, "events: must not be empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_wrong_type_or_size_is_refused_naming_the_field(case: str) -> None:
    body, message = BAD[case]
    assert parse_envelope(body) == message


# the size limits, the date format and the one-status rule are this receiver's own; the types are the template's
OWN_RULES = ("remoteActionId huge", "failureCause huge", "eventDate not a date", "status object of two", "events empty")


@pytest.mark.parametrize("case", sorted(set(BAD) - set(OWN_RULES)))
def test_what_the_door_refuses_the_official_template_refuses_too(case: str) -> None:
    body, _ = BAD[case]
    assert official_errors("RemoteEvents", body, str(WEBHOOK))


def test_open_enums_nulls_and_unknown_fields_are_accepted() -> None:
    newer = event(status="VehicleBatteryLevelWarning", type="Pending", failureCause=None, feedbackDetail=None)
    parsed = parse_envelope(
        {
            **envelope(newer, event(failureCause="SomeCauseAddedLater", extra={"new": "field"}, vin=None)),
            "futureField": 1,
        }
    )
    assert not isinstance(parsed, str)
    assert [(e["status"], e["failureCause"], e["vin"]) for e in parsed[1]] == [
        ("VehicleBatteryLevelWarning", None, "VF3UHNKF5RL000005"),
        ("Failed", "SomeCauseAddedLater", None),
    ]
    assert "extra" not in parsed[1][1]  # unknown fields are not recorded


def test_feedback_detail_is_recorded() -> None:
    parsed = parse_envelope(envelope(event(status="Success", failureCause=None, feedbackDetail="NoCIDBlacklisted")))
    assert not isinstance(parsed, str)
    assert parsed[1][0]["feedbackDetail"] == "NoCIDBlacklisted"


# -------------------------------------------------------------------------------------------------------------
# folding: whatever the events file holds, nothing bad reaches the state, and only the right callback counts


def two_callbacks() -> State:
    state = State.new("f")
    record_callback(state, "fleet-ops", "cb-ops", {}, {}, "Running")
    record_callback(state, "partner", "cb-partner", {}, {}, "Running")
    state.actions["r1"] = ActionRecord("VF3UHNKF5RL000005", "fleet-ops", "2026-11-25T08:00:00Z", "Success")
    return state


def stored(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "callbackId": "cb-ops",
        "callback": "fleet-ops",
        "remoteActionId": "r1",
        "vin": "VF3UHNKF5RL000005",
        "eventDate": "2026-11-25T08:00:09Z",
        "remoteType": "ThermalPreconditioning",
        "type": "Done",
        "status": "Failed",
        "failureCause": "MissingRights",
        "feedbackDetail": None,
        "received_at": "2026-11-25T08:00:10Z",
    }
    entry.update(changes)
    return entry


JUNK: list[Any] = [
    [1, 2],
    "a string",
    7,
    None,
    {},
    stored(failureCause={"code": 1}),
    stored(eventDate=1764057605),
    stored(vin=["V"]),
    stored(status=None),
    stored(remoteActionId=["r1"]),
    stored(callbackId=None),
    stored(type="Done", status={"nested": "Failed"}),
    stored(failureCause="x" * 1000),
]


def test_folding_skips_and_counts_every_malformed_entry() -> None:
    state = two_callbacks()
    before = state.to_dict()
    result = fold(state, JUNK)
    assert (result.changed, result.unknown, result.malformed) == (0, [], len(JUNK))
    assert state.to_dict() == before
    assert tally(state, JUNK) == {"unmatched_events": 0, "other_callback_events": 0, "malformed_events": len(JUNK)}


def test_an_outcome_counts_only_from_the_callback_its_action_was_posted_with() -> None:
    state = two_callbacks()
    forged = stored(callbackId="cb-partner", callback="partner")
    result = fold(state, [forged])
    assert (result.changed, result.other_callback) == (0, 1)
    assert state.actions["r1"].outcome == "Success"
    genuine = fold(state, [stored()])
    assert genuine.changed == 1 and state.actions["r1"].cause == "MissingRights"


def test_a_writer_keeps_what_folding_ignored_flagged_with_why() -> None:
    state = two_callbacks()
    events = [stored(), stored(remoteActionId="elsewhere"), stored(callbackId="cb-partner"), [1], stored(vin=3)]
    kept = set_aside(state, events)
    assert kept == [
        {**stored(remoteActionId="elsewhere"), "unmatched": True},
        {**stored(callbackId="cb-partner"), "rejected": "other-callback"},
        {"rejected": "malformed", "entry": [1]},
        {**stored(vin=3), "rejected": "malformed"},
    ]
    assert set_aside(state, kept) == kept  # what was set aside stays aside, unchanged


# -------------------------------------------------------------------------------------------------------------
# nothing slow on the event loop


class SlowBackend(FileBackend):
    """A file backend whose appends wait for `release`, recording each batch they were given."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def append_events(self, events: Sequence[dict[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.batches.append(len(events))
        super().append_events(events)


def credentials_for(callback_id: str = "cb-1") -> Credentials:
    return Credentials({callback_id: ("fleet-ops", [("Header", "Authorization", SECRET)])})


@contextmanager
def running(made: Receiver) -> Iterator[str]:
    with serve_app(create_app(made)) as root:
        yield root


def post(root: str, body: dict[str, Any], secret: str = SECRET, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{root}/remote/webhook", json=body, headers={"Authorization": secret}, timeout=timeout)


def one(index: int, callback_id: str = "cb-1") -> dict[str, Any]:
    return {**envelope(event(remoteActionId=f"r{index}")), "callbackId": callback_id}


@pytest.mark.slow
def test_a_slow_disk_does_not_stall_the_receiver_and_waiting_requests_share_one_write(tmp_path: Path) -> None:
    backend = SlowBackend(tmp_path / "state.json")
    made = Receiver(backend, credentials_for, credentials=credentials_for())
    with running(made) as root, ThreadPoolExecutor(8) as pool:
        first = pool.submit(post, root, one(0))
        assert backend.entered.wait(10)  # the first write is under way, and blocked
        health = httpx.get(f"{root}/healthz", timeout=5)  # answered meanwhile: the loop is free
        assert health.status_code == 200
        later = [pool.submit(post, root, one(i)) for i in range(1, 6)]
        assert made.writer is not None
        writer = made.writer
        wait_for(lambda: len(writer.queue) == 5)  # all five wait for the next write
        backend.release.set()
        answers = [f.result().status_code for f in [first, *later]]
    assert answers == [200] * 6
    assert backend.batches == [1, 5]  # five requests, one append (one fsync)
    assert sorted(e["remoteActionId"] for e in backend.read_events()) == [f"r{i}" for i in range(6)]


@pytest.mark.slow
def test_an_append_that_fails_is_answered_500_and_the_receiver_goes_on(tmp_path: Path) -> None:
    class Full(FileBackend):
        fail = True

        def append_events(self, events: Sequence[dict[str, Any]]) -> None:
            if self.fail:
                self.fail = False
                raise OSError(28, "No space left on device")
            super().append_events(events)

    backend = Full(tmp_path / "state.json")
    made = Receiver(backend, credentials_for, credentials=credentials_for())
    with running(made) as root:
        assert post(root, one(1)).status_code == 500  # the API retries it
        assert post(root, one(2)).status_code == 200
    assert [e["remoteActionId"] for e in backend.read_events()] == ["r2"]
    assert made.answers[500] == 1


@pytest.mark.slow
def test_reloading_credentials_runs_off_the_loop(tmp_path: Path) -> None:
    loading, release = threading.Event(), threading.Event()

    def slow_load() -> Credentials:
        loading.set()
        assert release.wait(30)
        return credentials_for("cb-new")

    made = Receiver(FileBackend(tmp_path / "state.json"), slow_load, credentials=credentials_for())
    with running(made) as root, ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(post, root, one(1, "cb-new"))
        assert loading.wait(10)
        assert httpx.get(f"{root}/healthz", timeout=5).status_code == 200  # the loop is free meanwhile
        assert post(root, one(2), timeout=5).status_code == 200  # and known callbacks are served
        release.set()
        assert waiting.result().status_code == 200  # the callback the reload found
    assert made.reloads == 1


@pytest.mark.slow
def test_unknown_callback_ids_reload_only_when_the_state_changed_and_at_most_once_per_interval(
    tmp_path: Path,
) -> None:
    version = ["v1"]
    loads: list[str] = []

    def load() -> Credentials:
        loads.append(version[0])
        return credentials_for()

    made = Receiver(
        FileBackend(tmp_path / "state.json"),
        load,
        credentials=credentials_for(),
        signature=lambda: version[0],
        loaded_signature="v1",
        reload_interval=0.5,
    )
    with running(made) as root, ThreadPoolExecutor(20) as pool:

        def flood() -> list[int]:
            return [f.result().status_code for f in [pool.submit(post, root, one(i, f"x{i}")) for i in range(20)]]

        assert flood() == [401] * 20
        assert loads == []  # nothing changed: no reload at all
        version[0] = "v2"  # an apply wrote the journal
        assert flood() == [401] * 20
        assert loads == ["v2"]  # twenty requests, one reload
        assert flood() == [401] * 20
        assert loads == ["v2"]  # reloaded since: nothing changed again
        version[0] = "v3"
        assert flood() == [401] * 20  # within the interval: they wait for the next one, which is shared
        assert loads == ["v2", "v3"]
    assert made.unknown_callback == 80


@pytest.mark.slow
def test_a_failed_reload_keeps_the_known_callbacks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Credentials:
        raise ValueError("manifests/callbacks.yaml:3:1: something is wrong")

    made = Receiver(
        FileBackend(tmp_path / "state.json"),
        broken,
        credentials=credentials_for(),
        signature=lambda: "changed",
        loaded_signature="before",
    )
    with running(made) as root:
        assert post(root, one(1, "cb-other")).status_code == 401
        assert post(root, one(2)).status_code == 200
    assert "could not reload the callbacks' credentials: manifests/callbacks.yaml:3:1" in caplog.text


@pytest.mark.slow
def test_wrong_or_missing_credentials_are_told_apart_in_the_log_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="reconciler.webhook")
    known = Credentials({"cb-1": ("ops", [("Header", "Authorization", SECRET), ("Query", "token", "query-secret-1")])})
    made = Receiver(FileBackend(tmp_path / "state.json"), lambda: known, credentials=known)
    with running(made) as root:
        url = f"{root}/remote/webhook"
        assert httpx.post(url, json=one(1), headers={"Authorization": SECRET}).status_code == 401
        assert httpx.post(url + "?token=nope", json=one(1), headers={"Authorization": "x"}).status_code == 401
        assert (
            httpx.post(url + "?token=query-secret-1", json=one(1), headers={"Authorization": SECRET}).status_code == 200
        )
        assert httpx.post(url, json={**one(1), "callbackId": "bad\nid"}).status_code == 401
    lines = [r.getMessage() for r in caplog.records]
    assert any("401 refused 1 events: missing query token for callback ops" in line for line in lines)
    assert any(
        "401 refused 1 events: wrong header Authorization, wrong query token for callback ops" in line for line in lines
    )
    assert any("accepted 1 events for callback ops" in line for line in lines)
    assert any("unknown callbackId 'bad\\nid'" in line for line in lines)  # escaped: one line per request
    assert SECRET not in caplog.text and "query-secret-1" not in caplog.text


@pytest.mark.slow
def test_an_empty_expected_value_never_matches(tmp_path: Path) -> None:
    """Validation refuses empty credentials; should one slip through, the receiver fails closed."""
    known = Credentials({"cb-1": ("ops", [("Header", "Authorization", "")])})
    made = Receiver(FileBackend(tmp_path / "state.json"), lambda: known, credentials=known)
    with running(made) as root:
        assert httpx.post(f"{root}/remote/webhook", json=one(1)).status_code == 401
        assert post(root, one(1), secret="").status_code == 401


@pytest.mark.slow
def test_a_large_batch_is_parsed_off_the_loop_and_recorded(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "state.json")
    made = Receiver(backend, credentials_for, credentials=credentials_for())
    batch = envelope(*[event(remoteActionId=f"r{i}") for i in range(3000)])
    assert len(json.dumps(batch)) > 64 * 1024
    with running(made) as root:
        assert post(root, batch).json() == {"received": 3000}
    assert len(backend.read_events()) == 3000


@pytest.mark.slow
def test_healthz_reports_the_state_backend_checking_it_at_most_once_a_second(tmp_path: Path) -> None:
    class Flaky(FileBackend):
        down = False
        checks = 0

        def signature(self) -> Any:
            self.checks += 1
            if self.down:
                raise StateError("the state database 127.0.0.1:5432/fleet could not be opened: connection refused")
            return super().signature()

    backend = Flaky(tmp_path / "state.json")
    made = Receiver(backend, credentials_for, credentials=credentials_for())
    with running(made) as root, ThreadPoolExecutor(8) as pool:

        def health() -> httpx.Response:
            return httpx.get(f"{root}/healthz", timeout=10)

        answers = list(pool.map(lambda _: health(), range(40)))
        assert {answer.status_code for answer in answers} == {200}
        assert answers[0].json() == {"status": "ok", "received": 0, "state": "ok"}
        assert backend.checks == 1  # forty asked at once: one check
        backend.down = True
        answer = wait_for(lambda: (got := health()).status_code == 503 and got, timeout=5)
        assert answer.json() == {
            "status": "unavailable",
            "received": 0,
            "state": "the state database 127.0.0.1:5432/fleet could not be opened: connection refused",
        }
        assert post(root, one(1)).status_code == 200  # only the check fails here: recording still works
        checks = backend.checks
        list(pool.map(lambda _: health(), range(40)))
        assert backend.checks <= checks + 1
