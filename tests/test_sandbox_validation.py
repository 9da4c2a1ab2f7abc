"""The sandbox accepts exactly the request bodies the official schemas accept.

Each corpus entry is labelled with the verdict expected from the official api-b2b.yaml (vendor/stellantis);
the test checks that label against the official schema and against the sandbox over HTTP. Bodies that only
the API's documented rules beyond the schema refuse (no action, two actions, a slot used twice) are tested in
test_sandbox.py, not here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from reconciler.manifests.normalise import REMOTE_TYPES
from reconciler.sandbox import validation
from tests.files import VENDOR
from tests.official import official_errors
from tests.servers import Sandbox, sandbox
from tests.tools.extract_api_schemas import extract

HOOK = {"target": "http://127.0.0.1:9/hook", "name": "ops"}
CB: dict[str, Any] = {"callback": {"webhook": HOOK}, "remoteTypes": ["ThermalPreconditioning"]}
SET = {
    "actionsType": "Set",
    "slot": 1,
    "enabled": True,
    "recurrence": "Daily",
    "start": "PT7H30M",
    "occurence": {"day": ["Mon", "Fri"]},
}


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` set to `value` (or removed when value is DELETE)."""
    body = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return body


DELETE = object()


def remote(*programs: dict[str, Any], **air: Any) -> dict[str, Any]:
    return {"label": "t", "preconditioning": {"airConditioning": {"programs": list(programs), **air}}}


PRE = remote(SET)
CORPUS: list[tuple[str, str, Any, bool]] = [
    # (id, schema, body, valid per the official schema)
    ("cb-minimal", "RemoteCallbackSubscribe", CB, True),
    ("cb-label", "RemoteCallbackSubscribe", {**CB, "label": "fleet-ops"}, True),
    (
        "cb-attributes",
        "RemoteCallbackSubscribe",
        with_(
            CB,
            "callback.webhook.attributes",
            [
                {"type": "Header", "key": "Authorization", "value": "Basic x"},
                {"type": "Query", "key": "q", "value": "$vin"},
                {"type": "Body", "key": "b", "value": "$fleetID"},
            ],
        ),
        True,
    ),
    ("cb-retry-none", "RemoteCallbackSubscribe", {**CB, "retryPolicy": {"policy": "None"}}, True),
    (
        "cb-retry-bounded",
        "RemoteCallbackSubscribe",
        {**CB, "retryPolicy": {"policy": "Bounded", "retryNumber": 3, "retryDelay": 60}},
        True,
    ),
    ("cb-batch-size", "RemoteCallbackSubscribe", {**CB, "batchNotify": {"size": 10}}, True),
    ("cb-batch-window", "RemoteCallbackSubscribe", {**CB, "batchNotify": {"size": 10, "timeWindow": 300}}, True),
    (
        "cb-many-types",
        "RemoteCallbackSubscribe",
        {**CB, "remoteTypes": ["ThermalPreconditioning", "Horn", "Doors"]},
        True,
    ),
    ("cb-unknown-field", "RemoteCallbackSubscribe", {**CB, "extendedEventParam": []}, True),
    ("cb-no-types", "RemoteCallbackSubscribe", with_(CB, "remoteTypes", DELETE), False),
    ("cb-no-callback", "RemoteCallbackSubscribe", with_(CB, "callback", DELETE), False),
    ("cb-no-target", "RemoteCallbackSubscribe", with_(CB, "callback.webhook.target", DELETE), False),
    ("cb-no-name", "RemoteCallbackSubscribe", with_(CB, "callback.webhook.name", DELETE), False),
    ("cb-bad-type", "RemoteCallbackSubscribe", {**CB, "remoteTypes": ["Teleport"]}, False),
    ("cb-retry-always", "RemoteCallbackSubscribe", {**CB, "retryPolicy": {"policy": "Always"}}, False),
    ("cb-retry-no-policy", "RemoteCallbackSubscribe", {**CB, "retryPolicy": {"retryNumber": 2}}, False),
    ("cb-retry-zero", "RemoteCallbackSubscribe", {**CB, "retryPolicy": {"policy": "Bounded", "retryNumber": 0}}, False),
    ("cb-batch-no-size", "RemoteCallbackSubscribe", {**CB, "batchNotify": {"timeWindow": 60}}, False),
    ("cb-batch-window-small", "RemoteCallbackSubscribe", {**CB, "batchNotify": {"size": 2, "timeWindow": 1}}, False),
    (
        "cb-attribute-type",
        "RemoteCallbackSubscribe",
        with_(CB, "callback.webhook.attributes", [{"type": "Cookie", "key": "k", "value": "v"}]),
        False,
    ),
    ("cb-types-string", "RemoteCallbackSubscribe", {**CB, "remoteTypes": "ThermalPreconditioning"}, False),
    ("cb-target-number", "RemoteCallbackSubscribe", with_(CB, "callback.webhook.target", 42), False),
    ("cb-list", "RemoteCallbackSubscribe", [CB], False),
    ("status-running", "RemoteCallbacksStatusSetter", {"status": "Running"}, True),
    ("status-paused", "RemoteCallbacksStatusSetter", {"status": "Paused"}, True),
    ("status-failed", "RemoteCallbacksStatusSetter", {"status": "Failed"}, False),
    ("status-missing", "RemoteCallbacksStatusSetter", {}, False),
    ("status-number", "RemoteCallbacksStatusSetter", {"status": 1}, False),
    ("pre-set", "Remote", PRE, True),
    ("pre-no-label", "Remote", with_(PRE, "label", DELETE), True),
    ("pre-delete", "Remote", remote({**SET, "actionsType": "Delete"}), True),
    ("pre-default-action", "Remote", remote({k: v for k, v in SET.items() if k != "actionsType"}), True),
    ("pre-immediate", "Remote", remote(SET, immediate=False), True),
    ("pre-two-slots", "Remote", remote(SET, {**SET, "slot": 4, "recurrence": "None"}), True),
    ("horn", "Remote", {"horn": {"state": "Activated"}}, True),
    ("door", "Remote", {"door": {"state": "Locked"}}, True),
    ("wakeup", "Remote", {"wakeUp": {"action": "WakeUp"}}, True),
    ("charging-now", "Remote", {"charging": {"immediate": True}}, True),
    ("pre-slot-0", "Remote", remote({**SET, "slot": 0}), False),
    ("pre-slot-5", "Remote", remote({**SET, "slot": 5}), False),
    ("pre-delete-no-start", "Remote", remote({"actionsType": "Delete", "slot": 2}), False),
    ("pre-bad-day", "Remote", remote({**SET, "occurence": {"day": ["Monday"]}}), False),
    ("pre-no-day", "Remote", remote({**SET, "occurence": {}}), False),
    ("pre-weekly", "Remote", remote({**SET, "recurrence": "Weekly"}), False),
    ("pre-remove", "Remote", remote({**SET, "actionsType": "Remove"}), False),
    ("pre-enabled-string", "Remote", remote({**SET, "enabled": "yes"}), False),
    ("pre-start-number", "Remote", remote({**SET, "start": 730}), False),
    ("pre-programs-object", "Remote", {"preconditioning": {"airConditioning": {"programs": SET}}}, False),
    ("pre-no-air", "Remote", {"preconditioning": {}}, False),
    ("horn-loud", "Remote", {"horn": {"state": "Loud"}}, False),
    ("door-no-state", "Remote", {"door": {}}, False),
    ("remote-list", "Remote", [PRE], False),
]


