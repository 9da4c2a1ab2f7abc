"""The operations commands run (plan, apply, refresh, import, dump) on a workspace: a config repo's settings,
fleet and state backend opened together. The layer between the command line and the core, like octoDNS's
Manager: it loads, locks, calls the core and the API client, and saves; it prints nothing.

Longer than most modules, on purpose: every use case opens, locks and saves the state the same way, and one
module keeps that sequence in one place (commands differ only in the core function they call between)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.atomic import read_json_file
from reconciler.clock import isotime, utcnow
from reconciler.config import Settings, load_settings
from reconciler.diagnostics import Diagnostic
from reconciler.envsubst import EnvValue
from reconciler.errors import ApiUnavailableError, ConfigError, ExitCode, ReconcilerError, StateError
from reconciler.manifests import load_desired
from reconciler.model import Desired
from reconciler.plan import Plan, canonical_json, read_plan_file
from reconciler.planner import PlanOptions, make_plan
from reconciler.selectors import Selector
from reconciler.state.backend import StateBackend
from reconciler.state.events import fold_events, set_aside
from reconciler.state.journal import fold
from reconciler.state.lock import Lease
from reconciler.state.model import State
from reconciler.state.open import open_backend
from reconciler.words import plural

if TYPE_CHECKING:  # the API client and httpx load only for the commands that call the API
    import httpx

    from reconciler.api.client import ApiConfig, FleetClient, RetryPolicy
    from reconciler.apply import ApplyReport, Progress
    from reconciler.live import Refreshed


@dataclass(frozen=True, slots=True)
class Workspace:
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
            fingerprint_key=self.fingerprint_key,
            zone=self.settings.zone,
        )

    @property
    def fingerprint_key(self) -> str | None:
        """The key of secret fingerprints when `state.fingerprint_key` is set (else the state's own salt)."""
        key = self.settings.state.fingerprint_key
        return self.settings.require(key, "state.fingerprint_key") if key is not None else None

    def load_state(self, *, pending: bool = False) -> State | None:
        """The saved state; with `pending`, also what the journal and the events file hold that it does not
        (in memory only: a reader's view of the latest outcomes). A first run still going, or killed before its
        first save, has a journal and no state yet: its calls are then all there is to show."""
        state = self.backend.load()
        if pending:
            journal = self.backend.read_journal()
            if state is None and journal:
                state = State.new(self.fleet)
            if state is not None:
                fold(state, journal, "the journal")
                fold_events(state, self.backend.read_events(), self.settings.zone)
        if state is not None and state.fleet != self.fleet:
            assert self.settings.fleet is not None
            raise StateError(
                f"state {self.backend.name} belongs to fleet {state.fleet}, not {self.fleet} "
                f"(fleet set at {self.settings.fleet.source})"
            )
        return state


def open_workspace(config: Path, environ: Mapping[str, str]) -> Workspace:
    settings = load_settings(config, environ)
    fleet = settings.require(settings.fleet, "fleet")
    state = settings.state
    if state.backend == "postgres":
        dsn = settings.require(state.dsn, "state.dsn")
        backend = open_backend("postgres", fleet, dsn=dsn, schema=state.schema)
    else:
        path = settings.path(state.path, "state.path") if state.path is not None else None
        backend = open_backend(state.backend, fleet, path=path)
    return Workspace(settings, fleet, backend, settings.diagnostics)


def plan_changes(
    workspace: Workspace,
    environ: Mapping[str, str],
    *,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    retry_failed: bool = False,
    takeover: bool = False,
    now: datetime | None = None,
) -> tuple[Plan, Desired, State | None, tuple[Diagnostic, ...]]:
    """Validate the manifests (secrets needed: they are fingerprinted), load the state, and plan."""
    desired, warnings = load_desired(workspace.settings.manifests, environ, strict=True)
    state = workspace.load_state(pending=True)
    options = workspace.plan_options(targets, excludes, retry_failed=retry_failed, takeover=takeover, now=now)
    plan = make_plan(desired, state, workspace.fleet, options)
    # unset API credentials matter to apply, not to a plan (which a pull request from a fork may run)
    relevant = tuple(d for d in workspace.warnings if d.rule != "env-missing")
    return plan, desired, state, (*relevant, *warnings)


def api_config(workspace: Workspace, parallelism: int | None = None) -> ApiConfig:
    """The API settings the commands that call the API need; one ConfigError naming every missing one (and
    the variables they name) at once."""
    from reconciler.api.client import ApiConfig

    settings = workspace.settings
    api = settings.api
    missing: list[Diagnostic] = []

    def need(value: EnvValue | None, what: str) -> str:
        try:
            return settings.require(value, what)
        except ConfigError as error:
            missing.extend(error.diagnostics)
            return ""

    def path(value: EnvValue | None, what: str) -> str | None:
        return (settings.root / need(value, what)).as_posix() if value is not None else None

    config = ApiConfig(
        url=need(api.url, "api.url"),
        client_id=need(api.client_id, "api.client_id"),
        username=need(api.username, "api.username"),
        password=need(api.password, "api.password"),
        client_cert=path(api.client_cert, "api.client_cert"),
        client_key=path(api.client_key, "api.client_key"),
        ca_bundle=path(api.ca_bundle, "api.ca_bundle"),
        rate_limit=api.rate_limit,
        parallelism=parallelism or api.parallelism,
        timeout=api.timeout,
        max_retry_wait=api.max_retry_wait,
        daily_budget=api.daily_budget,
    )
    if missing:
        raise ConfigError(missing)
    return config


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


def writer_state(
    workspace: Workspace, client: FleetClient, lease: Lease, *, save_events: bool = True
) -> tuple[State, int]:
    """The state as a writer (holding the lock) starts from: what an earlier run journalled and what the
    receiver recorded are folded in and saved first. Also how many journal entries were folded.

    Without `save_events` (refresh: a drift check must not move the serial that saved plans are bound to),
    events are folded in memory only and stay in the events file for the next writer.
    """
    from reconciler.recovery import recover

    state = workspace.load_state() or State.new(workspace.fleet)
    recovered = recover(state, workspace.backend, client)
    events = workspace.backend.read_events()
    changed, _ = fold_events(state, events, workspace.settings.zone)
    if recovered or (changed and save_events):
        state.serial = workspace.backend.save(state, state.serial or None, lock=lease.id)
        workspace.backend.clear_journal()
    if save_events:
        # what folding ignored (unknown remote actions, other callbacks, malformed) is kept, flagged with why,
        # for `status` to show; the rest is in the saved state now
        kept = set_aside(state, events)
        if len(kept) < len(events):
            workspace.backend.replace_events(len(events), kept)
    return state, recovered


def refresh_fleet(
    workspace: Workspace,
    environ: Mapping[str, str],
    transport: httpx.BaseTransport | None = None,
    stop: threading.Event | None = None,
) -> Refreshed:
    """Read back the live API, record what changed, and return the drift found and what could not be read.
    Nothing is written when nothing changed (saved plans stay valid)."""
    from reconciler.api.client import FleetClient
    from reconciler.live import Refreshed, refresh

    config = api_config(workspace)
    desired, _ = load_desired(workspace.settings.manifests, environ, strict=True)
    stop = stop or threading.Event()
    with (
        FleetClient(config, workspace.fleet, transport=transport, stop=stop) as client,
        Lease(workspace.backend, "refresh", stop=stop) as lease,
    ):
        state, _ = writer_state(workspace, client, lease, save_events=False)
        if not state.serial:
            return Refreshed()  # nothing recorded yet: nothing can have drifted
        found = refresh(state, desired, client, config.parallelism)
        lease.check()
        if found.changed:
            state.serial = workspace.backend.save(state, state.serial, lock=lease.id)
    return found


def adopt_fleet(
    workspace: Workspace,
    environ: Mapping[str, str],
    what: str,
    *,
    name: str | None = None,
    callback_id: str | None = None,
    vins: tuple[str, ...] = (),
    transport: httpx.BaseTransport | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Adopt what already exists (`what`: callback, callbacks or vehicles); lines saying what was recorded."""
    from reconciler.api.client import FleetClient
    from reconciler.live import adopt_callback, adopt_callbacks, adopt_vehicles

    config = api_config(workspace)
    desired, _ = load_desired(workspace.settings.manifests, environ, strict=True)
    key = workspace.fingerprint_key
    stop = stop or threading.Event()
    with (
        FleetClient(config, workspace.fleet, transport=transport, stop=stop) as client,
        Lease(workspace.backend, f"import {what}", stop=stop) as lease,
    ):
        state, _ = writer_state(workspace, client, lease)
        loaded = state.serial or None
        if what == "callback":
            assert name is not None and callback_id is not None
            live = client.callback(callback_id)
            adopt_callback(state, desired, name, live, key)
            lines = [f"callback.{name}: adopted {callback_id}"]
        elif what == "callbacks":
            lines = [f"callback.{adopted}: adopted" for adopted in adopt_callbacks(state, desired, client, key)]
        else:
            counts = adopt_vehicles(state, desired, client, vins)
            lines = [f"vehicle.{vin}: {plural(count, 'slot')} recorded" for vin, count in counts.items()]
        lease.check()
        state.serial = workspace.backend.save(state, loaded, lock=lease.id)
    return lines


def dump_fleet(
    workspace: Workspace,
    folder: Path,
    transport: httpx.BaseTransport | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Manifests describing the live fleet (reads the API only; needs neither manifests nor state)."""
    from reconciler.api.client import FleetClient
    from reconciler.live import held_programs
    from reconciler.manifests.dump import write_manifests

    with FleetClient(api_config(workspace), workspace.fleet, transport=transport, stop=stop) as client:
        return write_manifests(client.callbacks(), held_programs(client, client.vehicles()), folder)


def apply_changes(
    workspace: Workspace,
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
    say: Callable[[str], None] = lambda text: None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    client: FleetClient | None = None,
) -> ApplyRun:
    """Plan (or load a saved plan), check guards, confirm, apply, wait for outcomes, and check convergence.
    With `client` (its owner closes it), the run's calls share its rate limit, daily budget and breaker with
    the calls the owner made before (`serve`'s drift reads)."""
    from reconciler.api.client import FleetClient, RetryPolicy
    from reconciler.apply import Applier, changes_left

    config = api_config(workspace, parallelism)
    desired, _ = load_desired(workspace.settings.manifests, environ, strict=True)
    options = workspace.plan_options(targets, excludes, retry_failed=retry_failed, takeover=takeover)
    stop = stop or threading.Event()
    if client is not None:
        stop = client.stop
    with (
        nullcontext(client)
        if client is not None
        else FleetClient(
            config, workspace.fleet, transport=transport, retry=retry or RetryPolicy(), stop=stop
        ) as client,
        Lease(workspace.backend, "apply", stop=stop) as lease,
    ):
        state, recovered = writer_state(workspace, client, lease)
        if plan_file is not None:
            plan = saved_plan(workspace, plan_file, desired, state, say)
            vins = plan.vins()
        else:
            vins = set(desired.vehicles)
        if index_fleet(state, vins, client):
            state.serial = workspace.backend.save(state, state.serial or None, lock=lease.id)
        if plan_file is None:
            plan = make_plan(desired, state if state.serial else None, workspace.fleet, options)
        run = ApplyRun(plan, recovered=recovered)
        show(plan)
        if not plan.has_changes:
            return run
        plan.check_guards(allow)
        if not confirm(plan):
            raise ReconcilerError("apply cancelled; nothing was changed")
        applier = Applier(
            plan,
            desired,
            state,
            workspace.backend,
            client,
            parallelism=config.parallelism,
            progress=progress,
            stop=stop,
            lease=lease,
            fingerprint_key=options.fingerprint_key,
            zone=workspace.settings.zone,
        )
        try:
            run.report = applier.run()
        except StateError as error:  # the state could not be saved (its database went away, say)
            done = sum(1 for result in applier.report.results if result.ok)
            raise type(error)(  # the same kind, and exit code: a lock taken over stays exit 5
                f"{error}. {plural(done, 'call')} had been made by then: each was journalled before it was sent, "
                "and the next apply finds any whose result was not recorded on the API by its label"
            ) from error
        if wait is not None and not stop.is_set():
            applier.wait_for_outcomes(wait)
            run.waited = True
        lease.check()
        if client.breaker.tripped:
            report = run.report
            done = sum(1 for r in report.results if r.ok)
            raise ApiUnavailableError(
                f"{client.breaker.reason}. {plural(done, 'call')} done and recorded, "
                f"{plural(len(report.skipped), 'call')} not sent; the next plan holds what is left",
                resets_at=client.breaker.resets_at,
            )
        run.report.interrupted = stop.is_set()
        again = make_plan(desired, state, workspace.fleet, replace(options, targets=(), excludes=()))
        if not options.targets and not options.excludes and plan_file is None:
            run.leftovers = changes_left(again, run.report)
        return run


def saved_plan(workspace: Workspace, path: Path, desired: Desired, state: State, say: Callable[[str], None]) -> Plan:
    """The plan saved in `path`, if it may still be applied. The state moving on since it was made (a receiver
    recording outcomes, a refresh) does not make it stale by itself: when a plan made now, with the same
    options, holds exactly the same changes, that plan is applied. StateError otherwise, saying what moved."""
    from reconciler.apply import stale_reason

    plan = read_plan_file(path)
    reason = stale_reason(plan, state, desired)
    if reason is None:
        return plan
    if plan.lineage == (state.lineage if state.serial else None) and plan.manifests == desired.digest:
        options = plan.options
        now = make_plan(
            desired,
            state if state.serial else None,
            workspace.fleet,
            workspace.plan_options(
                tuple(options.get("targets", ())),
                tuple(options.get("excludes", ())),
                retry_failed=bool(options.get("retry_failed")),
                takeover=bool(options.get("takeover")),
            ),
        )
        if same_changes(now, plan):
            say(f"{reason[:1].upper()}{reason[1:]}, but a plan made now makes exactly the changes of {path}.")
            return now
        reason += f", and a plan made now differs from {path}"
    raise StateError(f"the saved plan {path} is stale: {reason}. Make a new plan; nothing was applied")


def same_changes(one: Plan, other: Plan) -> bool:
    """Whether two plans make the same calls with the same changes (in their canonical JSON form)."""
    keys = ("callbacks", "groups", "left_out", "guards")
    first, second = one.body(), other.body()
    return all(canonical_json(first[key]) == canonical_json(second[key]) for key in keys)


def index_fleet(state: State, vins: set[str], client: FleetClient) -> bool:
    """Read the fleet's vehicle list once when a VIN the run needs has no vehicle id yet; record the VINs the
    list does not hold as not in the fleet (plans show them as such until it does). True when the state changed.
    """
    missing = sorted(vin for vin in vins if vin not in state.vehicles_index)
    stale = [vin for vin in state.not_in_fleet if vin not in vins]
    for vin in stale:  # no longer wanted: nothing to report about it
        del state.not_in_fleet[vin]
    if not missing:
        return bool(stale)
    listed = client.vehicles()
    state.vehicles_index.update(listed)
    now = isotime(utcnow())
    for vin in missing:
        if vin in listed:
            state.not_in_fleet.pop(vin, None)
        else:
            state.not_in_fleet[vin] = now
    return True


def push_state(workspace: Workspace, path: Path, *, force: bool = False) -> tuple[int, bool]:
    """Upload a state file as the current state, with Terraform's rules: refused when it has another lineage or
    a lower serial than the stored state, or the same serial with other content, unless `force`; a state of
    another fleet is always refused. (new serial, whether anything was written). This is how a state moves
    between backends: `state pull > state.json` on one, `state push state.json` on the other."""
    pushed = State.from_dict(read_json_file(path, "state file", StateError), str(path))
    if pushed.fleet != workspace.fleet:
        raise StateError(f"{path} is the state of fleet {pushed.fleet}, not {workspace.fleet}; nothing pushed")
    with Lease(workspace.backend, "state push") as lease:
        current = workspace.backend.load()
        if current is not None:
            if current.to_dict() == pushed.to_dict():
                return current.serial, False
            if not force:
                if current.lineage != pushed.lineage:
                    raise StateError(
                        f"{path} has lineage {pushed.lineage}, the stored state {current.lineage}: it is another "
                        "state, not a version of this one. Push it with --force to replace the stored state"
                    )
                if pushed.serial <= current.serial:
                    raise StateError(
                        f"{path} has serial {pushed.serial}, the stored state {current.serial}: it is not newer. "
                        "Push it with --force to replace the stored state"
                    )
        serial = workspace.backend.save(
            pushed, current.serial if current else None, lock=lease.id, serial=pushed.serial, force=force
        )
    return serial, True
