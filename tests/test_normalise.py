"""Normalisation: one canonical form for starts, days, defaults and VINs; idempotent on any valid manifest."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import schema
from reconciler.api.wire import program_entry
from reconciler.manifests import load_manifests
from reconciler.manifests.normalise import normalise_document
from reconciler.model import DAYS, Program, SlotAssignment, canonical_days, canonical_start, parse_start
from tests.files import EXAMPLES
from tests.official import official_errors


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("07:30", (7, 30)),
        ("7:05", (7, 5)),
        ("00:00", (0, 0)),
        ("23:59", (23, 59)),
        ("PT7H30M", (7, 30)),
        ("PT7H", (7, 0)),
        ("PT45M", (0, 45)),
        ("PT0S", (0, 0)),
        ("24:00", (24, 0)),
        ("PT", None),
        ("PT7H30M15S", None),
        ("7.30", None),
    ],
)
def test_parse_start(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_start(text) == parsed


@pytest.mark.parametrize(
    ("text", "canonical"), [("07:30", "PT7H30M"), ("PT7H", "PT7H0M"), ("0:00", "PT0H0M"), ("PT23H59M", "PT23H59M")]
)
def test_canonical_start(text: str, canonical: str) -> None:
    assert canonical_start(text) == canonical
    assert canonical_start(canonical) == canonical


def test_canonical_start_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="not a time of day"):
        canonical_start("24:00")


def test_canonical_days() -> None:
    assert canonical_days("weekdays") == ("Mon", "Tue", "Wed", "Thu", "Fri")
    assert canonical_days("weekend") == ("Sat", "Sun")
    assert canonical_days("daily") == DAYS
    assert canonical_days(["Sun", "Mon", "Sun", "Wed"]) == ("Mon", "Wed", "Sun")


def test_normalise_fills_defaults_and_sorts() -> None:
    raw = {
        "kind": "Preconditioning",
        "name": "s",
        "callback": "cb",
        "vehicles": {"vins": ["vf7shmzh8rp000001", "VF3UHNKF5RL000005", "VF7SHMZH8RP000001"]},
        "programs": [
            {"slot": 3, "start": "PT8H", "days": ["Sun", "Sat"]},
            {"slot": 1, "start": "06:05", "days": "weekdays", "enabled": False, "recurrence": "None"},
        ],
    }
    assert normalise_document(raw) == {
        "kind": "Preconditioning",
        "name": "s",
        "callback": "cb",
        "vehicles": {"groups": [], "vins": ["VF3UHNKF5RL000005", "VF7SHMZH8RP000001"]},
        "programs": [
            {
                "slot": 1,
                "start": "PT6H5M",
                "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                "recurrence": "None",
                "enabled": False,
            },
            {"slot": 3, "start": "PT8H0M", "days": ["Sat", "Sun"], "recurrence": "Daily", "enabled": True},
        ],
        "takeover": False,
    }
    callback = normalise_document(
        {
            "kind": "Callback",
            "name": "cb",
            "webhook": {"target": "https://x.example/h", "headers": {"B": "2", "A": "1"}},
            "remoteTypes": ["Horn", "ThermalPreconditioning"],
            "retryPolicy": {"policy": "Bounded"},
            "batchNotify": {"size": 5},
        }
    )
    assert callback == {
        "kind": "Callback",
        "name": "cb",
        "webhook": {
            "target": "https://x.example/h",
            "name": "cb",
            "headers": {"A": "1", "B": "2"},
            "query": {},
            "body": {},
        },
        "remoteTypes": ["ThermalPreconditioning", "Horn"],
        "retryPolicy": {"policy": "Bounded", "retryNumber": 3, "retryDelay": 10},
        "batchNotify": {"size": 5, "timeWindow": 60},
        "status": "Running",
    }


# ---- random valid manifests ------------------------------------------------------------------------------

VIN = st.from_regex(r"[A-HJ-NPR-Za-hj-npr-z0-9]{17}", fullmatch=True)
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}", fullmatch=True)
HOUR, MINUTE = st.integers(0, 23), st.integers(0, 59)
START = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", HOUR, MINUTE),
    st.builds(lambda h, m: f"{h}:{m:02d}", HOUR, MINUTE),
    st.builds(lambda h, m: f"PT{h}H{m}M", HOUR, MINUTE),
    st.builds(lambda h: f"PT{h}H", HOUR),
    st.builds(lambda m: f"PT{m}M", MINUTE),
)
DAYS_VALUE = st.one_of(
    st.sampled_from(["weekdays", "weekend", "daily"]), st.lists(st.sampled_from(DAYS), min_size=1, max_size=9)
)


def _optional(draw: st.DrawFn, target: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


@st.composite
def programs(draw: st.DrawFn) -> list[dict[str, Any]]:
    slots = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4, unique=True))
    result = []
    for slot in slots:
        program: dict[str, Any] = {"slot": slot, "start": draw(START), "days": draw(DAYS_VALUE)}
        _optional(draw, program, "recurrence", st.sampled_from(["Daily", "None"]))
        _optional(draw, program, "enabled", st.booleans())
        result.append(program)
    return result


@st.composite
def preconditioning(draw: st.DrawFn) -> dict[str, Any]:
    vehicles: dict[str, Any] = {}
    _optional(draw, vehicles, "vins", st.lists(VIN, max_size=5))
    _optional(draw, vehicles, "groups", st.lists(NAME, max_size=3))
    if not vehicles:
        vehicles["vins"] = draw(st.lists(VIN, min_size=1, max_size=3))
    return {
        "kind": "Preconditioning",
        "name": draw(NAME),
        "callback": draw(NAME),
        "vehicles": vehicles,
        "programs": draw(programs()),
    }


@st.composite
def callback(draw: st.DrawFn) -> dict[str, Any]:
    words = st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True), st.text(max_size=8), max_size=3
    )
    webhook: dict[str, Any] = {"target": draw(st.sampled_from(["https://h.example/x", "http://localhost:8081/h"]))}
    _optional(draw, webhook, "name", NAME)
    for key in ("headers", "query", "body"):
        _optional(draw, webhook, key, words)
    data: dict[str, Any] = {
        "kind": "Callback",
        "name": draw(NAME),
        "webhook": webhook,
        "remoteTypes": draw(
            st.lists(st.sampled_from(["ThermalPreconditioning", "Horn", "Doors", "WakeUp"]), min_size=1, unique=True)
        ),
    }
    policy = st.fixed_dictionaries(
        {"policy": st.sampled_from(["None", "Bounded"])},
        optional={"retryNumber": st.integers(1, 9), "retryDelay": st.integers(1, 900)},
    )
    _optional(draw, data, "retryPolicy", policy)
    batch = st.fixed_dictionaries({"size": st.integers(1, 50)}, optional={"timeWindow": st.integers(5, 600)})
    _optional(draw, data, "batchNotify", batch)
    _optional(draw, data, "status", st.sampled_from(["Running", "Paused"]))
    return data


GROUP = st.builds(lambda name, vins: {"kind": "VehicleGroup", "name": name, "vins": vins}, NAME, st.lists(VIN))
MANIFEST = st.one_of(preconditioning(), callback(), GROUP)


@given(MANIFEST)
def test_normalisation_is_idempotent_and_stays_valid(document: dict[str, Any]) -> None:
    kind_schema = {
        "Callback": "callback.schema.json",
        "VehicleGroup": "vehicle-group.schema.json",
        "Preconditioning": "preconditioning.schema.json",
    }[document["kind"]]
    validator = schema.validator(kind_schema)
    assert list(validator.iter_errors(document)) == []
    once = normalise_document(document)
    assert list(validator.iter_errors(once)) == []
    assert normalise_document(once) == once


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=40)
@given(st.lists(preconditioning(), min_size=1, max_size=3))
def test_normalised_manifests_load_to_the_same_model(schedules: list[dict[str, Any]]) -> None:
    names = [f"s{i}" for i in range(len(schedules))]
    documents: list[dict[str, Any]] = [
        {
            "kind": "Callback",
            "name": "cb",
            "webhook": {"target": "https://h.example/x"},
            "remoteTypes": ["ThermalPreconditioning"],
        },
    ]
    for name, document in zip(names, schedules, strict=True):
        documents.append(
            {
                **document,
                "name": name,
                "callback": "cb",
                "vehicles": {"vins": document["vehicles"].get("vins") or ["VF3UHNKF5RL000005"]},
            }
        )
    with tempfile.TemporaryDirectory() as folder:
        raw, canonical = Path(folder, "raw.yaml"), Path(folder, "canonical.yaml")
        raw.write_text(yaml.safe_dump_all(documents))
        canonical.write_text(yaml.safe_dump_all([normalise_document(d) for d in documents]))
        first, second = load_manifests([raw], {}), load_manifests([canonical], {})
    assert [d.rule for d in first.errors] == [d.rule for d in second.errors]
    if first.desired is not None:
        assert second.desired is not None
        assert first.desired.vehicles == second.desired.vehicles
        assert first.desired.schedules == second.desired.schedules


def test_examples_model() -> None:
    outcome = load_manifests([EXAMPLES / "manifests"], {"WEBHOOK_AUTH": "Basic x"})
    assert outcome.diagnostics == ()
    desired = outcome.desired
    assert desired is not None
    assert len(desired.vehicles) == 30
    north = desired.vehicles[desired.groups["depot-north"][0]]
    assert north == (
        SlotAssignment(Program(1, "PT6H45M", DAYS[:5]), "fleet-ops", "weekday-shifts"),
        SlotAssignment(Program(2, "PT13H30M", DAYS[:5]), "fleet-ops", "weekday-shifts"),
        SlotAssignment(Program(3, "PT8H30M", DAYS[5:]), "fleet-ops", "weekend-shift"),
    )
    south = desired.vehicles[desired.groups["depot-south"][0]]
    assert [a.program.slot for a in south] == [1, 2]
    # vehicles chosen by the same schedules share one tuple: memory stays flat on large fleets
    assert len({id(slots) for slots in desired.vehicles.values()}) == 2
    callback = desired.callbacks["fleet-ops"]
    assert [(a.kind, a.key, a.sensitive) for a in callback.attributes] == [
        ("Header", "Authorization", True),
        ("Body", "vin", False),
    ]
    assert "Basic x" not in repr(callback)
    assert len(desired.digest) == 64


def test_programs_form_remote_bodies_the_official_schema_accepts() -> None:
    program = Program(2, "PT13H30M", DAYS[:5], "None", False)
    body = {
        "label": "weekday-shifts",
        "preconditioning": {
            "airConditioning": {"programs": [program_entry("Set", program), program_entry("Delete", program)]}
        },
    }
    assert official_errors("Remote", body) == []
    assert program_entry("Delete", program)["occurence"] == {"day": ["Mon", "Tue", "Wed", "Thu", "Fri"]}
