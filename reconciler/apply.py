"""Executing a plan through the Fleet API, recording every result durably.

Order: callbacks created, updated and paused or resumed first (vehicle calls need their ids); then vehicles,
concurrently with bounded parallelism and strictly one call at a time per vehicle; callback deletions last.
Each call is journalled (fsync) before it is sent and after it is answered, and the state is saved as calls
complete, so a run killed at any moment loses nothing the API accepted. A failed call fails its vehicle only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.api.client import FleetClient
from reconciler.callbacks import api_body, callback_spec, fingerprints
from reconciler.errors import ApiError, ApiRequestError, ApiStatusError
from reconciler.model import Desired
from reconciler.plan import Call, CallKind, Change, Plan
from reconciler.state.backend import StateBackend, isotime, utcnow
from reconciler.state.journal import apply_result, fold, intent, result
from reconciler.state.model import State
from reconciler.state.record import outcome_of, record_outcome, record_remote

SAVE_EVERY = 5.0  # seconds between state saves while vehicles are being worked on
REMOTE_LABEL = "reconciler"


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
    ) -> None:
        self.plan, self.desired, self.state, self.backend, self.client = plan, desired, state, backend, client
        self.parallelism = max(1, parallelism)
        self.progress = progress or Progress()
        self.stop = stop or threading.Event()
        self.clock = clock
        self.lock = threading.Lock()
        self.report = ApplyReport()
        self.loaded_serial: int | None = state.serial if state.serial else None
        self.last_save = clock()
        self.existing_callbacks: list[dict[str, Any]] | None = None
        self.by_address = {change.address: change for change in plan.changes}
        self.failures = 0

    # ---- the run ----------------------------------------------------------------------------------------

    def run(self) -> ApplyReport:
        started = self.clock()
        calls = self.plan.calls
        first = [
            c for c in calls if c.kind in (CallKind.CREATE_CALLBACK, CallKind.UPDATE_CALLBACK, CallKind.CALLBACK_STATUS)
        ]
        remotes = [c for c in calls if c.kind is CallKind.REMOTE]
        last = [c for c in calls if c.kind is CallKind.DELETE_CALLBACK]
        self.progress.start(len(calls))
        try:
            failed_callbacks: set[str] = set()
            for call in first:
                outcome = self._guarded(call)
                if not outcome.ok:
                    failed_callbacks.add(call.callback)
            self._vehicles(remotes, failed_callbacks)
            for call in last:
                self._guarded(call)
        finally:
            self.progress.finish()
            self.save()
            self.backend.clear_journal()
        self.report.elapsed = self.clock() - started
        return self.report

    def _guarded(self, call: Call) -> CallResult:
        if self.stop.is_set():
            self.report.skipped.append(call)
            return CallResult(call, False, "skipped")
        try:
            outcome = self._execute(call)
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

    def _vehicles(self, calls: list[Call], failed_callbacks: set[str]) -> None:
        by_vin: dict[str, list[Call]] = defaultdict(list)
        for call in calls:
            assert call.vin is not None
            by_vin[call.vin].append(call)

        def work(vin_calls: list[Call]) -> None:
            for call in vin_calls:  # one at a time per vehicle: the API refuses a second remote in progress
                if call.callback in failed_callbacks:
                    with self.lock:
                        self.report.results.append(
                            CallResult(call, False, "callback failed", f"callback.{call.callback} failed")
                        )
                    continue
                self._guarded(call)

        # a fixed set of workers takes vehicles from one queue; the main thread only saves now and then
        todo: queue.SimpleQueue[list[Call]] = queue.SimpleQueue()
        for vin_calls in by_vin.values():
            todo.put(vin_calls)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while True:
                    try:
                        vin_calls = todo.get_nowait()
                    except queue.Empty:
                        return
                    work(vin_calls)
            except BaseException as error:  # handed to the main thread, which re-raises it
                errors.append(error)

        threads = [
            threading.Thread(target=worker, name=f"reconciler-apply-{n}", daemon=True)
            for n in range(min(self.parallelism, len(by_vin)))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
                if self.clock() - self.last_save >= SAVE_EVERY:
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
                self.client.delete_callback(record.id)
                self._journal_result(entry, {})
            return CallResult(call, True)
        wanted = self.desired.callbacks[name]
        spec, secrets = callback_spec(wanted), fingerprints(wanted, self.state.salt)
        if call.kind is CallKind.CALLBACK_STATUS:
            assert record is not None
            entry = self._journal_intent(intent("callback-status", name=name, status=wanted.status))
            self.client.set_callback_status(record.id, wanted.status)
            self._journal_result(entry, {})
            return CallResult(call, True)
        body = api_body(wanted)
        entry = self._journal_intent(
            intent(call.kind.value, name=name, spec=spec, secrets=secrets, status=wanted.status)
        )
        if call.kind is CallKind.UPDATE_CALLBACK:
            assert record is not None
            self.client.update_callback(record.id, body)
            callback_id = record.id
        else:
            callback_id = self._create_callback(name, body)
            if wanted.status != "Running":
                self.client.set_callback_status(callback_id, wanted.status)
        self._journal_result(entry, {"callback_id": callback_id})
        return CallResult(call, True)

    def _create_callback(self, name: str, body: dict[str, Any]) -> str:
        """Create, unless a callback with this label exists (made by a run whose answer was lost): adopt it."""
        found = self.find_label(name)
        if found is not None:
            self.client.update_callback(found, body)
            return found
        try:
            return self.client.create_callback(body)
        except (ApiRequestError, ApiStatusError) as error:
            if isinstance(error, ApiStatusError) and error.status < 500:
                raise
            self.existing_callbacks = None  # the outcome is unknown: ask the API
            found = self.find_label(name)
            if found is None:
                return self.client.create_callback(body)
            self.client.update_callback(found, body)
            return found

    def find_label(self, name: str) -> str | None:
        if self.existing_callbacks is None:
            self.existing_callbacks = self.client.callbacks()
        for callback in self.existing_callbacks:
            if (callback.get("subscribe") or {}).get("label") == name and callback.get("id"):
                return str(callback["id"])
        return None

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
        body = {"label": REMOTE_LABEL, "preconditioning": {"airConditioning": {"programs": described["programs"]}}}
        views = {c.address: {"schedule": (c.after or c.before or {}).get("schedule", "")} for c in self._changes(call)}
        entry = self._journal_intent(intent("remote", call=described, views=views))
        action_id, _ = self.client.post_remote(vehicle, record.id, body)
        posted = {"action_id": action_id, "posted_at": isotime(utcnow())}
        self.backend.append_journal([result(entry, True, **posted)])
        with self.lock:  # the call object itself, not its journalled form: same record, less work
            record_remote(self.state, call, views, action_id, posted["posted_at"])
        return CallResult(call, True, action_id=action_id)

    def _changes(self, call: Call) -> list[Change]:
        return [self.by_address[address] for address in call.changes]

    def vehicle_id(self, vin: str) -> str | None:
        with self.lock:
            known = self.state.vehicles_index.get(vin)
            if known is not None:
                return known
            fetched = self.client.vehicles()  # an unknown VIN: read the fleet's vehicles again
            self.state.vehicles_index.update(fetched)
            return fetched.get(vin)

    # ---- journal and state --------------------------------------------------------------------------------

    def _journal_intent(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.backend.append_journal([{**entry, "at": isotime(utcnow())}])
        return entry

    def _journal_result(self, entry: dict[str, Any], data: dict[str, Any]) -> None:
        self.backend.append_journal([result(entry, True, **data)])
        with self.lock:
            apply_result(self.state, entry, data)

    def save(self) -> None:
        with self.lock:
            self.loaded_serial = self.backend.save(self.state, self.loaded_serial)
            self.last_save = self.clock()

    # ---- waiting for outcomes -----------------------------------------------------------------------------

    def wait_for_outcomes(
        self, timeout: float, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Poll each remote this run posted until Done or `timeout`; record outcomes into the state."""
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
                except ApiError:
                    continue
                status = str(answer.get("status", ""))
                outcome = outcome_of(status)
                with self.lock:
                    record_outcome(
                        self.state,
                        action_id,
                        outcome,
                        status=status,
                        cause=answer.get("failureCause"),
                        at=isotime(utcnow()),
                    )
                if outcome != "Pending":
                    pending.pop(action_id)
            if pending and self.clock() < deadline:
                sleep(interval)
            elif pending:
                break
        counts: Counter[str] = Counter()
        causes: Counter[str] = Counter()
        for r in self.report.results:
            if r.action_id and r.action_id in self.state.actions:
                action = self.state.actions[r.action_id]
                counts[action.outcome or "Pending"] += 1
                if action.outcome == "Failed":
                    causes[action.cause or "unknown"] += 1
        self.report.outcomes, self.report.causes = counts, causes
        self.save()


