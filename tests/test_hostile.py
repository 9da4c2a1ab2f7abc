"""Large and hostile values stay out of messages: every message is short, however big the value it is about."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from reconciler import schema
from reconciler.diagnostics import MAX_MESSAGE, Diagnostic, Source
from reconciler.manifests import load_manifests
from reconciler.vin import make_vin
from reconciler.yamlload import MAX_ALIAS_VALUES, load_text
from tests.commands import SECRETS, run
from tests.files import WriteFiles

ITEMS = 15_000  # five aliases of it stay within MAX_ALIAS_VALUES
BIG = f"""kind: Preconditioning
name: big
callback: fleet-ops
description: &big [{", ".join(make_vin(n) for n in range(ITEMS))}]
vehicles: {{vins: *big}}
programs: [*big, *big, *big, *big, *big]
"""


def test_a_large_value_allowed_by_the_alias_budget_gives_short_messages() -> None:
    assert 6 * ITEMS < MAX_ALIAS_VALUES
    document = load_text(BIG, "big.yaml").documents[0]
    errors = list(schema.validator("preconditioning.schema.json").iter_errors(document.data))
    assert {error.validator for error in errors} == {"type", "maxItems"}
    assert max(len(error.message) for error in errors) < 300
    assert max(len(str(error.instance)) for error in errors) > 100_000  # the values themselves are large


def test_checking_a_large_value_takes_little_memory_beyond_it() -> None:
    document = load_text(BIG, "big.yaml").documents[0]
    tracemalloc.start()
    found = schema.check(document, "preconditioning.schema.json")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found and max(len(d.message) for d in found) < 300
    assert peak < 30_000_000, peak


def test_huge_strings_are_cut_in_every_message(write: WriteFiles, tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    write(
        {
            "m/kind.yaml": f"kind: {huge}\nname: a\n",
            "m/key.yaml": f"kind: VehicleGroup\nname: b\nvins: []\n? {huge}\n: 1\n",
            "m/name.yaml": f"kind: VehicleGroup\nname: {huge}\nvins: []\n",
            "m/target.yaml": f"kind: Callback\nname: c\nwebhook: {{target: 'ftp://{huge}'}}\nremoteTypes: [Horn]\n",
            "m/vin.yaml": f"kind: VehicleGroup\nname: d\nvins: [{huge}]\n",
            "m/day.yaml": (
                "kind: Preconditioning\nname: e\ncallback: c\nvehicles: {vins: []}\n"
                f"programs: [{{slot: 1, start: '07:00', days: [{huge}]}}, {{slot: 2, start: {huge}, days: {huge}}}]\n"
            ),
        }
    )
    outcome = load_manifests([tmp_path / "m"], {})
    assert sorted({d.rule for d in outcome.errors}) == [
        "callback-remote-type",
        "days-unknown",
        "kind-unknown",
        "name-format",
        "start-format",
        "unknown-field",
        "vin-format",
        "webhook-https",
    ]
    assert max(len(d.message) for d in outcome.diagnostics) < 400


def test_a_diagnostic_never_holds_an_unbounded_message() -> None:
    diagnostic = Diagnostic(Source("f.yaml", 1, 1), "value", "y" * 100_000)
    assert len(diagnostic.message) == MAX_MESSAGE
    assert diagnostic.message.endswith("y (truncated)")


def test_alias_bomb_is_refused_by_validate_and_plan_as_real_commands(write: WriteFiles, tmp_path: Path) -> None:
    levels = [f"a0: &a0 [{', '.join(['VF3UHNKF5RL000005'] * 9)}]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    bomb = "kind: VehicleGroup\nname: laughs\n" + "\n".join(levels) + "\nvins: *a8\n"
    write({"reconciler.yaml": "fleet: f\n", "manifests/bomb.yaml": bomb})
    assert len(bomb) < 1000
    for command in ("validate", "plan"):
        result = run(command, cwd=tmp_path, env=SECRETS)  # run() times out after 60 s
        assert result.returncode == 7, result.stdout + result.stderr
        assert "manifests/bomb.yaml:8:10: aliases add more than 100,000 values to this document" in (
            result.stdout + result.stderr
        )
        assert "Traceback" not in result.stderr