def test_corpus_is_large_and_mixed() -> None:
    assert len(CORPUS) >= 40
    assert sum(valid for *_, valid in CORPUS) >= 15
    assert sum(not valid for *_, valid in CORPUS) >= 15
    assert len({name for name, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("name", "schema", "body", "valid"), CORPUS, ids=[c[0] for c in CORPUS])
def test_labels_match_the_official_schema(name: str, schema: str, body: Any, valid: bool) -> None:
    assert (official_errors(schema, body) == []) is valid, official_errors(schema, body)
    assert (validation.schema_errors(schema, body) == []) is valid


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with sandbox(vehicles=3, asleep_rate=0.0) as running:
        yield running


@pytest.mark.slow
def test_sandbox_gives_the_official_verdict_over_http(box: Sandbox) -> None:
    all_types = list(REMOTE_TYPES)
    with box.client() as client:
        callbacks = f"{box.fleet_url}/remote/callbacks"
        cbid = client.post(callbacks, json={**CB, "remoteTypes": all_types}).json()["callbackId"]
        vehicles = client.get(f"{box.fleet_url}/vehicles").json()["_embedded"]["vehicles"]
        disagreements = []
        for index, (name, schema, body, valid) in enumerate(CORPUS):
            if schema == "RemoteCallbackSubscribe":
                response = client.post(callbacks, json=body)
            elif schema == "RemoteCallbacksStatusSetter":
                response = client.put(f"{callbacks}/{cbid}/status", json=body)
            else:
                vid = vehicles[index % len(vehicles)]["id"]
                box.wait(lambda: box.inspect("stats")["remotes_pending"] == 0)
                response = client.post(f"{box.fleet_url}/vehicles/{vid}/callbacks/{cbid}/remotes", json=body)
            accepted = response.status_code in (200, 202)
            if accepted is not valid or (not accepted and response.status_code != 400):
                disagreements.append((name, response.status_code, response.text[:200]))
        assert disagreements == []


def test_packaged_extract_is_current() -> None:
    packaged = json.loads((resources.files("reconciler.sandbox") / "fleet-api.schema.json").read_text())
    assert packaged == extract(str(VENDOR / "api-b2b.yaml"))
