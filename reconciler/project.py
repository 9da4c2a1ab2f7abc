"""What commands share: settings, desired model and recorded state loaded together, and plan files."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.config import Settings, load_settings
from reconciler.diagnostics import Diagnostic
from reconciler.errors import ExitCode, PlanError, ReconcilerError, StateError
from reconciler.manifests import load_desired
from reconciler.model import Desired
from reconciler.plan import Plan, canonical_json
from reconciler.planner import PlanOptions, Selector, make_plan
from reconciler.state.backend import StateBackend, utcnow
from reconciler.state.events import fold_events
from reconciler.state.journal import fold
from reconciler.state.lock import Lease
from reconciler.state.model import State
from reconciler.state.open import open_backend

if TYPE_CHECKING:  # the API client and httpx load only for the commands that call the API
    import httpx

    from reconciler.api.client import ApiConfig, FleetClient, RetryPolicy
    from reconciler.apply import ApplyReport, Progress
    from reconciler.refresh import Drift


@dataclass(frozen=True, slots=True)
class Project:
    settings: Settings
    fleet: str
    backend: StateBackend
    warnings: tuple[Diagnostic, ...] = ()

    def plan_options(
        self,
        targets: tuple[str, ...],
        excludes: tuple[str, ...],
        *,
        retry_failed: bool = False,
        takeover: bool = False,
        now: datetime | None = None,
    ) -> PlanOptions:
        """The planner's options from the settings and the command line (selectors checked here)."""
        return PlanOptions(
            now=now or utcnow(),
            pending_timeout=self.settings.pending_timeout,
            retry_failed=retry_failed,
            takeover=takeover,
            targets=tuple(Selector.parse(t) for t in targets),
            excludes=tuple(Selector.parse(e) for e in excludes),
            guards=self.settings.guards,
        )

    def load_state(self, *, pending: bool = False) -> State | None:
        """The saved state; with `pending`, also what the journal and the events file hold that it does not
        (in memory only: a reader's view of the latest outcomes)."""
        state = self.backend.load()
        if state is not None and pending:
            fold(state, self.backend.read_journal())
            fold_events(state, self.backend.read_events())
        if state is not None and state.fleet != self.fleet:
            assert self.settings.fleet is not None
            raise StateError(
                f"state {self.backend.name} belongs to fleet {state.fleet}, not {self.fleet} "
                f"(fleet set at {self.settings.fleet.source})"
            )
        return state


def open_project(config: Path, environ: Mapping[str, str]) -> Project:
    settings = load_settings(config, environ)
    fleet = settings.require(settings.fleet, "fleet")
    return Project(settings, fleet, open_backend(settings), settings.diagnostics)


def plan_project(
    project: Project,
    environ: Mapping[str, str],
    *,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    retry_failed: bool = False,
    takeover: bool = False,
    now: datetime | None = None,
) -> tuple[Plan, Desired, State | None, tuple[Diagnostic, ...]]:
    """Validate the manifests (secrets needed: they are fingerprinted), load the state, and plan."""
    desired, warnings = load_desired(project.settings.manifests, environ, strict=True)
    state = project.load_state(pending=True)
    options = project.plan_options(targets, excludes, retry_failed=retry_failed, takeover=takeover, now=now)
    plan = make_plan(desired, state, project.fleet, options)
    # unset API credentials matter to apply, not to a plan (which a pull request from a fork may run)
    relevant = tuple(d for d in project.warnings if d.rule != "env-missing")
    return plan, desired, state, (*relevant, *warnings)


