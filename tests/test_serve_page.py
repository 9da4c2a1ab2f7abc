"""The status page and the health metrics of `reconciler serve`: built from the recorded state (health, holds,
failures), the controller's runs and their plans, the leadership; served at `/` (in process, then by a real
serve subprocess against the sandbox, read by a real headless Chromium), and the new user's demo script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from reconciler.clock import isotime
from reconciler.controller.leader import Leadership
from reconciler.controller.loop import Controller
from reconciler.controller.loop import Run as ControllerRun
from reconciler.controller.metrics import Metrics
from reconciler.controller.page import CHART_POINTS, StatusPage, plan_text
from reconciler.controller.serve import controller_routes
from reconciler.manifests import load_desired
from reconciler.operations import Workspace, open_workspace
from reconciler.planner import make_plan
from reconciler.render.page import StatusView, render_page
from reconciler.state.file import FileBackend
from reconciler.state.model import Hold, Outcome
from reconciler.state.record import record_outcome
from tests.browser import Dom, browse, chromium_path
from tests.commands import EXAMPLES_FLEET, SECRETS, desired_programs, environment, measured, record_converged
from tests.files import REPO, copy_examples, edit
from tests.servers import Sandbox, sandbox, serve_app
from tests.serving import PUSH, commit, free_port, prepare, runs, serving, wait_until

MONTHLY, DENIED = "TooManyWakeUpsOverMonth", "MissingRights"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def held_and_failed(repo: Path) -> tuple[FileBackend, str, str, int]:
    """The examples recorded as applied; one vehicle out of wake-ups for the month, one failed for good."""
    backend = record_converged(repo)
    state = backend.load()
    assert state is not None
    vins = sorted(vin for vin, slots in state.slots.items() if slots)
    held, failed = vins[0], vins[1]
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    state.holds[held] = Hold(isotime(until), MONTHLY, 1)
    action = next(iter(state.slots[failed].values())).action
    assert action is not None
    assert record_outcome(state, action, Outcome.FAILED, status="Failed", cause=DENIED)
    state.holds.pop(failed, None)  # a permanent cause holds nothing: it waits for --retry-failed
    backend.save(state, state.serial)
    return backend, held, failed, len(vins)


def page_of(repo: Path, *, leading: bool = True) -> tuple[Controller, StatusPage, Metrics]:
    env = {**os.environ, **SECRETS}
    workspace = open_workspace(repo / "reconciler.yaml", env)
    leadership = Leadership(workspace.backend, 30)
    if leading:
        leadership.claim()
    metrics = Metrics()
    controller = Controller(workspace, env, leadership, metrics)
    return controller, StatusPage(controller, metrics), metrics


def test_the_page_shows_the_recorded_health_holds_failures_and_the_leader(repo: Path) -> None:
    _, held, failed, vehicles = held_and_failed(repo)
    _, page, _ = page_of(repo)
    with serve_app(Starlette(routes=controller_routes(page.controller, page.metrics, None, page))) as root:
        answer = httpx.get(root + "/", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    dom = Dom(answer.text)
    assert dom.one("h1", id="fleet").attrs["data-fleet"] == EXAMPLES_FLEET
    assert dom.count(id="fleet-Healthy") == vehicles - 2
    assert (dom.count(id="fleet-Held"), dom.count(id="fleet-Degraded"), dom.count(id="fleet-Unknown")) == (1, 1, 0)
    # per group of the manifests: each group's members, every one counted once
    desired, _ = load_desired([repo / "manifests"], SECRETS)
    for name, members in desired.groups.items():
        shown = sum(int(c.text.replace(",", "")) for c in dom.find("td", data_group=name, data_health=None))
        assert shown == len(set(members)), name
    assert dom.count(id="held-total") == 1
    row = dom.one("tr", data_vin=held)
    assert MONTHLY in row.text
    failure = dom.one("tr", data_cause=DENIED)
    assert failure.children[1].text == "1" and failed in failure.text
    assert dom.one("span", id="leader").attrs["data-leading"] == "true"
    assert "No run yet." in answer.text
    for secret in SECRETS.values():
        assert secret not in answer.text


def test_the_health_metrics_count_vehicles_by_health_and_the_holds_in_force(repo: Path) -> None:
    backend, _, _, vehicles = held_and_failed(repo)
    _, page, metrics = page_of(repo)
    found = scrape(metrics)
    assert found[("reconciler_vehicles", (("health", "Healthy"),))] == vehicles - 2
    assert found[("reconciler_vehicles", (("health", "Held"),))] == 1
    assert found[("reconciler_vehicles", (("health", "Degraded"),))] == 1
    assert found[("reconciler_vehicles", (("health", "Progressing"),))] == 0
    assert found[("reconciler_vehicles", (("health", "Unknown"),))] == 0
    assert found[("reconciler_held_vehicles", ())] == 1
    # a hold that has ended counts no more, once the reading is renewed
    state = backend.load()
    assert state is not None
    state.holds = {
        vin: Hold(isotime(datetime.now(UTC) - timedelta(minutes=1)), h.cause) for vin, h in state.holds.items()
    }
    backend.save(state, state.serial)
    page.reading(fresh=True)
    found = scrape(metrics)
    assert found[("reconciler_held_vehicles", ())] == 0
    assert found[("reconciler_vehicles", (("health", "Healthy"),))] == vehicles - 1


def test_an_unreadable_state_leaves_the_health_metrics_out_and_the_page_says_so(repo: Path) -> None:
    (repo / ".reconciler").mkdir(exist_ok=True)
    (repo / ".reconciler" / "state.json").write_text("{ not json")
    _, page, metrics = page_of(repo, leading=False)
    found = scrape(metrics)
    assert not any(name == "reconciler_vehicles" for name, _ in found)
    with serve_app(Starlette(routes=controller_routes(page.controller, metrics, None, page))) as root:
        answer = httpx.get(root + "/", timeout=30)
    assert answer.status_code == 503 and "the state cannot be read now" in answer.text
    assert "Traceback" not in answer.text


def test_each_run_shows_with_its_plan_as_text_and_adds_a_point_to_the_chart(repo: Path) -> None:
    record_converged(repo)
    controller, page, _ = page_of(repo)
    edit(repo / "manifests" / "schedules.yaml", 'start: "06:45"', 'start: "06:50"')
    desired, _ = load_desired([repo / "manifests"], SECRETS)
    state = controller.workspace.load_state()
    plan = make_plan(desired, state, EXAMPLES_FLEET, controller.workspace.plan_options((), ()))
    assert plan.has_changes
    commit = "c0ffee" * 6 + "abcd"
    run = ControllerRun(isotime(datetime.now(UTC)), "blocked", "guard exceeded", 0.4, commit, plan.digest, 3)
    controller._record(run, plan, controller.workspace)
    dom = Dom(render_page(page.view()))
    row = dom.one("tr", data_run="0")
    assert (row.attrs["data-commit"], row.attrs["data-result"]) == (commit[:7], "blocked")
    shown = dom.one("details", data_plan="0").text
    assert "06:50" in shown and "\x1b[" not in shown
    assert int(dom.one("td", data_count="updated").text) == plan.summary().vehicles > 0
    # the vehicles the plan changes are OutOfSync until a run applies it
    assert dom.count(id="fleet-OutOfSync") == len(plan.vins())
    assert dom.one("p", id="last-error").text.startswith("the last run ended blocked: guard exceeded")
    assert dom.one("svg", id="convergence-chart").attrs["data-points"] == "1"
    # bounded: the chart keeps its last CHART_POINTS points, however many runs
    for _ in range(CHART_POINTS + 5):
        controller._record(run, None, None)
    assert len(page.points) == CHART_POINTS and len(page.runs) <= 50


def test_a_plan_too_long_for_the_page_is_kept_cut_at_a_line_saying_how_much_is_left(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired, _ = load_desired([repo / "manifests"], SECRETS)
    plan = make_plan(
        desired, None, EXAMPLES_FLEET, open_workspace(repo / "reconciler.yaml", SECRETS).plan_options((), ())
    )
    whole = plan_text(plan)
    monkeypatch.setattr("reconciler.controller.page.PLAN_KEPT", 300)
    cut = plan_text(plan)
    kept, note = cut.rsplit("\n", 1)
    assert whole.startswith(kept + "\n") and len(kept) <= 300
    assert note == f"… {len(whole) - len(kept):,} more characters (the whole plan: reconciler plan)"


# ---- end to end: serve against the sandbox, read by Chromium ------------------------------------------------


def fail(box: Sandbox, vin: str, cause: str | None) -> None:
    httpx.put(f"{box.root}/_sandbox/vehicles/{vin}", json={"fails_with": cause}, timeout=10).raise_for_status()


def shown(url: str) -> Dom:
    return Dom(httpx.get(url, timeout=30).text)


@pytest.mark.slow
def test_serve_shows_the_fleet_converging_a_held_vehicle_and_each_applied_commit(
    any_repo: Path, chromium: str, tmp_path: Path
) -> None:
    repo, port = any_repo, free_port()
    first = prepare(repo, port)
    vins = sorted(desired_programs(repo))
    out_of_wakeups = vins[0]
    with sandbox(vehicles=40, asleep_rate=0.0, offline_rate=0.0, speed=50.0) as box:
        fail(box, out_of_wakeups, MONTHLY)
        options = ("--repo", str(repo), "--branch", "main", "--interval", "1h")
        with serving(repo, environment(box), port, *options) as served:
            page = served.url + "/"

            def converged() -> bool:
                dom = shown(page)
                return dom.count(id="fleet-Healthy") == len(vins) - 1 and dom.count(id="fleet-Held") == 1

            wait_until(converged, timeout=90, what="the fleet converged but one vehicle, held")
            dom = Dom(browse(chromium, tmp_path / "profile", "--dump-dom", page))
            assert dom.count(id="fleet-Healthy") == len(vins) - 1
            assert (dom.count(id="fleet-Held"), dom.count(id="fleet-Degraded")) == (1, 0)
            assert dom.count(id="fleet-Progressing") == 0
            assert dom.count(id="held-total") == 1
            assert MONTHLY in dom.one("tr", data_vin=out_of_wakeups).text
            (run,) = dom.find("tr", data_run=None)
            assert (run.attrs["data-commit"], run.attrs["data-result"]) == (first[:7], "applied")
            assert "fleet" in run.text  # the commit's subject
            assert "+ " in dom.one("details", data_plan="0").text  # the plan as text: what was created
            assert dom.one("span", id="leader").attrs["data-leading"] == "true"
            assert int(dom.one("svg", id="convergence-chart").attrs["data-points"]) >= 2

            # smaller batches of notifications, pushed: a second run applies them
            edit(repo / "manifests" / "callbacks.yaml", "size: 10", "size: 5")
            second = commit(repo, "smaller batches of notifications")
            pushed = httpx.post(served.url + "/hooks/push", headers={"X-Reconciler-Token": PUSH}, timeout=10)
            assert pushed.status_code == 202
            wait_until(lambda: runs(served, "applied") == 2, timeout=60, what="the pushed commit applied")
            dom = Dom(browse(chromium, tmp_path / "profile", "--dump-dom", page))
            latest, earlier = dom.find("tr", data_run=None)
            assert (latest.attrs["data-commit"], latest.attrs["data-result"]) == (second[:7], "applied")
            assert "smaller batches of notifications" in latest.text
            (updated,) = (cell for cell in latest.children if cell.attrs.get("data-count") == "updated")
            assert updated.text == "1"  # the callback
            assert "fleet-ops" in dom.one("details", data_plan="0").text
            assert earlier.attrs["data-commit"] == first[:7]
            shot = tmp_path / "serve-page.png"
            browse(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1800", page)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
            for secret in (PUSH, box.settings.password):
                assert secret not in httpx.get(page, timeout=30).text
            assert served.stop() == 0


# ---- the new user's demo ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_serve_demo_shows_the_fleet_converging_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    examples = copy_examples(tmp_path / "examples")
    sandbox_port, serve_port = free_port(), free_port()
    edit(examples / "manifests" / "callbacks.yaml", "http://127.0.0.1:8081", f"http://127.0.0.1:{serve_port}")
    (examples / ".reconciler").mkdir()
    (examples / ".reconciler" / "state.json").write_text("{ an earlier demo's state")  # the demo starts over
    env = measured(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "RECONCILER": f"{sys.executable} -m reconciler",
            "PYTHONPATH": str(REPO),
            "SANDBOX_PORT": str(sandbox_port),
            "SERVE_PORT": str(serve_port),
        }
    )
    demo = subprocess.Popen(
        ["bash", str(examples / "demo-serve.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its group is killed if it hangs
    )
    page = f"http://127.0.0.1:{serve_port}/"
    try:

        def converged() -> bool:
            try:
                return shown(page).count(id="fleet-Healthy") == 30
            except httpx.TransportError:  # not serving yet
                return False

        wait_until(converged, timeout=90, what="the demo's fleet converged")
        dom = shown(page)
        assert dom.one("tr", data_run="0").attrs["data-result"] == "applied"
        assert dom.count(id="fleet-OutOfSync") == 0
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()
    assert demo.returncode == 0, out + err
    assert f"Status page: http://127.0.0.1:{serve_port}/" in out
    assert "released the leader lease" in err and "Traceback" not in err
    for port in (sandbox_port, serve_port):  # both stopped
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_a_scrape_reading_the_state_does_not_hold_up_the_other_requests(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    record_converged(repo)
    controller, page, metrics = page_of(repo)
    release, reading = threading.Event(), threading.Event()
    load = Workspace.load_state

    def slow_load(workspace: Workspace, **options: bool) -> object:
        reading.set()
        release.wait(30)
        return load(workspace, **options)

    monkeypatch.setattr(Workspace, "load_state", slow_load)
    with serve_app(Starlette(routes=controller_routes(controller, metrics, None, page))) as root:
        scraped: list[httpx.Response] = []
        scraper = threading.Thread(target=lambda: scraped.append(httpx.get(root + "/metrics", timeout=60)))
        scraper.start()
        assert reading.wait(10)
        try:
            # the scrape is reading the state: /readyz answers meanwhile
            assert httpx.get(root + "/readyz", timeout=10).status_code == 200
        finally:
            release.set()
            scraper.join(60)
    assert scraped[0].status_code == 200 and "reconciler_held_vehicles 0.0" in scraped[0].text


def test_viewers_share_one_page_built_once_a_reading_and_a_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_converged(repo)
    controller, page, _ = page_of(repo)
    built: list[StatusView] = []
    view = page.view
    monkeypatch.setattr(page, "view", lambda: built.append(view()) or built[-1])
    first = page.html()
    assert all(page.html() is first for _ in range(20)) and len(built) == 1  # twenty viewers, one build
    controller._record(ControllerRun(isotime(datetime.now(UTC)), "synced", "nothing to do", 0.1), None, None)
    assert page.html() is not first and len(built) == 2  # a run: built again, once
