"""Domain rules beyond the single-file cases: warnings, aggregation on large fleets, no cascades."""

from __future__ import annotations

from pathlib import Path

from reconciler.diagnostics import Severity
from reconciler.manifests import load_manifests
from reconciler.vin import make_vin
from tests.files import WriteFiles

CALLBACK = """
kind: Callback
name: cb
webhook:
  target: http://127.0.0.1:8081/hook
  headers: {Authorization: "${env:HOOK_SECRET}"}
  query: {fleet: $fleetID, who: $driver}
remoteTypes: [ThermalPreconditioning]
"""


def messages(outcome: object, severity: Severity | None = None) -> list[str]:
    return [
        d.format()
        for d in outcome.diagnostics  # type: ignore[attr-defined]
        if severity is None or d.severity is severity
    ]


def test_warnings_do_not_block(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/cb.yaml": CALLBACK,
            "m/g.yaml": """
                kind: VehicleGroup
                name: empty
                vins: [VF3UHNKF5RL000005, vf3uhnkf5rl000005]
                ---
                kind: VehicleGroup
                name: none
                vins: []
                """,
            "m/s.yaml": """
                kind: Preconditioning
                name: s
                callback: cb
                vehicles: {groups: [none]}
                programs: [{slot: 1, start: "05:00", days: daily}]
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    assert outcome.errors == ()
    assert messages(outcome) == [
        "m/cb.yaml:5:28: warning: webhook.headers.Authorization: environment variable HOOK_SECRET not set",
        "m/cb.yaml:6:33: warning: unknown variable $driver: the API substitutes $vin, $callbackID, $remoteType, "
        "$fleetID",
        "m/g.yaml:3:27: warning: VIN VF3UHNKF5RL000005 is listed twice (first at line 3)",
        "m/s.yaml:4:11: warning: schedule 's' selects no vehicle",
    ]
    assert outcome.desired is not None
    assert outcome.desired.vehicles == {}


def test_strict_loading_makes_missing_secret_an_error(write: WriteFiles, chdir: Path) -> None:
    write({"m/cb.yaml": CALLBACK})
    outcome = load_manifests([Path("m")], {}, strict=True)
    assert [d.format() for d in outcome.errors] == [
        "m/cb.yaml:5:28: webhook.headers.Authorization: environment variable HOOK_SECRET not set"
    ]
    resolved = load_manifests([Path("m")], {"HOOK_SECRET": "Bearer t0k3n"}, strict=True)
    assert resolved.desired is not None
    header = resolved.desired.callbacks["cb"].attributes[0]
    assert header.value.value == "Bearer t0k3n"
    assert "t0k3n" not in repr(resolved.desired)


def test_reference_to_an_invalid_document_is_not_reported_twice(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/cb.yaml": "kind: Callback\nname: cb\nwebhook: {target: https://x.example/h}\nremoteTypes: [Hron]\n",
            "m/s.yaml": """
                kind: Preconditioning
                name: s
                callback: cb
                vehicles: {vins: [VF3UHNKF5RL000005]}
                programs: [{slot: 1, start: "05:00", days: daily}]
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    assert [d.rule for d in outcome.errors] == ["enum"]


def test_conflicts_on_many_vehicles_are_one_message(write: WriteFiles, chdir: Path) -> None:
    vins = [make_vin(i) for i in range(1, 1001)]
    write(
        {
            "m/cb.yaml": CALLBACK.replace("${env:HOOK_SECRET}", "static"),
            "m/g.yaml": "kind: VehicleGroup\nname: big\nvins:\n" + "".join(f"  - {v}\n" for v in vins),
            "m/s.yaml": """
                kind: Preconditioning
                name: first
                callback: cb
                vehicles: {groups: [big]}
                programs: [{slot: 2, start: "05:00", days: daily}]
                ---
                kind: Preconditioning
                name: second
                callback: cb
                vehicles: {groups: [big]}
                programs: [{slot: 2, start: "06:00", days: daily}]
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    shown = ", ".join(sorted(vins)[:3])
    assert [d.format() for d in outcome.errors] == [
        f"m/s.yaml:11:19: slot 2 of 1,000 vehicles ({shown} and 997 more) is claimed by both 'first' "
        "(m/s.yaml:5:19) and 'second' (m/s.yaml:11:19)"
    ]


def test_missing_paths_and_no_files(tmp_path: Path, chdir: Path) -> None:
    outcome = load_manifests([tmp_path / "nope"], {})
    assert [d.message for d in outcome.errors] == ["manifest path does not exist"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a manifest")
    outcome = load_manifests([tmp_path / "empty"], {})
    assert [d.message for d in outcome.errors] == ["no manifest files (*.yaml, *.yml) found"]


def test_hidden_folders_are_skipped_and_order_is_stable(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/b/z.yml": "kind: VehicleGroup\nname: z\nvins: []\n",
            "m/a.yaml": "kind: VehicleGroup\nname: a\nvins: []\n",
            "m/.reconciler/state.yaml": "not: a manifest\n",
            "m/.hidden.yaml": "kind: Nonsense\n",
        }
    )
    outcome = load_manifests([Path("m"), Path("m/a.yaml")], {})
    assert outcome.errors == ()
    assert outcome.files == ("m/a.yaml", "m/b/z.yml")


def test_a_document_with_a_schema_error_still_gets_its_own_checks(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/cb.yaml": CALLBACK.replace("${env:HOOK_SECRET}", "static"),
            "m/s.yaml": """
                kind: Preconditioning
                name: s
                callback: cb
                vehicles: {vins: [VF3UHNKF5RL000005]}
                colour: red
                programs:
                  - {slot: 1, start: "24:30", days: daily}
                  - {slot: 1, start: "PT123H", days: daily}
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    assert [(d.rule, d.source.line) for d in outcome.errors] == [
        ("unknown-field", 5),
        ("start-range", 7),
        ("slot-conflict", 8),
        ("start-format", 8),  # once: the schema's finding is not repeated as a range error
    ]


def test_documents_with_bad_values_keep_their_place_in_cross_checks(write: WriteFiles, chdir: Path) -> None:
    """A schedule with a misnamed name, an unknown day, slot 5 and slot 1 twice still claims slot 1 once."""
    write(
        {
            "m/cb.yaml": CALLBACK.replace("${env:HOOK_SECRET}", "static"),
            "m/s.yaml": """
                kind: Preconditioning
                name: first one
                callback: cb
                vehicles: {vins: [VF3UHNKF5RL000005, not-a-vin]}
                programs:
                  - {slot: 1, start: "05:00", days: [Mon, Funday]}
                  - {slot: 1, start: "06:00", days: daily}
                  - {slot: 5, start: "07:00", days: daily}
                ---
                kind: Preconditioning
                name: second
                callback: cb
                vehicles: {vins: [VF3UHNKF5RL000005]}
                programs: [{slot: 1, start: "06:00", days: daily}]
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    assert [d.rule for d in outcome.errors] == [
        "name-format",
        "vin-format",
        "days-unknown",
        "slot-conflict",
        "slot-range",
        "slot-conflict",
    ]
    assert outcome.errors[-1].message == (
        "slot 1 of vehicle VF3UHNKF5RL000005 is claimed by both 'first one' (m/s.yaml:6:12) and 'second' "
        "(m/s.yaml:14:19)"
    )
    assert outcome.desired is None


def test_a_schedule_of_an_invalid_group_is_not_called_empty(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/cb.yaml": CALLBACK.replace("${env:HOOK_SECRET}", "static"),
            "m/g.yaml": "kind: VehicleGroup\nname: g\nvins: VF3UHNKF5RL000005\n",
            "m/s.yaml": """
                kind: Preconditioning
                name: s
                callback: cb
                vehicles: {groups: [g]}
                programs: [{slot: 1, start: "05:00", days: daily}]
                """,
        }
    )
    outcome = load_manifests([Path("m")], {})
    assert [d.format() for d in outcome.diagnostics if d.source.file != "m/cb.yaml"] == [
        "m/g.yaml:3:7: vins must be a list, not the string 'VF3UHNKF5RL000005'"
    ]


def test_a_refused_webhook_target_from_the_environment_is_named_not_shown(write: WriteFiles, chdir: Path) -> None:
    write(
        {
            "m/cb.yaml": """
                kind: Callback
                name: cb
                webhook:
                  target: ${env:HOOK_URL}
                  headers: {Authorization: "x"}
                remoteTypes: [ThermalPreconditioning]
            """,
        }
    )
    outcome = load_manifests([Path("m")], {"HOOK_URL": "http://hooks.example.com/in?token=url-secret-canary"})
    shown = messages(outcome)
    assert any("webhook target '${env:HOOK_URL}' must use https" in line for line in shown), shown
    assert not any("url-secret-canary" in line for line in shown)