def write_plan(plan: Plan, path: Path) -> None:
    """Save a plan file atomically: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_text(canonical_json(plan.to_dict()) + "\n", encoding="utf-8")
    os.replace(temp, path)


def read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanError(f"{path} is not a reconciler plan file ({error})") from error
    return Plan.from_dict(data, str(path))


def api_config(project: Project, parallelism: int | None = None) -> ApiConfig:
    """The API settings apply needs; ConfigError naming each missing one (and the variable it names)."""
    from reconciler.api.client import ApiConfig

    settings = project.settings
    api = settings.api
    optional = {
        name: settings.path(value, f"api.{name}").as_posix() if value is not None else None
        for name, value in (
            ("client_cert", api.client_cert),
            ("client_key", api.client_key),
            ("ca_bundle", api.ca_bundle),
        )
    }
    return ApiConfig(
        url=settings.require(api.url, "api.url"),
        client_id=settings.require(api.client_id, "api.client_id"),
        username=settings.require(api.username, "api.username"),
        password=settings.require(api.password, "api.password"),
        rate_limit=api.rate_limit,
        parallelism=parallelism or api.parallelism,
        timeout=api.timeout,
        **optional,
    )


@dataclass
class ApplyRun:
    """What `apply` did, for the CLI to render."""

    plan: Plan
    report: ApplyReport | None = None
    leftovers: list[str] = field(default_factory=list)
    recovered: int = 0
    waited: bool = False

    @property
    def exit_code(self) -> ExitCode:
        report = self.report
        if report is None:
            return ExitCode.OK
        if report.interrupted:
            return ExitCode.INTERRUPTED
        if report.failed or report.causes:
            return ExitCode.PARTIAL
        if self.leftovers:
            return ExitCode.ERROR
        return ExitCode.OK


def writer_state(project: Project, client: FleetClient) -> tuple[State, int]:
    """The state as a writer (holding the lock) starts from: what an earlier run journalled and what the
    receiver recorded are folded in and saved first. Also how many journal entries were folded."""
    from reconciler.apply import recover

    state = project.load_state() or State.new(project.fleet)
    recovered = recover(state, project.backend, client)
    events = project.backend.read_events()
    changed, unknown = fold_events(state, events)
    if recovered or changed:
        state.serial = project.backend.save(state, state.serial or None)
        project.backend.clear_journal()
    if len(unknown) < len(events):
        # events for remote actions the state does not know are kept, flagged, for `status` to show
        strangers = set(unknown)
        kept = [{**e, "unmatched": True} for e in events if str(e.get("remoteActionId")) in strangers]
        project.backend.append_events(kept)  # before the clear: a crash in between duplicates, never loses
        project.backend.clear_events(len(events))
    return state, recovered


def refresh_project(
    project: Project, environ: Mapping[str, str], transport: httpx.BaseTransport | None = None
) -> list[Drift]:
    """Read back the live API, record what is there, and return the drift found."""
    from reconciler.api.client import FleetClient
    from reconciler.refresh import refresh

    config = api_config(project)
    desired, _ = load_desired(project.settings.manifests, environ, strict=True)
    with FleetClient(config, project.fleet, transport=transport) as client, Lease(project.backend, "refresh"):
        state, _ = writer_state(project, client)
        if not state.serial:
            return []  # nothing recorded yet: nothing can have drifted
        drift = refresh(state, desired, client, config.parallelism)
        state.serial = project.backend.save(state, state.serial)
    return drift


def import_project(
    project: Project,
    environ: Mapping[str, str],
    what: str,
    *,
    name: str | None = None,
    callback_id: str | None = None,
    vins: tuple[str, ...] = (),
    transport: httpx.BaseTransport | None = None,
) -> list[str]:
    """Adopt what already exists (`what`: callback, callbacks or vehicles); lines saying what was recorded."""
    from reconciler.adopt import adopt_callback, adopt_callbacks, adopt_vehicles
    from reconciler.api.client import FleetClient

    config = api_config(project)
    desired, _ = load_desired(project.settings.manifests, environ, strict=True)
    with FleetClient(config, project.fleet, transport=transport) as client, Lease(project.backend, f"import {what}"):
        state, _ = writer_state(project, client)
        loaded = state.serial or None
        if what == "callback":
            assert name is not None and callback_id is not None
            live = client.callback(callback_id)
            adopt_callback(state, desired, name, live)
            lines = [f"callback.{name}: adopted {callback_id}"]
        elif what == "callbacks":
            lines = [f"callback.{adopted}: adopted" for adopted in adopt_callbacks(state, desired, client)]
        else:
            counts = adopt_vehicles(state, desired, client, vins)
            lines = [f"vehicle.{vin}: {count} slots recorded" for vin, count in counts.items()]
        state.serial = project.backend.save(state, loaded)
    return lines


def write_live_manifests(project: Project, folder: Path, transport: httpx.BaseTransport | None = None) -> list[str]:
    """Manifests describing the live fleet (reads the API only; needs neither manifests nor state)."""
    from reconciler.api.client import FleetClient
    from reconciler.dump import write_manifests

    with FleetClient(api_config(project), project.fleet, transport=transport) as client:
        return write_manifests(client, folder)


def apply_project(
    project: Project,
    environ: Mapping[str, str],
    *,
    plan_file: Path | None = None,
    allow: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    retry_failed: bool = False,
    takeover: bool = False,
    parallelism: int | None = None,
    wait: float | None = None,
    show: Callable[[Plan], None] = lambda plan: None,
    confirm: Callable[[Plan], bool] = lambda plan: True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> ApplyRun:
    """Plan (or load a saved plan), check guards, confirm, apply, wait for outcomes, and check convergence."""
    from reconciler.api.client import FleetClient, RetryPolicy
    from reconciler.apply import Applier, changes_left, stale_reason

    config = api_config(project, parallelism)
    desired, _ = load_desired(project.settings.manifests, environ, strict=True)
    stop = stop or threading.Event()
    with (
        FleetClient(config, project.fleet, transport=transport, retry=retry or RetryPolicy()) as client,
        Lease(project.backend, "apply"),
    ):
        state, recovered = writer_state(project, client)
        options = project.plan_options(targets, excludes, retry_failed=retry_failed, takeover=takeover)
        if plan_file is not None:
            plan = read_plan(plan_file)
            reason = stale_reason(plan, state, desired)
            if reason:
                raise StateError(f"the saved plan {plan_file} is stale: {reason}. Make a new plan; nothing was applied")
        else:
            plan = make_plan(desired, state if state.serial else None, project.fleet, options)
        run = ApplyRun(plan, recovered=recovered)
        show(plan)
        if not plan.has_changes:
            return run
        plan.check_guards(allow)
        if not confirm(plan):
            raise ReconcilerError("apply cancelled; nothing was changed")
        applier = Applier(
            plan, desired, state, project.backend, client, parallelism=config.parallelism, progress=progress, stop=stop
        )
        run.report = applier.run()
        if wait is not None and not stop.is_set():
            applier.wait_for_outcomes(wait)
            run.waited = True
        run.report.interrupted = stop.is_set()
        again = make_plan(desired, state, project.fleet, replace(options, targets=(), excludes=()))
        if not options.targets and not options.excludes and plan_file is None:
            run.leftovers = changes_left(again, run.report)
        return run
