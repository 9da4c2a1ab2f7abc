"""The leader's reconciliation loop: every interval, or at once when woken (a push to the config repo), the
manifests in force are validated, planned and applied within the guards and the sync windows, through the same
use cases the CLI runs (operations.plan_changes, apply_changes); each run is recorded for the metrics and logs.

With a config repo, a new commit is checked out into a folder of the controller's own; an invalid commit is
reported and not applied, and the last good commit stays in force. Settings (fleet, API, state, guards, serve)
come from the configuration `serve` was started with; the manifests from the commit, at the same paths relative
to the repository's root as `manifests:` names relative to the configuration's folder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import httpx

from reconciler.api.client import FleetClient, tls_context
from reconciler.clock import isotime, utcnow
from reconciler.controller.drift import DriftRead, read_drift, reads_per_run
from reconciler.controller.leader import Leadership
from reconciler.controller.metrics import Metrics, ObservedTransport
from reconciler.controller.repo import GitSource, RepoError
from reconciler.errors import (
    ApiUnavailableError,
    ExitCode,
    GuardError,
    InvalidInputError,
    ReconcilerError,
    exit_code_for,
)
from reconciler.manifests import load_desired
from reconciler.operations import Workspace, api_config, apply_changes, plan_changes
from reconciler.plan import Plan
from reconciler.webhook.app import one_line
from reconciler.webhook.log import log
from reconciler.windows import verdict

KEEP_RUNS = 50  # runs kept in memory for the metrics and the status page
SHOWN = 10  # drift found by a read, named in its log line (the rest counted)


class WindowClosed(ReconcilerError):
    """The sync windows hold writes now."""


@dataclass(frozen=True, slots=True)
class Run:
    """One reconciliation run, as the log, the metrics and the status page show it."""

    started: str
    result: str  # applied, synced, partial, invalid, blocked, window, quota, locked, interrupted, error
    message: str
    duration: float
    commit: str | None = None
    digest: str | None = None
    changes: int = 0
    calls: int = 0
    failed: int = 0


class Controller:
    def __init__(
        self,
        workspace: Workspace,
        environ: Mapping[str, str],
        leadership: Leadership,
        metrics: Metrics,
        source: GitSource | None = None,
        *,
        interval: float | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.workspace = workspace
        self.environ = environ
        self.leadership = leadership
        self.metrics = metrics
        self.source = source
        self.interval = interval if interval is not None else workspace.settings.serve.interval
        self.now = now
        self.runs: deque[Run] = deque(maxlen=KEEP_RUNS)
        self.commit: str | None = None  # the commit in force: the last valid one
        self.refused: str | None = None  # the last invalid commit (not tried again until the branch moves)
        self.repo_problem: str | None = None  # why the last fetch failed
        self.held_until: datetime | None = None  # when the sync windows that held the last run's writes let go
        # when the API's daily quota (api.daily_budget, or a long 429) lets requests go again: until then a run
        # sends nothing, not even the one request a fresh client spends learning that the quota is gone
        self.quota_until: datetime | None = None
        self.stop = threading.Event()  # the controller stops
        if source is not None:
            source.stop = self.stop  # and a git command in progress ends with it
        self.wake = threading.Event()  # a push, or leadership gained: run now
        self._run_stop = threading.Event()  # the run in progress stops (lost leadership, or the controller stops)
        self._thread: threading.Thread | None = None
        self.drift: DriftRead | None = None  # what the last drift read found
        self._read_at: float | None = None  # when the last drift read started (time.monotonic)
        # called after each run, in the loop's thread, with its plan (if one was made) and the workspace of the
        # commit in force (the status page keeps its figures)
        self.listeners: list[Callable[[Run, Plan | None, Workspace | None], None]] = []

    # ---- control ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler-controller", daemon=True)
        self._thread.start()

    def leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.wake.set()
        else:  # a replica that no longer leads stops sending, as a run whose lock was taken over does
            self._run_stop.set()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop: the run in progress finishes the calls in flight and saves, then the loop ends."""
        self.stop.set()
        self._run_stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ready(self) -> str | None:
        """Why this replica is not ready (None: it is): leadership unknown, or the config repo unreadable."""
        if not self.leadership.known:
            return "whether this replica leads is not known yet"
        if self.source is not None and self.repo_problem is not None:
            return f"the config repo cannot be read: {self.repo_problem}"
        if self.source is not None and self.leadership.leading and self.commit is None and self.refused is None:
            return "the config repo has not been fetched yet"
        return None

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()
            if self.leadership.leading:
                try:
                    self.run_once(read=self._read_due())
                except Exception as error:  # a bug must not end the controller: reported, tried again
                    self._record(Run(isotime(utcnow()), "error", one_line(error), 0.0, self.commit))
            self.wake.wait(self._pause())

    def _pause(self) -> float:
        """Seconds until the next run: the interval, or less when held writes may go out sooner."""
        pause = self.interval
        for until in (self.held_until, self.quota_until):
            if until is not None:
                left = (until - self.now()).total_seconds()
                pause = min(pause, max(left + 0.5, 0.5))  # just past the hold's end (at least half a second)
        return pause

    # ---- one run ----------------------------------------------------------------------------------------------

    def _read_due(self) -> bool:
        """Drift is read once per interval: a run woken sooner (a push) reads nothing, and so the reads of an
        hour stay within `serve.drift_reads_per_hour`."""
        return self._read_at is None or time.monotonic() - self._read_at >= self.interval

    def run_once(self, *, read: bool = True) -> Run:
        """One run; with `read`, drift is read first (within the budget of reads) and the same run repairs it
        (self-heal) or leaves the drifted vehicles alone."""
        started, clock = isotime(utcnow()), time.monotonic()
        if not self.stop.is_set():
            self._run_stop.clear()  # what stopped the last run (a lost lease, the API's breaker) is behind us

        def done(result: str, message: str, plan: Plan | None = None, commit: str | None = None, **counts: int) -> Run:
            digest = plan.digest if plan is not None else None
            changes = 0
            if plan is not None:
                summary = plan.summary()
                changes = sum((summary.callbacks_create, summary.callbacks_update, summary.callbacks_delete))
                changes += summary.vehicles
            commit = commit or self.commit  # the commit the run is about: the one in force, or one refused
            run = Run(started, result, message, time.monotonic() - clock, commit, digest, changes, **counts)
            self._record(run, plan, workspace)
            return run

        workspace = self.workspace
        if self.source is not None:
            try:
                head = self.source.fetch()
            except RepoError as error:
                self._repo_problem(str(error))
                if self.commit is None:
                    return done("error", f"the config repo cannot be fetched: {error}")
                head = self.commit  # the commit in force goes on being reconciled
            else:
                self._repo_problem(None)
            if head != self.commit and head != self.refused:
                try:
                    self._validate(self._at(self.source.checkout(head)))
                except (InvalidInputError, RepoError) as error:
                    self.refused = head
                    self.source.keep_only(self.commit)
                    kept = f"; commit {self.commit[:12]} stays in force" if self.commit else ""
                    message = f"commit {head[:12]} is invalid and not applied: {one_line(error)}{kept}"
                    return done("invalid", message, commit=head)
                self.commit, self.refused = head, None
                self.source.keep_only(self.commit)
                log(logging.INFO, f"commit {head[:12]} is valid: it is in force now", commit=head)
            if self.commit is None:
                return done("invalid", "no valid commit of the config repo yet: nothing is applied")
            workspace = self._at(self.source.checkout(self.commit))
        else:
            try:
                self._validate(workspace)
            except InvalidInputError as error:
                return done("invalid", f"the manifests are invalid and not applied: {one_line(error)}")

        serve = workspace.settings.serve
        self.held_until = None
        if self.quota_until is not None and self.now() >= self.quota_until:
            self.quota_until = None
        try:
            if self.quota_until is not None:  # nothing is sent, not even drift reads, until the quota frees up
                plan, *_ = plan_changes(workspace, self.environ)
                if not plan.has_changes:
                    return done("synced", plan.summary().line(plan.serial), plan)
                wait = f"the API's daily quota lets requests go again at {isotime(self.quota_until)}"
                return done("quota", f"{plan.summary().calls} calls held: {wait}", plan)
            # one client for the run: its reads and writes share a rate limit, the daily budget and a breaker
            with FleetClient(
                api_config(workspace), workspace.fleet, transport=self._transport(workspace), stop=self._run_stop
            ) as client:
                excludes: tuple[str, ...] = ()
                count = reads_per_run(serve.drift_reads_per_hour, self.interval) if read else 0
                # a run that reads nothing still leaves drifted vehicles alone without self-heal
                if count or (serve.drift_reads_per_hour and not serve.self_heal):
                    if count:
                        self._read_at = time.monotonic()
                    drift = read_drift(
                        workspace,
                        self.environ,
                        client,
                        count,
                        self_heal=serve.self_heal,
                        now=self.now(),
                        parallelism=api_config(workspace).parallelism,
                    )
                    self._drift_found(drift, serve.self_heal)
                    excludes = tuple(f"vin:{vin}" for vin in drift.left)
                return self._reconcile(workspace, client, excludes, done)
        except WindowClosed as error:
            return done("window", f"changes held: {error}")
        except GuardError as error:
            blocked = error.plan if isinstance(error.plan, Plan) else None  # shown for review, not applied
            message = f"{one_line(error)} (nothing applied: see the README on letting it through)"
            return done("blocked", message, blocked)
        except ApiUnavailableError as error:
            if error.resets_at is None:
                return done("error", one_line(error))
            self.quota_until = error.resets_at
            return done("quota", one_line(error))
        except ReconcilerError as error:
            code = exit_code_for(error)
            result = {ExitCode.LOCKED: "locked", ExitCode.INVALID: "invalid"}.get(code, "error")
            return done(result, one_line(error))

    def _reconcile(
        self, workspace: Workspace, client: FleetClient, excludes: tuple[str, ...], done: Callable[..., Run]
    ) -> Run:
        """Plan and apply, within the sync windows, leaving out `excludes`."""
        windows = workspace.settings.serve.windows
        found = verdict(windows, self.now())
        if not found.allowed:
            self.held_until = found.until
            plan, *_ = plan_changes(workspace, self.environ, excludes=excludes)
            if not plan.has_changes:
                return done("synced", plan.summary().line(plan.serial), plan)
            return done("window", f"{plan.summary().calls} calls held: {found.reason}", plan)

        def confirm(plan: Plan) -> bool:
            held = verdict(windows, self.now())  # a window may have opened while the state was read
            if not held.allowed:
                raise WindowClosed(held.reason)
            return True

        applied = apply_changes(
            workspace,
            self.environ,
            confirm=confirm,
            excludes=excludes,
            client=client,
        )
        plan, report = applied.plan, applied.report
        if report is None:
            return done("synced", plan.summary().line(plan.serial), plan)
        calls, failed = len(report.results), len(report.failed)
        result = {ExitCode.OK: "applied", ExitCode.INTERRUPTED: "interrupted"}.get(applied.exit_code, "partial")
        return done(result, f"{calls} calls made, {failed} failed", plan, calls=calls, failed=failed)

    def _at(self, folder: Path) -> Workspace:
        """The workspace with the manifests of a commit's folder."""
        settings = self.workspace.settings
        paths = []
        for path in settings.manifests:
            try:
                paths.append(folder / path.resolve().relative_to(settings.root.resolve()))
            except ValueError:
                raise RepoError(f"manifests folder {path} is outside {settings.root}: serve --repo reads it") from None
        return replace(self.workspace, settings=replace(settings, manifests=tuple(paths)))

    def _validate(self, workspace: Workspace) -> None:
        load_desired(workspace.settings.manifests, self.environ, strict=True)

    def _transport(self, workspace: Workspace) -> httpx.BaseTransport:
        config = api_config(workspace)
        limits = httpx.Limits(max_connections=config.parallelism + 2, max_keepalive_connections=config.parallelism + 2)
        return ObservedTransport(httpx.HTTPTransport(verify=tls_context(config), limits=limits), self.metrics)

    def _repo_problem(self, problem: str | None) -> None:
        if problem != self.repo_problem:
            if problem is None:
                log(logging.INFO, "the config repo can be fetched again")
            else:
                log(logging.ERROR, f"the config repo cannot be fetched: {problem}", reason=problem)
        self.repo_problem = problem

    def _drift_found(self, drift: DriftRead, self_heal: bool) -> None:
        """Count, log and keep (for the status page) what a drift read found."""
        if drift.read:
            self.drift = drift
        self.metrics.drift_found.inc(len(drift.drifted))
        self.metrics.drift_repaired.inc(len(drift.repaired))
        if not drift.read and not drift.repaired:
            return
        shown = ", ".join(f"{d.address} {d.kind}" for d in drift.drift[:SHOWN])
        more = f" and {len(drift.drift) - SHOWN} more" if len(drift.drift) > SHOWN else ""
        found = f"{len(drift.drifted)} drifted ({shown}{more})" if drift.drifted else "no drift"
        unread = f", {len(drift.unread)} could not be read" if drift.unread else ""
        repaired = f"; {len(drift.repaired)} repaired since the last read" if drift.repaired else ""
        left = f"; self-heal is off: {len(drift.left)} drifted vehicles are left as found" if drift.left else ""
        if drift.drifted and self_heal:
            left = "; self-heal repairs them now"
        log(
            logging.WARNING if drift.drifted or drift.unread else logging.INFO,
            f"drift read: {len(drift.read)} vehicles read, {found}{unread}{repaired}{left}",
            drift_read=len(drift.read),
            drift_found=len(drift.drifted),
            drift_repaired=len(drift.repaired),
            drift_unread=len(drift.unread),
            drift_left=len(drift.left),
        )

    def _record(self, run: Run, plan: Plan | None = None, workspace: Workspace | None = None) -> None:
        self.runs.append(run)
        for listener in self.listeners:
            try:
                listener(run, plan, workspace)
            except Exception as error:  # what shows a run must not stop the runs
                log(logging.ERROR, f"could not keep the run for the status page: {one_line(error)}")
        self.metrics.runs.labels(run.result).inc()
        self.metrics.run_duration.observe(run.duration)
        level = logging.INFO if run.result in ("applied", "synced") else logging.WARNING
        if run.result == "error":
            level = logging.ERROR
        where = f" at commit {run.commit[:12]}" if run.commit else ""
        planned = f" (plan {run.digest.removeprefix('sha256:')[:12]})" if run.digest else ""
        log(
            level,
            f"run {run.result}{where} in {run.duration:.1f} s: {run.message}{planned}",
            run_result=run.result,
            commit=run.commit,
            plan_digest=run.digest,
            changes=run.changes,
            calls=run.calls,
            failed=run.failed,
            duration=round(run.duration, 3),
        )
