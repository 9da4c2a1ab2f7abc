"""What happens after a 202: each remote walks the documented state machine, and every status change is
notified to the callback's webhook, batched and retried as the callback asks.

    Accepted -> [WakingUpVehicle] -> CheckingVehicle -> SentToVehicle -> Success | AlreadyDone | Failed

Delays are divided by `speed`: 1 is roughly real time, 1000 runs a remote in a few milliseconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.sandbox.world import SimCallback, SimRemote, World, now_iso

# seconds at speed 1
ACCEPT_DELAY = 0.5
WAKE_DELAY = 4.0
CHECK_DELAY = 0.5
VEHICLE_DELAY = 2.0
AWAKE_FOR = 180.0
DELIVERY_TIMEOUT = 5.0
KEPT = 20_000
# causes --failure-rate draws from: mostly transient, one permanent
DRAWN_CAUSES = (
    "VehicleError",
    "GeneralError",
    "NotPossibleDueToVehicleBatteryLevel",
    "TooManyRequestInShortTime",
    "MissingRights",
)


@dataclass
class Delivery:
    """One POST of a batch to a webhook (a retry is another Delivery of the same batch)."""

    callback_id: str
    batch: int
    attempt: int
    events: list[dict[str, Any]]
    target: str
    status: int | None = None
    error: str | None = None
    skipped: bool = False
    at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "callbackId": self.callback_id,
            "batch": self.batch,
            "attempt": self.attempt,
            "target": self.target,
            "status": self.status,
            "error": self.error,
            "at": self.at,
            "events": self.events,
        }


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Engine:
    def __init__(
        self, world: World, *, speed: float = 1.0, failure_rate: float = 0.0, deliver_anywhere: bool = False
    ) -> None:
        self.world = world
        self.speed = speed
        self.failure_rate = failure_rate
        self.deliver_anywhere = deliver_anywhere
        # what /_sandbox shows; bounded, so a long demo or benchmark does not grow without end
        self.deliveries: deque[Delivery] = deque(maxlen=KEPT)
        self.suppressed: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.outboxes: dict[str, Outbox] = {}
        self.client: httpx.AsyncClient | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.batches = 0

    # ---- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = min(DELIVERY_TIMEOUT, max(0.5, 30.0 / self.speed))
        self.client = httpx.AsyncClient(timeout=timeout)

    async def stop(self) -> None:
        for outbox in self.outboxes.values():
            outbox.close()
        for task in list(self.tasks):
            task.cancel()
        if self.client is not None:
            await self.client.aclose()

    def later(self, seconds: float, action: Callable[..., None], *args: Any) -> None:
        asyncio.get_running_loop().call_later(seconds / self.speed, action, *args)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- the remote state machine -----------------------------------------------------------------------

    def start_remote(self, remote: SimRemote) -> None:
        vehicle = remote.vehicle
        self._status(remote, "Accepted")
        if vehicle.active_remote is not None:
            self.later(ACCEPT_DELAY, self._finish, remote, "Failed", "SameActionInProgress")
            return
        vehicle.active_remote = remote.id
        self.later(ACCEPT_DELAY, self._wake, remote)

    def _wake(self, remote: SimRemote) -> None:
        vehicle = remote.vehicle
        loop_time = asyncio.get_running_loop().time()
        if vehicle.offline or (vehicle.asleep and vehicle.awake_until < loop_time):
            self._status(remote, "WakingUpVehicle")
            self.later(WAKE_DELAY, self._after_wake, remote)
        else:
            self._after_wake(remote)

    def _after_wake(self, remote: SimRemote) -> None:
        vehicle = remote.vehicle
        if vehicle.offline:
            self._finish(remote, "Failed", "VehicleConnectionTimeout")
            return
        vehicle.awake_until = asyncio.get_running_loop().time() + AWAKE_FOR / self.speed
        self._status(remote, "CheckingVehicle")
        self.later(CHECK_DELAY, self._send, remote)

    def _send(self, remote: SimRemote) -> None:
        self._status(remote, "SentToVehicle")
        self.later(VEHICLE_DELAY, self._complete, remote)

    def _complete(self, remote: SimRemote) -> None:
        if remote.vehicle.fails_with:
            self._finish(remote, "Failed", remote.vehicle.fails_with)
            return
        rng = random.Random(f"{self.world.seed}:{remote.id}")
        if rng.random() < self.failure_rate:
            self._finish(remote, "Failed", DRAWN_CAUSES[rng.randrange(len(DRAWN_CAUSES))])
            return
        vehicle = remote.vehicle
        target = apply_programs(vehicle.programs, remote.remote)
        if target == vehicle.programs:
            self._finish(remote, "AlreadyDone", None)
            return
        vehicle.programs = target
        vehicle.updated_at = now_iso()
        self._finish(remote, "Success", None)

    def _status(self, remote: SimRemote, status: str) -> None:
        remote.status = status
        remote.updated_at = now_iso()
        self._notify(remote, {"type": "Pending", "status": status})

    def _finish(self, remote: SimRemote, status: str, cause: str | None) -> None:
        remote.status, remote.failure_cause, remote.done = status, cause, True
        remote.updated_at = now_iso()
        if remote.vehicle.active_remote == remote.id:
            remote.vehicle.active_remote = None
        event_status: dict[str, Any] = {"type": "Done", "status": status}
        if cause:
            event_status["failureCause"] = cause
        self._notify(remote, event_status)

    # ---- notifications ----------------------------------------------------------------------------------

    def _notify(self, remote: SimRemote, status: dict[str, Any]) -> None:
        if (
            remote.type == "Navigation"
            and status["type"] == "Pending"
            and status["status"]
            in (
                "Accepted",
                "WakingUpVehicle",
            )
        ):
            return  # the API sends neither for navigation remotes
        event = {
            "remoteActionId": remote.id,
            "vin": remote.vehicle.vin,
            "eventDate": remote.updated_at,
            "remoteType": remote.type,
            "eventStatus": status,
        }
        callback = self.world.callbacks.get(remote.callback_id)
        if callback is None:
            return
        if callback.status != "Running":
            self.suppressed.append({"callbackId": callback.id, "event": event})
            return
        outbox = self.outboxes.get(callback.id)
        if outbox is None:
            outbox = self.outboxes[callback.id] = Outbox(self, callback.id)
        outbox.add(event)


def apply_programs(current: dict[int, dict[str, Any]], remote: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The vehicle's programs after a preconditioning remote's Set and Delete entries."""
    programs = dict(current)
    entries = remote.get("preconditioning", {}).get("airConditioning", {}).get("programs", [])
    for entry in entries:
        slot = entry["slot"]
        if entry.get("actionsType", "Set") == "Delete":
            programs.pop(slot, None)
        else:
            programs[slot] = {
                "slot": slot,
                "enabled": entry.get("enabled", True),
                "recurrence": entry.get("recurrence", "Daily"),
                "start": entry["start"],
                "occurence": {"day": list(entry.get("occurence", {}).get("day", []))},
            }
    return programs


