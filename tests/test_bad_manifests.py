"""Each bad input gives its exact message at its exact place, and nothing else.

Every case is one file under fixtures/bad/, loaded together with the valid manifests of fixtures/base/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ExitCode, ManifestError
from reconciler.manifests import load_desired, load_manifests
from tests.files import FIXTURES

BASE = "base/base.yaml"
# file -> (rule, "line:col: message") for every error it must produce, in order
CASES: dict[str, list[tuple[str, str]]] = {
    "yaml-syntax.yaml": [
        (
            "yaml-syntax",
            "5:1: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 4)",
        ),
    ],
    "tab-indentation.yaml": [("yaml-tab", "4:1: tab character in indentation: YAML indents with spaces")],
    "duplicate-key.yaml": [("yaml-duplicate-key", "4:1: duplicate key 'name' (first at line 2)")],
    "wrong-type-slot.yaml": [("type", "6:11: programs[0].slot must be a whole number, not the string 'two'")],
    "wrong-type-enabled.yaml": [
        (
            "type",
            "9:14: programs[0].enabled must be true or false, not the string 'yes' (YAML 1.2: write true or false)",
        ),
    ],
    "wrong-type-vins.yaml": [("type", "3:7: vins must be a list, not the string 'VF3UHNKF5RL000005'")],
    "unknown-field.yaml": [
        ("unknown-field", "5:3: unknown field 'header' in webhook (did you mean 'headers'?)"),
        ("unknown-field", "7:29: unknown field 'retries' in retryPolicy"),
    ],
    "slot-zero.yaml": [("slot-range", "6:11: slot 0 is out of range: a vehicle has slots 1 to 4")],
    "slot-five.yaml": [("slot-range", "6:11: slot 5 is out of range: a vehicle has slots 1 to 4")],
    "misspelt-day.yaml": [
        ("days-unknown", "8:17: unknown day 'Tues': days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (did you mean 'Tue'?)"),
    ],
    "days-shorthand.yaml": [
        (
            "days-unknown",
            "8:11: days: 'weekdayz' is not weekdays, weekend or daily, nor a list of days Mon..Sun "
            "(did you mean 'weekdays'?)",
        ),
    ],
    "start-24-00.yaml": [("start-range", "7:12: start '24:00' is outside 00:00..23:59")],
    "start-07-60.yaml": [("start-range", "7:12: start '07:60' is outside 00:00..23:59")],
    "start-iso-hours.yaml": [("start-range", "7:12: start 'PT25H' is outside 00:00..23:59")],
    "start-format.yaml": [
        ("start-format", '7:12: start \'half past seven\' is not a time of day: use "HH:MM" or "PT7H30M"'),
    ],
    "unknown-callback.yaml": [("unknown-callback", "3:11: unknown callback 'fleet-opz' (did you mean 'fleet-ops'?)")],
    "callback-without-type.yaml": [
        (
            "callback-remote-type",
            "3:11: callback 'horn-only' does not list ThermalPreconditioning in remoteTypes "
            "(defined at base/base.yaml:8:1)",
        ),
    ],
    "unknown-group.yaml": [("unknown-group", "5:12: unknown vehicle group 'depto' (did you mean 'depot'?)")],
    "slot-claimed-twice.yaml": [
        (
            "slot-conflict",
            "10:11: slot 1 of vehicle VF3UHNKF5RL000005 is claimed by both 'base-weekday' "
            "(base/base.yaml:24:11) and 'also-slot-one' (bad/slot-claimed-twice.yaml:10:11)",
        ),
    ],
    "slot-twice-in-schedule.yaml": [("slot-conflict", "9:11: slot 3 appears twice in this schedule (first at line 6)")],
    "five-programs.yaml": [
        ("slot-limit", "6:3: 5 programs in one schedule: a vehicle holds at most 4 (slots 1 to 4)"),
        ("slot-conflict", "10:12: slot 4 appears twice in this schedule (first at line 9)"),  # in the same run
    ],
    "five-slots-on-vehicle.yaml": [
        (
            "slot-limit",
            "1:1: 3 vehicles (VF3UHNKF5RL000005, VF7SHMZH8RP000001, VR1JCHNS0RM000002) would hold "
            "5 programs, more than the 4 slots a vehicle has: 1 from 'base-weekday' (base/base.yaml:18:1), "
            "4 from 'four-more' (bad/five-slots-on-vehicle.yaml:1:1)",
        ),
        (
            "slot-conflict",
            "10:12: slot 1 of 3 vehicles (VF3UHNKF5RL000005, VF7SHMZH8RP000001, VR1JCHNS0RM000002) "
            "is claimed by both 'base-weekday' (base/base.yaml:24:11) and 'four-more' "
            "(bad/five-slots-on-vehicle.yaml:10:12)",
        ),
    ],
    "duplicate-name.yaml": [
        ("duplicate-name", "2:7: Callback 'fleet-ops' is already defined at base/base.yaml:3:7"),
    ],
    "bad-vin.yaml": [
        ("vin-format", "5:5: malformed VIN 'VF3UHNKF5RLOOOOO5': a VIN is 17 letters and digits, without I, O or Q"),
        ("vin-format", "6:5: malformed VIN 'VF3UHNKF5RL00005': a VIN is 17 letters and digits, without I, O or Q"),
    ],
    "empty.yaml": [("empty-file", "1:1: file holds no manifest documents")],
    "comment-only.yaml": [("empty-file", "1:1: file holds no manifest documents")],
    "not-a-mapping.yaml": [
        ("document-type", "1:1: a manifest document must be a mapping with kind and name, not a list"),
    ],
    "scalar-document.yaml": [
        (
            "document-type",
            "5:1: a manifest document must be a mapping with kind and name, not the string 'just some words'",
        ),
    ],
    "http-target.yaml": [
        (
            "webhook-https",
            "4:11: webhook target 'http://hooks.example.com/stellantis' must use https "
            "(http is allowed for localhost only)",
        ),
    ],
    "target-not-url.yaml": [
        ("webhook-https", "4:11: webhook target 'hooks.example.com' is not an http(s) URL with a host"),
    ],
    "unknown-kind.yaml": [
        (
            "kind-unknown",
            "1:7: unknown kind 'Callbak': use one of Callback, VehicleGroup, Preconditioning "
            "(did you mean 'Callback'?)",
        ),
    ],
    "missing-kind.yaml": [("missing-field", "1:1: missing required field 'kind'")],
    "missing-webhook.yaml": [("missing-field", "1:1: missing required field 'webhook'")],
    "bad-enum.yaml": [
        (
            "enum",
            "5:15: remoteTypes[0]: the string 'ThermalPreconditionning' is not one of ThermalPreconditioning, "
            "ElectricBatteryChargingRequest, Horn, Doors, Lights, Immobilization, Stolen, WakeUp, Navigation "
            "(did you mean 'ThermalPreconditioning'?)",
        ),
        (
            "enum",
            "6:23: retryPolicy.policy: the string 'bounded' is not one of None, Bounded (did you mean 'Bounded'?)",
        ),
    ],
    "bad-name.yaml": [
        (
            "name-format",
            "2:7: name 'North Depot!' is not a valid name: use letters, digits, '-' and '_', "
            "start with a letter or digit, at most 63 characters",
        ),
    ],
    "empty-vehicles.yaml": [("value", "4:11: vehicles must not be empty: list groups, vins or both")],
    "malformed-env.yaml": [
        ("env-syntax", "6:20: malformed reference '${WEBHOOK_AUTH}': write ${env:NAME} with a variable name"),
    ],
    "not-utf8.yaml": [("yaml-encoding", "3:18: file is not UTF-8 text (byte 0xe9)")],
    "slot-float.yaml": [
        ("type", "6:11: programs[0].slot must be a whole number, not the number 1.0"),
        ("type", "9:11: programs[1].slot must be a whole number, not the number 7.0"),
        ("type", "12:11: programs[2].slot must be a whole number, not the boolean true"),
    ],
    "integer-fields.yaml": [
        ("type", "6:45: retryPolicy.retryNumber must be a whole number, not the number 3.0"),
        ("type", "6:62: retryPolicy.retryDelay must be a whole number, not the string '10'"),
        ("type", "7:21: batchNotify.size must be a whole number, not the number 10.0"),
        ("type", "7:38: batchNotify.timeWindow must be a whole number, not the value .inf"),
    ],
    "alias-bomb.yaml": [
        (
            "yaml-aliases",
            "8:15: aliases add more than 100,000 values to this document: *a4 repeats the 40,186 values of &a4 "
            "(line 7); write the values out instead",
        ),
    ],
    "recursive-alias.yaml": [
        ("yaml-aliases", "3:33: alias *loop is inside the value it names: it would repeat without end"),
    ],
}


@pytest.fixture(autouse=True)
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    # so files are named relative to fixtures/, as a user's repo names them; the tests after these start where
    # they would have alone
    monkeypatch.chdir(FIXTURES)


def test_every_case_file_is_listed() -> None:
    assert sorted(p.name for p in (FIXTURES / "bad").iterdir()) == sorted(CASES)
    assert len(CASES) >= 25


def test_base_alone_is_valid() -> None:
    outcome = load_manifests([Path("base")], {})
    assert outcome.diagnostics == ()
    assert outcome.desired is not None
    assert sorted(outcome.desired.vehicles) == ["VF3UHNKF5RL000005", "VF7SHMZH8RP000001", "VR1JCHNS0RM000002"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_reports_exact_message_and_place(case: str) -> None:
    outcome = load_manifests([Path("base"), Path("bad") / case], {})
    got = [(d.rule, f"{d.source.file}:{d.source.line}:{d.source.column}: {d.message}") for d in outcome.errors]
    expected = [(rule, f"bad/{case}:{text}") for rule, text in CASES[case]]
    assert got == expected
    assert outcome.desired is None
    with pytest.raises(ManifestError) as raised:
        load_desired([Path("base"), Path("bad") / case], {})
    assert raised.value.exit_code is ExitCode.INVALID
    assert [d.rule for d in raised.value.diagnostics if d.is_error] == [rule for rule, _ in CASES[case]]
