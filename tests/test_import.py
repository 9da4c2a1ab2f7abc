"""import: a fleet configured without reconciler (or whose state was lost) is adopted, then plans no changes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.commands import SECRETS, environment, labels, run
from tests.postgres import forget_state
from tests.servers import sandbox


@pytest.mark.slow
def test_import_then_plan_shows_no_changes(any_repo: Path) -> None:
    repo = any_repo
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        forget_state(repo)  # the fleet is configured; the state is gone
        fresh = json.loads(run("plan", "--format", "json", cwd=repo, env=env).stdout)
        assert fresh["summary"]["callbacks_create"] == 1 and fresh["summary"]["vehicles"] == 30
        callbacks = run("import", "callbacks", cwd=repo, env=env)
        assert callbacks.returncode == 0, callbacks.stderr
        assert callbacks.stdout.splitlines()[0] == "callback.fleet-ops: adopted"
        vehicles = run("import", "vehicles", cwd=repo, env=env)
        assert vehicles.returncode == 0, vehicles.stderr
        assert "Imported 30 items" in vehicles.stdout
        after = run("plan", "--detailed-exitcode", cwd=repo, env=env)
        assert after.returncode == 0, after.stdout
        assert re.fullmatch(r"No changes: the manifests match the recorded state \(serial \d+\)\.\n", after.stdout)
        assert labels(box) == ["fleet-ops"]


@pytest.mark.slow
def test_import_one_callback_by_id_and_a_rotated_secret_shows(repo: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--target", "callback:fleet-ops", cwd=repo, env=env).returncode == 0
        with box.client() as client:
            live = client.get(f"{box.fleet_url}/remote/callbacks").json()["_embedded"]["callbacks"][0]
        shutil.rmtree(repo / ".reconciler")
        adopted = run("import", "callback", "fleet-ops", live["id"], cwd=repo, env=env)
        assert adopted.stdout.splitlines()[0] == f"callback.fleet-ops: adopted {live['id']}"
        plan = run("plan", cwd=repo, env={**env, "WEBHOOK_AUTH": "Basic rotated"}).stdout
        assert "~ webhook.headers.Authorization: (sensitive, changed)" in plan
        assert "rotated" not in plan
        unknown = run("import", "callback", "nope", live["id"], cwd=repo, env=env)
        assert unknown.returncode == 1 and "no Callback named 'nope' in the manifests" in unknown.stderr


@pytest.mark.slow
def test_write_manifests_describes_the_live_fleet_and_plans_no_changes(repo: Path, tmp_path: Path) -> None:
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        assert run("apply", "--auto-approve", "--wait=30", cwd=repo, env=env).returncode == 0
        dumped = run("import", "--write-manifests", str(tmp_path / "dump"), cwd=repo, env=env)
        assert dumped.returncode == 0, dumped.stderr
        assert "set FLEET_OPS_AUTHORIZATION to the header's value before plan or apply" in dumped.stdout
        text = (tmp_path / "dump" / "callbacks.yaml").read_text()
        assert SECRETS["WEBHOOK_AUTH"] not in text and "${env:FLEET_OPS_AUTHORIZATION}" in text
        # a new repo made of the dump, on a fresh state, adopts the fleet and then has nothing to do
        onboard = tmp_path / "onboard"
        shutil.copytree(tmp_path / "dump", onboard / "manifests")
        shutil.copy(repo / "reconciler.yaml", onboard / "reconciler.yaml")
        env2 = {**env, "FLEET_OPS_AUTHORIZATION": SECRETS["WEBHOOK_AUTH"]}
        assert run("validate", "--strict", cwd=onboard, env=env2).returncode == 0
        assert run("import", "callbacks", cwd=onboard, env=env2).returncode == 0
        assert run("import", "vehicles", cwd=onboard, env=env2).returncode == 0
        after = run("plan", "--detailed-exitcode", cwd=onboard, env=env2)
        assert after.returncode == 0, after.stdout
        assert run("import", cwd=repo, env=env).returncode == 64


def test_written_manifests_reference_query_credentials_and_quote_start_times(tmp_path: Path) -> None:
    import httpx

    from reconciler.api.client import ApiConfig, FleetClient
    from reconciler.live import held_programs
    from reconciler.manifests.dump import write_manifests

    live = {
        "id": "cb-1",
        "status": "Running",
        "subscribe": {
            "label": "ops",
            "remoteTypes": ["ThermalPreconditioning"],
            "callback": {
                "webhook": {
                    "target": "https://hooks.example/in",
                    "name": "ops",
                    "attributes": [
                        {"type": "Query", "key": "token", "value": "query-secret-canary"},
                        {"type": "Header", "key": "Authorization", "value": "header-secret-canary"},
                        {"type": "Body", "key": "vin", "value": "$vin"},
                    ],
                }
            },
        },
    }
    program = {"slot": 1, "enabled": True, "recurrence": "Daily", "start": "PT7H30M", "occurence": {"day": ["Mon"]}}

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/remote/callbacks"):
            return httpx.Response(200, json={"_links": {}, "_embedded": {"callbacks": [live]}})
        if request.url.path.endswith("/vehicles"):
            return httpx.Response(200, json={"_links": {}, "_embedded": {"vehicles": [{"id": "v1", "vin": "VIN1"}]}})
        return httpx.Response(200, json={"preconditionning": {"airConditioning": {"programs": [program]}}})

    config = ApiConfig("https://api.example/v3", "c", "u", "p", rate_limit=1000)
    with FleetClient(config, "f", transport=httpx.MockTransport(api)) as client:
        lines = write_manifests(client.callbacks(), held_programs(client, client.vehicles()), tmp_path)
    callbacks = (tmp_path / "callbacks.yaml").read_text()
    assert "query-secret-canary" not in callbacks and "header-secret-canary" not in callbacks
    import yaml

    webhook = yaml.safe_load(callbacks)["webhook"]
    assert webhook["query"] == {"token": "${env:OPS_TOKEN}"} and webhook["body"] == {"vin": "$vin"}
    assert "set OPS_TOKEN to the query parameter's value before plan or apply" in lines
    fleet = (tmp_path / "fleet.yaml").read_text()
    assert 'start: "07:30"' in fleet  # read by the older API spelling `preconditionning` too


def test_every_missing_api_setting_is_named_at_once(repo: Path) -> None:
    env = {k: v for k, v in SECRETS.items() if k not in ("FLEET_API_USERNAME", "FLEET_API_PASSWORD")}
    result = run("apply", "--auto-approve", cwd=repo, env=env)
    assert result.returncode == 7
    assert "api.username: environment variable FLEET_API_USERNAME not set" in result.stderr
    assert "api.password: environment variable FLEET_API_PASSWORD not set" in result.stderr
