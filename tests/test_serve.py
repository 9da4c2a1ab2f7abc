"""`reconciler serve` as users run it: a real subprocess following a git config repo, against the sandbox, on
each state backend; its push webhook, metrics, health, JSON logs and graceful stop."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette

from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.metrics import Metrics
from reconciler.controller.repo import GitSource, RepoError
from reconciler.controller.serve import push_route
from reconciler.operations import open_workspace
from tests.browser import Dom
from tests.commands import SECRETS, environment, run
from tests.files import edit
from tests.planning import json_changes
from tests.servers import Sandbox, sandbox, serve_app
from tests.serving import PUSH, commit, free_port, prepare, runs, serving, wait_until


def changes_left(repo: Path, box: Sandbox) -> list[Any]:
    """What a plan of the repo's working tree still holds against the recorded state."""
    plan = run("plan", "--format", "json", cwd=repo, env=environment(box))
    assert plan.returncode in (0, 2), plan.stderr
    return json_changes(json.loads(plan.stdout))


def remotes_by_vin(box: Sandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for remote in box.inspect("remotes")["remotes"]:
        counts[remote["vin"]] = counts.get(remote["vin"], 0) + 1
    return counts


@pytest.mark.slow
def test_serve_applies_new_commits_wakes_on_push_and_refuses_invalid_ones(any_repo: Path) -> None:
    repo, port = any_repo, free_port()
    first = prepare(repo, port)
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        with serving(repo, env, port, "--repo", str(repo), "--branch", "main", "--interval", "1h") as served:
            # leading at once, the first commit is applied without waiting for the interval
            wait_until(lambda: runs(served, "applied"), what="the first commit applied")
            assert changes_left(repo, box) == []
            assert httpx.get(served.url + "/healthz", timeout=10).status_code == 200
            ready = httpx.get(served.url + "/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["leader"] is True and ready.json()["commit"] == first

            # a new commit, announced by the push webhook: refused without the token, applied at once with it
            edit(repo / "manifests" / "callbacks.yaml", "size: 10", "size: 5")
            second = commit(repo, "smaller batches of notifications")
            assert changes_left(repo, box) != []
            assert httpx.post(served.url + "/hooks/push", timeout=10).status_code == 401
            wrong = {"X-Reconciler-Token": "nope"}
            assert httpx.post(served.url + "/hooks/push", headers=wrong, timeout=10).status_code == 401
            assert runs(served, "applied") == 1  # neither woke it
            pushed = httpx.post(served.url + "/hooks/push", headers={"X-Reconciler-Token": PUSH}, timeout=10)
            assert pushed.status_code == 202
            wait_until(lambda: runs(served, "applied") == 2, timeout=30, what="the pushed commit applied")
            assert changes_left(repo, box) == []
            assert httpx.get(served.url + "/readyz", timeout=10).json()["commit"] == second

            # an invalid commit is reported and not applied: the previous one stays in force
            edit(repo / "manifests" / "schedules.yaml", 'start: "13:30"', 'start: "25:99"')
            bad = commit(repo, "a broken schedule")
            before = box.inspect("remotes")["remotes"]
            httpx.post(served.url + "/hooks/push", headers={"X-Gitlab-Token": PUSH}, timeout=10)
            wait_until(lambda: runs(served, "invalid"), timeout=30, what="the invalid commit reported")
            assert f"commit {bad[:12]} is invalid and not applied" in served.log()
            assert f"commit {second[:12]} stays in force" in served.log()
            assert f"run invalid at commit {bad[:12]}" in served.log()  # the run names the commit it refused
            refused = Dom(httpx.get(served.url + "/", timeout=30).text).one("tr", data_run="0")
            assert (refused.attrs["data-result"], refused.attrs["data-commit"]) == ("invalid", bad[:7])
            assert box.inspect("remotes")["remotes"] == before
            assert httpx.get(served.url + "/readyz", timeout=10).json()["commit"] == second

            # notifications reach the receiver of the same process
            wait_until(lambda: served.value("reconciler_events_received_total", result="recorded") > 0)
            metrics = served.metrics()
            assert served.stop() == 0
    calls = {
        (dict(labels)["kind"], dict(labels)["result"]): value
        for (name, labels), value in metrics.items()
        if name == "reconciler_api_calls_total"
    }
    assert calls[("post_remote", "202")] == 30
    assert sum(value for (kind, _), value in calls.items() if kind == "create_callback") == 1
    assert sum(value for (kind, _), value in calls.items() if kind == "update_callback") == 1
    assert calls[("list_vehicles", "200")] >= 1
    assert metrics[("reconciler_outcomes_total", (("cause", ""), ("outcome", "Success")))] > 0
    assert metrics[("reconciler_runs_total", (("result", "applied"),))] == 2
    assert metrics[("reconciler_runs_total", (("result", "invalid"),))] == 1
    assert metrics[("reconciler_run_duration_seconds_count", ())] == 3
    assert metrics[("reconciler_leader", ())] == 1
    day = metrics[("reconciler_quota_remaining", (("window", "day"),))]
    assert 0 < day < box.settings.daily_limit
    assert ("reconciler_quota_remaining", (("window", "second"),)) in metrics
    log = served.log()
    assert "released the leader lease" in log
    assert PUSH not in log and env["FLEET_API_PASSWORD"] not in log


@pytest.mark.slow
def test_an_exceeded_guard_is_reported_and_not_applied(tmp_path: Path, repo: Path) -> None:
    port = free_port()
    prepare(repo, port)
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = environment(box)
        with serving(repo, env, port, "--repo", str(repo), "--interval", "1h") as served:
            wait_until(lambda: runs(served, "applied"), what="the first commit applied")
            # every vehicle changes: past the examples' guard max_changed_vehicles 50%
            edit(repo / "manifests" / "schedules.yaml", 'start: "06:45"', 'start: "06:30"')
            commit(repo, "earlier shift for everyone")
            calls = served.value("reconciler_api_calls_total", kind="post_remote", result="202")
            httpx.post(served.url + "/hooks/push", headers={"X-Reconciler-Token": PUSH}, timeout=10)
            wait_until(lambda: runs(served, "blocked"), timeout=30, what="the guard reported")
            assert served.value("reconciler_api_calls_total", kind="post_remote", result="202") == calls
            left = changes_left(repo, box)
            assert left != []
            assert "max_changed_vehicles" in served.log()
            # one line per run: result, commit, duration, message and the plan's digest
            assert re.search(r"run blocked at commit [0-9a-f]{12} in [0-9.]+ s: .+ \(plan [0-9a-f]{12}\)", served.log())
            # the page shows the blocked plan for review, and its vehicles as OutOfSync
            page = Dom(httpx.get(served.url + "/", timeout=30).text)
            assert page.one("tr", data_run="0").attrs["data-result"] == "blocked"
            assert "06:30" in page.one("details", data_plan="0").text
            changing = {change["address"].split(".")[1] for change in left if change["address"].startswith("vehicle.")}
            assert page.count(id="fleet-OutOfSync") == len(changing) > 0
            assert served.stop() == 0


@pytest.mark.slow
def test_json_logs_parse_line_by_line_and_sigterm_finishes_the_run_and_releases_the_lease(repo: Path) -> None:
    port = free_port()
    prepare(repo, port)
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "RECONCILER_API_RATE_LIMIT": "20"}  # slow: the stop comes mid-run
        with serving(repo, env, port, "--log-format", "json") as served:  # no --repo: the config folder
            wait_until(lambda: served.value("reconciler_api_calls_total", kind="post_remote", result="202") >= 5)
            manual = run("apply", "--auto-approve", cwd=repo, env=env)  # the controller holds the writers' lock
            assert manual.returncode == 5, manual.stderr
            assert served.stop() == 0
    lines = [json.loads(line) for line in served.log().splitlines()]
    messages = [line["message"] for line in lines]
    assert any(line.get("leader") is True for line in lines)
    run_lines = [line for line in lines if "run_result" in line]
    assert len(run_lines) == 1 and run_lines[0]["run_result"] == "interrupted"
    assert run_lines[0]["calls"] >= 5 and run_lines[0]["plan_digest"].startswith("sha256:")
    assert "released the leader lease" in messages
    # what was sent was recorded: the next plan holds only what was not
    lease = repo / ".reconciler" / "state.json.lease"
    assert lease.read_text() == ""
    state = json.loads((repo / ".reconciler" / "state.json").read_text())
    assert state["serial"] >= 1
    assert not (repo / ".reconciler" / "state.json.lock").exists()


@pytest.mark.slow
def test_two_replicas_on_postgres_one_leads_and_the_other_takes_over_a_killed_leader(
    repo: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """kill -9 of the leader mid-apply: the follower takes the lease within two lease periods, finds the calls
    the leader journalled, and converges with one remote per vehicle and one callback."""
    from tests.commands import labels
    from tests.postgres import use_postgres

    monkeypatch.setenv("STATE_DSN", request.getfixturevalue("pg_dsn"))
    use_postgres(repo, request.getfixturevalue("pg_schema"))
    period = 3.0
    first_port, second_port = free_port(), free_port()
    prepare(repo, first_port)  # the API notifies the first replica (a load balancer would pick either)
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**environment(box), "RECONCILER_API_RATE_LIMIT": "10", "STATE_DSN": os.environ["STATE_DSN"]}
        options = ("--repo", str(repo), "--interval", "1s")
        with serving(repo, env, first_port, *options) as first:
            wait_until(lambda: first.value("reconciler_leader") == 1, what="the first replica leads")
            with serving(repo, env, second_port, *options) as second:
                wait_until(lambda: httpx.get(second.url + "/readyz", timeout=10).status_code == 200)
                assert second.value("reconciler_leader") == 0
                ready = httpx.get(second.url + "/readyz", timeout=10).json()
                assert ready["leader"] is False and ready["leader_pid"] == first.process.pid
                wait_until(lambda: first.value("reconciler_api_calls_total", kind="post_remote", result="202") >= 5)
                assert runs(second, "applied") == 0  # the follower neither plans nor applies
                first.process.kill()  # kill -9, mid-apply: its lease and its writers' lock are left behind
                killed = time.monotonic()
                first.process.wait()
                wait_until(lambda: second.value("reconciler_leader") == 1, timeout=2 * period)
                took = time.monotonic() - killed
                wait_until(lambda: runs(second, "applied"), what="the new leader converged")
                assert changes_left(repo, box) == []
                assert second.stop() == 0
        per_vin = remotes_by_vin(box)
        assert len(per_vin) == 30 and set(per_vin.values()) == {1}
        assert labels(box) == ["fleet-ops"]
    assert took < 2 * period
    assert "following the leader" in second.log() and "leading: this replica plans and applies" in second.log()


@pytest.mark.slow
def test_a_config_repo_that_cannot_be_fetched_makes_the_replica_not_ready_and_nothing_is_applied(repo: Path) -> None:
    port = free_port()
    prepare(repo, port)
    missing = repo.parent / "no-such-repo"
    with (
        sandbox(vehicles=40, asleep_rate=0.0) as box,
        serving(repo, environment(box), port, "--repo", str(missing), "--interval", "1h") as served,
    ):
        wait_until(lambda: runs(served, "error"), what="the failed fetch reported")
        ready = httpx.get(served.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["leader"] is True
        assert ready.json()["reason"].startswith("the config repo cannot be read: git fetch failed")
        assert httpx.get(served.url + "/healthz", timeout=10).status_code == 200  # alive: notifications go on
        assert box.inspect("remotes")["remotes"] == []
        assert "the config repo cannot be fetched: git fetch failed" in served.log()
        assert served.stop() == 0


@pytest.mark.slow
def test_a_token_in_the_repo_url_is_never_shown(repo: Path) -> None:
    port = free_port()
    prepare(repo, port)
    url = "http://deploy:tok-canary-6@127.0.0.1:9/fleet.git"
    with (
        sandbox(vehicles=40, asleep_rate=0.0) as box,
        serving(repo, environment(box), port, "--repo", url, "--interval", "1h") as served,
    ):
        wait_until(lambda: runs(served, "error"), what="the failed fetch reported")
        assert served.stop() == 0
    assert "following http://***@127.0.0.1:9/fleet.git (its default branch)" in served.stdout
    assert "tok-canary-6" not in served.stdout + served.log()


def controller_for(repo: Path, env: dict[str, str]) -> Any:
    from reconciler.controller.leader import Leadership
    from reconciler.controller.loop import Controller
    from reconciler.controller.metrics import Metrics
    from reconciler.operations import open_workspace

    workspace = open_workspace(repo / "reconciler.yaml", env)
    return Controller(workspace, env, Leadership(workspace.backend, 30), Metrics())


@pytest.mark.slow
def test_invalid_manifests_of_the_config_folder_are_reported_and_not_applied(repo: Path) -> None:
    edit(repo / "manifests" / "schedules.yaml", 'start: "13:30"', 'start: "25:99"')
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        controller = controller_for(repo, {**os.environ, **environment(box)})
        found = controller.run_once()
        assert found.result == "invalid" and "the manifests are invalid and not applied" in found.message
        assert "schedules.yaml:" in found.message
        assert box.inspect("remotes")["remotes"] == []


@pytest.mark.slow
def test_a_replica_that_loses_the_lease_stops_its_run(repo: Path) -> None:
    import threading

    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**os.environ, **environment(box), "RECONCILER_API_RATE_LIMIT": "10"}
        controller = controller_for(repo, env)
        done: list[Any] = []
        worker = threading.Thread(target=lambda: done.append(controller.run_once()))
        worker.start()
        wait_until(lambda: len(box.inspect("remotes")["remotes"]) >= 3, timeout=30)
        controller.leadership_changed(False)  # another replica took the lease
        worker.join(30)
        assert not worker.is_alive()
        (found,) = done
        assert found.result == "interrupted" and 3 <= found.calls < 31
        assert len(box.inspect("remotes")["remotes"]) == found.calls - 1  # the callback, then remotes


def test_a_push_secret_set_to_nothing_is_refused_not_open_to_anyone(repo: Path) -> None:
    port = free_port()
    prepare(repo, port)  # serve.push_secret: ${env:PUSH_SECRET}
    env = {**SECRETS, "PUSH_SECRET": ""}
    started = run("serve", "--listen", f"127.0.0.1:{port}", "--interval", "1h", cwd=repo, env=env)
    assert started.returncode == 7, started.stdout + started.stderr
    assert "serve.push_secret '${env:PUSH_SECRET}' is empty" in started.stderr
    assert "Serving on" not in started.stdout and "Traceback" not in started.stderr


@pytest.mark.parametrize("interval", ["100000000h", "0s", "soon"])
def test_an_interval_out_of_range_is_a_usage_error_not_a_stalled_controller(repo: Path, interval: str) -> None:
    started = run("serve", "--listen", "127.0.0.1:1", "--interval", interval, cwd=repo, env=SECRETS)
    assert started.returncode == 64, started.stdout + started.stderr
    assert "a duration from 1s to 24h" in started.stderr and "Traceback" not in started.stderr


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd"])
def test_a_commit_linking_out_of_the_repository_is_refused_as_invalid(tmp_path: Path, repo: Path, target: str) -> None:
    good = prepare(repo, free_port())
    env = {**SECRETS, "PUSH_SECRET": PUSH}
    workspace = open_workspace(repo / "reconciler.yaml", env)
    source = GitSource(str(repo), "main", tmp_path / "work")
    controller = Controller(workspace, env, Leadership(workspace.backend, 30), Metrics(), source)
    controller.commit = good  # the last valid commit, in force
    (repo / "manifests" / "passwd.yaml").symlink_to(target)
    bad = commit(repo, "a manifest that is a link out of the repository")
    refused = controller.run_once()
    assert refused.result == "invalid" and refused.commit == bad
    assert f"commit {bad[:12]} cannot be extracted" in refused.message
    assert f"commit {good[:12]} stays in force" in refused.message
    assert controller.refused == bad and controller.commit == good


def test_a_stop_ends_a_fetch_from_a_server_that_never_answers(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # connections are taken by the kernel and never answered
    try:
        source = GitSource(f"http://127.0.0.1:{silent.getsockname()[1]}/fleet.git", "main", tmp_path / "work")
        threading.Timer(0.5, source.stop.set).start()
        started = time.monotonic()
        with pytest.raises(RepoError, match="git fetch was ended: serve is stopping"):
            source.fetch()
        assert time.monotonic() - started < 5  # not GIT_TIMEOUT
    finally:
        silent.close()


def test_a_leader_is_not_ready_before_its_first_fetch_of_the_config_repo(tmp_path: Path, repo: Path) -> None:
    prepare(repo, free_port())
    with sandbox(vehicles=40, asleep_rate=0.0) as box:
        env = {**SECRETS, **environment(box), "PUSH_SECRET": PUSH}
        workspace = open_workspace(repo / "reconciler.yaml", env)
        leadership = Leadership(workspace.backend, 30)
        leadership.claim()
        source = GitSource(str(repo), "main", tmp_path / "w")
        controller = Controller(workspace, env, leadership, Metrics(), source)
        assert controller.ready == "the config repo has not been fetched yet"
        assert controller.run_once().result == "applied"
        assert controller.ready is None
        leadership.release()


def test_a_push_secret_written_in_utf8_matches_the_bytes_sent() -> None:
    woken = threading.Event()
    controller = cast(Controller, SimpleNamespace(wake=woken))
    with serve_app(Starlette(routes=[push_route(controller, "sécret-ü")])) as root:
        sent = {"X-Reconciler-Token": "sécret-ü".encode()}  # a header carries bytes: UTF-8 here
        assert httpx.post(root + "/hooks/push", headers=sent, timeout=10).status_code == 202
        assert woken.is_set()
        latin = {"X-Reconciler-Token": "sécret-ü".encode("latin-1")}
        assert httpx.post(root + "/hooks/push", headers=latin, timeout=10).status_code == 401