def recover(state: State, backend: StateBackend, client: FleetClient | None) -> int:
    """Fold what a previous run journalled into `state`; resolve callback creates whose outcome is unknown.

    Returns how many journal entries were folded. Without a client (plan), unknown creates stay unknown and the
    next apply resolves them.
    """
    entries = backend.read_journal()
    if not entries:
        return 0
    unknown = fold(state, entries)
    creates = [entry for entry in unknown if entry["op"] == "create-callback"]
    if creates and client is not None:
        existing = client.callbacks()
        for entry in creates:
            for callback in existing:
                if (callback.get("subscribe") or {}).get("label") == entry["name"] and callback.get("id"):
                    apply_result(state, entry, {"callback_id": str(callback["id"])})
                    break
    return len(entries)


def summary_lines(report: ApplyReport, waited: bool) -> list[str]:
    ok = sum(1 for r in report.results if r.ok)
    failed = report.failed
    lines = [
        f"Apply: {ok:,} calls done, {len(failed):,} failed, {len(report.skipped):,} skipped in {report.elapsed:.1f} s."
    ]
    by_cause = Counter(r.cause for r in failed)
    for cause, count in sorted(by_cause.items()):
        example = next(r for r in failed if r.cause == cause)
        lines.append(f"  failed ({cause}): {count:,}, e.g. {example.call.id}: {example.detail}")
    if waited:
        outcomes = ", ".join(f"{n:,} {o}" for o, n in sorted(report.outcomes.items())) or "none"
        lines.append(f"Outcomes: {outcomes}.")
        for cause, count in sorted(report.causes.items()):
            lines.append(f"  Failed {cause}: {count:,}")
    return lines


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
    failed: set[str] = set()
    for r in report.failed:
        failed.update(r.call.changes)
        if r.call.kind is not CallKind.REMOTE:
            failed.add(f"callback.{r.call.callback}")
    for call in report.skipped:
        failed.update(call.changes)
    vins_failed = {r.call.vin for r in report.failed if r.call.vin}
    return [
        c.address
        for c in plan.changes
        if c.address not in failed and c.vin not in vins_failed and not _retry_of_known_failure(c)
    ]


def _retry_of_known_failure(change: Any) -> bool:
    return bool(change.cause and change.cause.startswith("Failed"))