class Outbox:
    """Events waiting for one callback's webhook: batched by batchNotify, sent in order, retried by retryPolicy."""

    def __init__(self, engine: Engine, callback_id: str) -> None:
        self.engine = engine
        self.callback_id = callback_id
        self.buffer: list[dict[str, Any]] = []
        self.ready: deque[list[dict[str, Any]]] = deque()
        self.wake = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        engine.spawn(self._run())

    def _callback(self) -> SimCallback | None:
        return self.engine.world.callbacks.get(self.callback_id)

    def _batch_size(self, callback: SimCallback) -> int:
        webhook = callback.subscribe.get("callback", {}).get("webhook", {})
        if any(a.get("type") == "Query" and "$vin" in str(a.get("value")) for a in webhook.get("attributes", [])):
            return 1  # documented: with $vin in the query, each event goes alone
        batch = callback.subscribe.get("batchNotify")
        return int(batch.get("size", 1)) if isinstance(batch, dict) else 1

    def add(self, event: dict[str, Any]) -> None:
        callback = self._callback()
        if callback is None:
            return
        self.buffer.append(event)
        size = self._batch_size(callback)
        if len(self.buffer) >= size:
            self.flush()
        elif self.timer is None:
            batch = callback.subscribe.get("batchNotify") or {}
            window = float(batch.get("timeWindow", 60))
            self.timer = asyncio.get_running_loop().call_later(window / self.engine.speed, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.buffer:
            self.ready.append(self.buffer)
            self.buffer = []
            self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def _run(self) -> None:
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.ready and not self.closed:
                await self._deliver(self.ready.popleft())

    async def _deliver(self, events: list[dict[str, Any]]) -> None:
        engine = self.engine
        engine.batches += 1
        batch = engine.batches
        attempt = 0
        while True:
            callback = self._callback()
            if callback is None:
                return
            if callback.status != "Running":
                engine.suppressed.extend({"callbackId": callback.id, "event": e} for e in events)
                return
            attempt += 1
            delivery = await self._post(callback, events, batch, attempt)
            engine.deliveries.append(delivery)
            if delivery.skipped or (delivery.status is not None and 200 <= delivery.status < 300):
                return
            policy = callback.subscribe.get("retryPolicy") or {"policy": "None"}
            retries = {"None": 1, "Bounded": int(policy.get("retryNumber", 3))}.get(str(policy.get("policy")), 10**9)
            if attempt > retries:
                return
            await asyncio.sleep(float(policy.get("retryDelay", 10)) / engine.speed)

    async def _post(self, callback: SimCallback, events: list[dict[str, Any]], batch: int, attempt: int) -> Delivery:
        webhook = callback.subscribe.get("callback", {}).get("webhook", {})
        target = str(webhook.get("target", ""))
        first = events[0]
        variables = {
            "$vin": first["vin"],
            "$callbackID": callback.id,
            "$remoteType": first["remoteType"],
            "$fleetID": self.engine.world.fleet,
        }
        headers: dict[str, str] = {}
        query: dict[str, str] = {}
        body_attributes = []
        for attribute in webhook.get("attributes", []):
            value = str(attribute.get("value", ""))
            value = variables.get(value, value)
            kind = attribute.get("type")
            if kind == "Header":
                headers[str(attribute.get("key"))] = value
            elif kind == "Query":
                query[str(attribute.get("key"))] = value
            elif kind == "Body":
                body_attributes.append({"key": attribute.get("key"), "value": value})
        delivery = Delivery(callback.id, batch, attempt, events, target)
        if not self.engine.deliver_anywhere and not is_local(target):
            delivery.error = "not sent: the target is not on this machine (sandbox --deliver-anywhere sends it)"
            delivery.skipped = True
            return delivery
        payload = {"callbackId": callback.id, "attributes": body_attributes, "events": events}
        assert self.engine.client is not None
        try:
            response = await self.engine.client.post(target, json=payload, headers=headers, params=query)
            delivery.status = response.status_code
        except httpx.HTTPError as error:
            delivery.error = f"{type(error).__name__}: {error}"
        return delivery
