"""Executing a plan through the Fleet API, recording every result durably.

Order: callbacks created, updated and paused or resumed first (vehicle calls need their ids); then vehicles,
concurrently with bounded parallelism and strictly one call at a time per vehicle; callback deletions last.
Each call is journalled (fsync) before it is sent and after it is answered, and the state is saved as calls
complete, so a run killed at any moment loses nothing the API accepted. A failed call fails its vehicle only;
a systemic failure (the client's breaker), a signal or a lost lock stops the whole run: nothing more is sent,
what is in flight finishes and is recorded. A remote carries a label unique to its journal intent, so one
whose answer was lost is found on the API (by the client, or by the next run's recovery) instead of sent twice.

Longer than most modules, on purpose: the executor's parts (ordering, the worker pool, each call kind, the
journal, the saves, waiting for outcomes) share one lock, one journal and one report; split apart, each would
reach into the others' state.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any, TypeVar

from reconciler.address import Address
from reconciler.api import wire
from reconciler.api.client import FleetClient
from reconciler.callbacks import callback_spec, fingerprints
from reconciler.clock import isotime, utcnow
from reconciler.errors import (
    ApiError,
    ApiRequestError,
    ApiStatusError,
    ApiUnavailableError,
    RunInterrupted,
)
from reconciler.model import Desired
from reconciler.plan import Call, CallKind, CauseKind, ChangeGroup, Plan
from reconciler.state.backend import StateBackend
from reconciler.state.journal import apply_result, begin, intent, result
from reconciler.state.lock import Lease
from reconciler.state.model import Outcome, State
from reconciler.state.record import outcome_of, record_outcome, record_remote

T = TypeVar("T")
SAVE_EVERY = 5.0  # seconds between state saves while vehicles are being worked on, at least
SAVE_SHARE = 0.1  # and at most this share of the run's time saving: a large state takes a second to save


def remote_label(entry: dict[str, Any]) -> str:
    """The label a remote is posted with: unique to its intent, so the API can be asked whether it arrived."""
    return f"{wire.REMOTE_LABEL}:{entry['id']}"


@dataclass
class CallResult:
    call: Call
    ok: bool
    cause: str = ""
    detail: str = ""
    action_id: str | None = None


@dataclass
class ApplyReport:
    results: list[CallResult] = field(default_factory=list)
    skipped: list[Call] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    saving: float = 0.0  # seconds spent saving the state, in `saves` saves
    saves: int = 0

    @property
    def failed(self) -> list[CallResult]:
        return [r for r in self.results if not r.ok]


class Progress:
    """Where apply reports progress: nothing by default; the CLI passes a terminal or CI-log reporter."""

    def start(self, total: int) -> None: ...

    def advance(self, done: int, failed: int) -> None: ...

    def finish(self) -> None: ...


class Applier:
    def __init__(
        self,
        plan: Plan,
        desired: Desired,
        state: State,
        backend: StateBackend,
        client: FleetClient,
        *,
        parallelism: int = 8,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease: Lease | None = None,
        fingerprint_key: str | None = None,
        zone: tzinfo = UTC,
    ) -> None:
        self.plan, self.desired, self.state, self.backend, self.client = plan, desired, state, backend, client
        self.parallelism = max(1, parallelism)
        self.progress = progress or Progress()
        self.stop = stop or client.stop
        self.clock = clock
        self.lease = lease
        self.key = fingerprint_key or state.salt
        self.zone = zone  # the fleet's time zone: where the month of a monthly hold ends
        self.lock = threading.Lock()
        self.report = ApplyReport()
        self.loaded_serial: int | None = state.serial if state.serial else None
        self.last_save = clock()
        self.save_every = SAVE_EVERY
        self.existing_callbacks: list[dict[str, Any]] | None = None
        self.failures = 0
        self.open: dict[str, dict[str, Any]] = {}  # journalled intents whose outcome is not known yet
        self.begun = bool(state.serial)

    # ---- the run ----------------------------------------------------------------------------------------

    def run(self) -> ApplyReport:
        started = self.clock()
        first, last = self.plan.callback_calls()
        self.progress.start(len(first) + self.plan.summary().calls + len(last))
        try:
            failed_callbacks: set[str] = set()
            for call in first:
                outcome = self._guarded(call)
                if not outcome.ok:
                    failed_callbacks.add(call.callback)
            self._vehicles(failed_callbacks)
            for call in last:
                self._guarded(call)
        finally:
            self.progress.finish()
            self.finish()
        self.report.elapsed = self.clock() - started
        return self.report

    def finish(self) -> None:
        """Save, then keep in the journal only the calls whose outcome is still unknown: the next writer
        resolves them on the API (a callback by its label, a remote by its label) instead of guessing."""
        self.save()
        with self.lock:
            unresolved = list(self.open.values())
        self.backend.clear_journal()
        if unresolved:
            self.backend.append_journal(unresolved)

    def _guarded(self, call: Call) -> CallResult:
        if self.stop.is_set():
            self.report.skipped.append(call)
            return CallResult(call, False, "skipped")
        try:
            outcome = self._execute(call)
        except (RunInterrupted, ApiUnavailableError):
            # the run is stopping: this call was not sent, or its outcome is unknown and stays journalled
            with self.lock:
                self.report.skipped.append(call)
            return CallResult(call, False, "skipped")
        except ApiStatusError as error:
            outcome = CallResult(call, False, f"HTTP {error.status}", str(error))
        except ApiRequestError as error:
            outcome = CallResult(call, False, "no answer", str(error))
        except ApiError as error:
            outcome = CallResult(call, False, "API error", str(error))
        with self.lock:
            self.report.results.append(outcome)
            self.failures += not outcome.ok
            self.progress.advance(len(self.report.results), self.failures)
        return outcome

    def _vehicles(self, failed_callbacks: set[str]) -> None:
        """Every vehicle's remotes, by VIN; a group's calls are made one vehicle at a time as workers get to it."""
        vehicles = self.plan.vehicles()
        taking = threading.Lock()

        def work(vin: str, group: ChangeGroup) -> None:
            for call in group.calls(vin):  # one at a time per vehicle: the API refuses a second remote in progress
                if call.callback in failed_callbacks:
                    with self.lock:
                        self.report.results.append(
                            CallResult(call, False, "callback failed", f"callback.{call.callback} failed")
                        )
                    continue
                self._guarded(call)

        # a fixed set of workers takes vehicles from one queue; the main thread only saves now and then. Daemon
        # threads rather than concurrent.futures (as refresh uses): its workers are joined when the interpreter
        # exits, so a second Ctrl-C ("abort") would wait for every request in flight to time out
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while True:
                    with taking:
                        taken = next(vehicles, None)
                    if taken is None:
                        return
                    work(*taken)
            except BaseException as error:  # handed to the main thread, which re-raises it
                errors.append(error)

        threads = [
            threading.Thread(target=worker, name=f"reconciler-apply-{n}", daemon=True)
            for n in range(min(self.parallelism, self.plan.summary().vehicles))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
                if self.clock() - self.last_save >= self.save_every:
                    self.save()
        if errors:
            raise errors[0]

    # ---- one call -----------------------------------------------------------------------------------------

    def _execute(self, call: Call) -> CallResult:
        if call.kind is CallKind.REMOTE:
            return self._remote(call)
        name = call.callback
        record = self.state.callbacks.get(name)
        if call.kind is CallKind.DELETE_CALLBACK:
            if record is not None:
                entry = self._journal_intent(intent("delete-callback", name=name))
                self._attempt(entry, self.client.delete_callback, record.id)
                self._journal_result(entry, {})
            return CallResult(call, True)
        wanted = self.desired.callbacks[name]
        if call.kind is CallKind.CALLBACK_STATUS:
            assert record is not None
            self._set_status(name, record.id, wanted.status)
            return CallResult(call, True)
        spec, secrets, body = callback_spec(wanted), fingerprints(wanted, self.key), wire.callback_body(wanted)
        if call.kind is CallKind.UPDATE_CALLBACK:
            assert record is not None
            # a full PUT leaves the status as it is: the status is recorded only when a status call confirms it
            entry = self._journal_intent(
                intent(call.kind.value, name=name, spec=spec, secrets=secrets, status=record.status)
            )
            self._attempt(entry, self.client.update_callback, record.id, body)
            self._journal_result(entry, {"callback_id": record.id})
            return CallResult(call, True)
        entry = self._journal_intent(intent(call.kind.value, name=name, spec=spec, secrets=secrets, status="Running"))
        callback_id, status = self._attempt(entry, self._create_callback, name, body)
        self._journal_result(entry, {"callback_id": callback_id}, status=status)
        if wanted.status != status:
            self._set_status(name, callback_id, wanted.status)
        return CallResult(call, True)

    def _set_status(self, name: str, callback_id: str, status: str) -> None:
        entry = self._journal_intent(intent("callback-status", name=name, status=status))
        self._attempt(entry, self.client.set_callback_status, callback_id, status)
        self._journal_result(entry, {})

    def _create_callback(self, name: str, body: dict[str, Any]) -> tuple[str, str]:
        """(id, status) of the callback created, or of one with this label that exists already (made by a run
        whose answer was lost), which is adopted and brought up to date."""
        found = self.find_label(name)
        if found is not None:
            self.client.update_callback(found[0], body)
            return found
        try:
            return self.client.create_callback(body), "Running"
        except (ApiRequestError, ApiStatusError) as error:
            if isinstance(error, ApiStatusError) and error.status < 500:
                raise
            self.existing_callbacks = None  # the outcome is unknown: ask the API
            found = self.find_label(name)
            if found is None:
                return self.client.create_callback(body), "Running"
            self.client.update_callback(found[0], body)
            return found

    def find_label(self, name: str) -> tuple[str, str] | None:
        """(id, status) of the live callback labelled `name`, if any."""
        if self.existing_callbacks is None:
            self.existing_callbacks = self.client.callbacks()
        return wire.labelled(self.existing_callbacks, name)

    def _remote(self, call: Call) -> CallResult:
        assert call.vin is not None
        vehicle = self.vehicle_id(call.vin)
        if vehicle is None:
            return CallResult(
                call, False, "VIN not in fleet", f"{call.vin} is not a vehicle of fleet {self.client.fleet}"
            )
        record = self.state.callbacks.get(call.callback)
        if record is None:
            return CallResult(call, False, "callback missing", f"callback.{call.callback} has no id in the state")
        described = call.to_dict()
        views = {
            str(address): {"schedule": schedule} for address, schedule in zip(call.changes, call.schedules, strict=True)
        }
        entry = intent("remote", call=described, views=views)
        entry["label"] = remote_label(entry)
        self._journal_intent(entry)
        body = wire.remote_body(entry["label"], described["programs"])
        action_id, _ = self._attempt(entry, self.client.post_remote, vehicle, record.id, body)
        posted = {"action_id": action_id, "posted_at": isotime(utcnow())}
        # the answer rides with the next durable batch: lost in a crash, the remote is found again by its label
        self.backend.append_journal([result(entry, True, **posted)], wait=False)
        with self.lock:  # the call object itself, not its journalled form: same record, less work
            self.open.pop(entry["id"], None)
            entries = zip(call.programs, call.schedules, strict=True)
            carried = [(verb, program, schedule) for (verb, program), schedule in entries]
            record_remote(self.state, call.vin, call.callback, carried, action_id, posted["posted_at"])
        return CallResult(call, True, action_id=action_id)

    def vehicle_id(self, vin: str) -> str | None:
        """The vehicle id of a VIN, from the index read once per run before planning; a VIN it lacks is
        recorded as not in the fleet (plans show it as such until the fleet's list holds it)."""
        with self.lock:
            known = self.state.vehicles_index.get(vin)
            if known is None:
                self.state.not_in_fleet.setdefault(vin, isotime(utcnow()))
            return known

    # ---- journal and state --------------------------------------------------------------------------------

    def _journal_intent(self, entry: dict[str, Any]) -> dict[str, Any]:
        stamped = {**entry, "at": isotime(utcnow())}
        with self.lock:
            first = not self.begun
            self.begun = True
            self.open[entry["id"]] = stamped
        # the first entry of a state never saved says which lineage and fingerprint salt its results belong to
        self.backend.append_journal([begin(self.state), stamped] if first else [stamped])
        return entry

    def _attempt(self, entry: dict[str, Any], send: Callable[..., T], *args: Any) -> T:
        """Make the journalled call; when the API surely did not do it (an error answer other than 5xx, or a
        request never sent), journal that, so only calls of unknown outcome are left for recovery."""
        try:
            return send(*args)
        except (RunInterrupted, ApiUnavailableError) as error:
            if not error.call_sent:  # the run stopped before the call went out: nothing for recovery to find
                self.backend.append_journal([result(entry, False, error=f"not sent: {error}"[:300])])
                with self.lock:
                    self.open.pop(entry["id"], None)
            raise
        except (ApiStatusError, ApiRequestError) as error:
            refused = error.status < 500 if isinstance(error, ApiStatusError) else not error.sent
            if refused:
                self.backend.append_journal([result(entry, False, error=str(error)[:300])])
                with self.lock:
                    self.open.pop(entry["id"], None)
            raise

    def _journal_result(self, entry: dict[str, Any], data: dict[str, Any], **recorded: Any) -> None:
        self.backend.append_journal([result(entry, True, **data)])
        with self.lock:
            self.open.pop(entry["id"], None)
            apply_result(self.state, {**entry, **recorded}, data)

    def save(self) -> None:
        """Save the state. The workers wait meanwhile (they record into it), so saves come no more often than
        keeps their share of the run under SAVE_SHARE; the journal holds every result in between."""
        with self.lock:
            started = self.clock()
            self.loaded_serial = self.backend.save(
                self.state, self.loaded_serial, lock=self.lease.id if self.lease else None
            )
            self.last_save = self.clock()
            took = self.last_save - started
            self.report.saving += took
            self.report.saves += 1
            self.save_every = max(SAVE_EVERY, took / SAVE_SHARE)

    # ---- waiting for outcomes -----------------------------------------------------------------------------

    def wait_for_outcomes(self, timeout: float, interval: float = 2.0) -> None:
        """Poll each remote this run posted until Done or `timeout`; record outcomes into the state. A signal
        or the breaker ends the wait early (what is known by then is recorded)."""
        try:
            self._poll(timeout, interval)
        except RunInterrupted:
            pass
        finally:
            self._count_outcomes()
            self.save()

    def _poll(self, timeout: float, interval: float) -> None:
        pending = {r.action_id: r.call for r in self.report.results if r.ok and r.action_id}
        deadline = self.clock() + timeout
        while pending and not self.stop.is_set():
            for action_id, call in list(pending.items()):
                assert call.vin is not None
                record = self.state.callbacks.get(call.callback)
                vehicle = self.state.vehicles_index.get(call.vin)
                if record is None or vehicle is None:
                    pending.pop(action_id)
                    continue
                try:
                    answer = self.client.remote(vehicle, record.id, action_id)
                except ApiUnavailableError:
                    raise
                except ApiError:
                    continue  # this one stays pending; the breaker stops the wait if it is not just this one
                status = answer.get("status")
                if not isinstance(status, str):
                    continue
                cause = answer.get("failureCause")
                outcome = outcome_of(status)
                with self.lock:
                    record_outcome(
                        self.state,
                        action_id,
                        outcome,
                        status=status[:100],
                        cause=cause[:100] if isinstance(cause, str) else None,
                        at=isotime(utcnow()),
                        zone=self.zone,
                    )
                if outcome != Outcome.PENDING:
                    pending.pop(action_id)
            if pending and self.clock() < deadline:
                self.client.wait(interval)
            elif pending:
                break

    def _count_outcomes(self) -> None:
        counts: Counter[str] = Counter()
        causes: Counter[str] = Counter()
        for r in self.report.results:
            if r.action_id and r.action_id in self.state.actions:
                action = self.state.actions[r.action_id]
                counts[action.outcome or Outcome.PENDING] += 1
                if action.outcome == Outcome.FAILED:
                    causes[action.cause or "unknown"] += 1
        self.report.outcomes, self.report.causes = counts, causes


def stale_reason(plan: Plan, state: State | None, desired: Desired) -> str | None:
    """Why a saved plan may no longer be applied, or None."""
    lineage = state.lineage if state and state.serial else None
    serial = state.serial if state and state.serial else None
    if plan.lineage != lineage:
        return f"the state's lineage is now {lineage}, the plan was made for {plan.lineage}"
    if plan.serial != serial:
        return f"the state moved from serial {plan.serial} (when the plan was made) to {serial}"
    if plan.manifests != desired.digest:
        return "the manifests changed since the plan was made"
    return None


def changes_left(plan: Plan, report: ApplyReport) -> list[str]:
    """Addresses a plan made right after apply still changes although no call for them failed or was skipped."""
    failed: set[Address] = set()
    for r in report.failed:
        failed.update(r.call.changes)
        if r.call.kind is not CallKind.REMOTE:
            failed.add(Address.of_callback(r.call.callback))
    for call in report.skipped:
        failed.update(call.changes)
    vins_failed = {r.call.vin for r in report.failed if r.call.vin}
    return [
        str(c.address)
        for c in plan.changes
        if c.address not in failed
        and c.vin not in vins_failed
        and not (c.cause is not None and c.cause.kind == CauseKind.FAILED)  # a known failure, retried
    ]
