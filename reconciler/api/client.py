"""The Fleet Owner Web API (v3) as reconciler uses it.

`_send` maps every HTTP outcome to a typed error in one place and tells the run's breaker; `_call` wraps it
with the retry policy: 429 and 5xx answers, connection failures and timeouts are retried with bounded
exponential backoff and jitter, honouring Retry-After up to `max_retry_wait`; a write that may have reached
the API is retried only when repeating it is harmless (`retry_unknown`), otherwise its caller is told the
outcome is unknown. Every wait ends early when the run stops (a signal, or the breaker). Every answer's
quota headers are read: what is left of the day's and the second's quotas (`quota`), and the daily budget.

Longer than most modules, on purpose: status codes, retries, the breaker's judgement and the quota headers are
one policy over one request loop (`_send`, `_call`), and every endpoint below is a line or two on top of it.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from reconciler import __version__
from reconciler.api import MAX_RETRY_WAIT, PARALLELISM, RATE_LIMIT, TIMEOUT, wire
from reconciler.api.breaker import Breaker, DailyBudget
from reconciler.api.limiter import RateLimiter
from reconciler.clock import isotime, utcnow
from reconciler.errors import (
    ApiAnswerError,
    ApiError,
    ApiRequestError,
    ApiStatusError,
    ApiUnavailableError,
    RunInterrupted,
)

CONNECT_TIMEOUT = 10.0  # seconds: an unreachable API is known quickly even when api.timeout is long
DAY = 86_400.0  # seconds: the API's daily quota counts each request for this long (a sliding window)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


@dataclass(frozen=True)
class ApiConfig:
    url: str
    client_id: str
    username: str
    password: str
    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None
    rate_limit: float = RATE_LIMIT
    parallelism: int = PARALLELISM
    timeout: float = TIMEOUT
    max_retry_wait: float = MAX_RETRY_WAIT
    daily_budget: DailyBudget | None = None


def tls_context(config: ApiConfig) -> ssl.SSLContext:
    """Server verification (system CAs, or the configured bundle) and, for mutual TLS, the client certificate."""
    context = ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else ssl.create_default_context()
    if config.client_cert:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


class FleetClient:
    def __init__(
        self,
        config: ApiConfig,
        fleet: str,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        limits = httpx.Limits(max_connections=config.parallelism + 2, max_keepalive_connections=config.parallelism + 2)
        self.base = httpx.URL(config.url.rstrip("/") + "/")
        self.http = httpx.Client(
            base_url=self.base,
            auth=(config.username, config.password),
            params={"client_id": config.client_id},
            verify=tls_context(config),
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, CONNECT_TIMEOUT)),
            limits=limits,
            transport=transport,
            headers={"Accept": "application/hal+json, application/json", "User-Agent": f"reconciler/{__version__}"},
        )
        self.fleet = fleet
        self.retry = retry
        self.max_retry_wait = config.max_retry_wait
        self.stop = stop if stop is not None else threading.Event()
        # the API as messages name it: never with a user name or password the configured URL may carry
        shown = self.base.copy_with(userinfo=b"***") if self.base.userinfo else self.base
        self.breaker = Breaker(str(shown).rstrip("/"), self.stop)
        self.budget = config.daily_budget
        # requests left in the API's quota windows, as its last answer said: "day" and "second"
        self.quota: dict[str, int] = {}
        self._sleep = sleep
        self.limiter = RateLimiter(config.rate_limit, sleep=self.wait)
        self.rng = random.Random()
        self.retries = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- stopping ------------------------------------------------------------------------------------------

    def halted(self) -> ApiError | RunInterrupted:
        """Why no more requests go out: the breaker's reason, or the user's signal."""
        if self.breaker.tripped:
            return self.breaker.error()
        return RunInterrupted("stopped by a signal before the request was sent")

    def wait(self, seconds: float) -> None:
        """Sleep, unless the run stops meanwhile: then raise at once."""
        if self._sleep is not None:  # tests count the waits instead of sleeping
            self._sleep(seconds)
        elif seconds > 0 and self.stop.wait(seconds):
            raise self.halted()
        if self.stop.is_set():
            raise self.halted()

    # ---- one place for status codes, one for retries ---------------------------------------------------

    def _send(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        if self.stop.is_set():
            raise self.halted()
        self.limiter.acquire()
        target = _target(path)
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.PoolTimeout as error:  # our own connection pool, not the API
            raise ApiRequestError(f"{method} {_shown(path)}: {type(error).__name__}: {error}", sent=False) from error
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            cause = f"{type(error).__name__}: {error}"
            self.breaker.failed(target, cause, unreachable=True)
            raise ApiRequestError(f"{method} {_shown(path)}: {cause}", sent=False) from error
        except httpx.TransportError as error:
            cause = f"{type(error).__name__}: {error}"
            self.breaker.failed(target, cause)
            raise ApiRequestError(f"{method} {_shown(path)}: {cause}", sent=True) from error
        self._count_quota(response.headers)
        if response.status_code >= 400:
            failure = _status_error(response)
            self._judge(failure, target)
            raise failure
        self.breaker.answered()
        if response.headers.get("X-RateLimit-Remaining-2") == "0":
            # the API's one-second window is used up: let it refill a little before anyone sends again
            limit = _count(response.headers.get("X-RateLimit-Limit-2"))
            self.limiter.pause(1.0 / limit if limit else 1.0)
        return response

    def _judge(self, failure: ApiStatusError, target: str) -> None:
        """What an error answer says about the run as a whole."""
        if failure.status == 401:
            self.breaker.trip(
                f"refused the credentials ({failure}): check api.username, api.password and api.client_id"
            )
        elif failure.status == 403 and not target.startswith("vehicle "):
            self.breaker.trip(f"refused access to fleet {self.fleet} ({failure})")
        elif failure.status == 403 or failure.status >= 500:
            self.breaker.failed(target, str(failure))  # a vehicle out of reach fails alone; many in a row stop
        elif failure.status == 429 and (failure.retry_after or 0) > self.max_retry_wait:
            wait = failure.retry_after or 0.0
            resets = utcnow() + timedelta(seconds=wait)
            self.breaker.trip(
                f"asks to wait {wait:,.0f} s before the next request (HTTP 429: its quota resets at "
                f"{isotime(resets)}), longer than api.max_retry_wait ({self.max_retry_wait:g} s)",
                resets_at=resets,
            )
        else:
            self.breaker.answered()  # an answer about this request only: the API is there and takes us

    def _count_quota(self, headers: httpx.Headers) -> None:
        """Note what the API's quota windows have left; stop the run once the daily budget is used up."""
        limit, left = _count(headers.get("X-RateLimit-Limit-1")), _count(headers.get("X-RateLimit-Remaining-1"))
        if left is not None:
            self.quota["day"] = left
        second = _count(headers.get("X-RateLimit-Remaining-2"))
        if second is not None:
            self.quota["second"] = second
        budget = self.budget
        if budget is None or limit is None or left is None or not budget.spent(limit, left):
            return
        wait = _seconds(headers.get("X-RateLimit-Reset"))
        resets = utcnow() + timedelta(seconds=DAY if wait is None else wait)
        when = (
            f"until {isotime(resets)}, when the API says its quota resets"
            if wait is not None
            else f"until the day's requests age out of the API's 24-hour window: by {isotime(resets)} at the latest"
        )
        self.breaker.halt(
            f"stopped: api.daily_budget is spent: {limit - left:,} of the Fleet API's {limit:,} requests a day used, "
            f"and the budget ({budget.text}) allows {budget.allowed(limit):,}; nothing more is sent {when}",
            resets_at=resets,
        )

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        retry_unknown: bool = True,
        params: dict[str, str] | None = None,
    ) -> Any:
        attempt = 0
        reached = False  # whether an attempt may have done the work: the API answered 5xx, or no answer came
        try:
            while True:
                try:
                    response = self._send(method, path, body, params)
                except ApiStatusError as error:
                    reached = reached or error.status >= 500
                    if self.breaker.tripped:
                        raise self.breaker.error() from error
                    if not error.retryable or attempt + 1 >= self.retry.attempts:
                        raise
                    if error.status >= 500 and not retry_unknown:
                        raise  # a 500 may come after the work was done: the caller decides
                    if error.retry_after is not None:
                        self.limiter.pause(error.retry_after)
                        delay = 0.0
                    else:
                        delay = self.retry.delay(attempt, self.rng)
                except ApiRequestError as error:
                    reached = reached or error.sent
                    if self.breaker.tripped:
                        raise self.breaker.error() from error
                    if (error.sent and not retry_unknown) or attempt + 1 >= self.retry.attempts:
                        raise
                    delay = self.retry.delay(attempt, self.rng)
                else:
                    if response.status_code == 204 or not response.content:
                        return None
                    try:
                        return response.json()
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        raise ApiAnswerError(f"{method} {_shown(path)}: the answer is not JSON ({error})") from error
                attempt += 1
                self.retries += 1
                if delay:
                    self.wait(delay)
        except (RunInterrupted, ApiUnavailableError) as error:  # the run stopped during this call
            error.call_sent = reached
            raise

    # ---- paging -------------------------------------------------------------------------------------------

    def _pages(self, path: str, key: str) -> Iterator[dict[str, Any]]:
        url: str = path
        params: dict[str, str] = {"pageSize": "60"}
        seen: set[str] = set()
        while True:
            page = _object(self._call("GET", url, params=params), f"GET {path}")
            items = (_dict(page.get("_embedded"))).get(key) or []
            if not isinstance(items, list):
                raise ApiAnswerError(f"GET {path}: _embedded.{key} is not a list")
            yield from (item for item in items if isinstance(item, dict))
            following = _dict(_dict(page.get("_links")).get("next")).get("href")
            if not isinstance(following, str) or not following or following in seen:
                return
            seen.add(following)
            link = self.base.join(following)
            if (link.scheme, link.host, link.port) != (self.base.scheme, self.base.host, self.base.port):
                # credentials go to the configured API only, wherever a link points
                raise ApiAnswerError(
                    f"GET {path}: the next page's link points to {link.scheme}://{link.host}, not to the "
                    f"configured API {self.base.scheme}://{self.base.host}; not followed"
                )
            # httpx replaces a URL's query with the client's params: pass the link's query as params instead
            url = str(link.copy_with(query=None))
            params = {name: value for name, value in link.params.items() if name != "client_id"}

    # ---- endpoints ----------------------------------------------------------------------------------------

    @property
    def _fleet(self) -> str:
        return f"fleets/{self.fleet}"

    def vehicles(self) -> dict[str, str]:
        """VIN -> vehicle id for every vehicle of the fleet (entries without a VIN and an id are left out)."""
        found = {}
        for vehicle in self._pages(f"{self._fleet}/vehicles", "vehicles"):
            vin, vehicle_id = vehicle.get("vin"), vehicle.get("id")
            if isinstance(vin, str) and vin and isinstance(vehicle_id, str | int) and str(vehicle_id):
                found[vin.upper()] = str(vehicle_id)
        return found

    def vehicle_status(self, vehicle_id: str) -> dict[str, Any]:
        path = f"{self._fleet}/vehicles/{vehicle_id}/status"
        return _object(self._call("GET", path), f"GET {path}")

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._fleet}/remote/callbacks", "callbacks"))

    def callback(self, callback: str) -> dict[str, Any]:
        path = f"{self._fleet}/remote/callbacks/{callback}"
        return _object(self._call("GET", path), f"GET {path}")

    def create_callback(self, body: dict[str, Any]) -> str:
        """The new callback's id. A failure whose outcome is unknown raises with `sent`: look the label up."""
        answer = self._call("POST", f"{self._fleet}/remote/callbacks", body, retry_unknown=False)
        return wire.created_id(answer)

    def update_callback(self, callback: str, body: dict[str, Any]) -> None:
        self._call("PUT", f"{self._fleet}/remote/callbacks/{callback}", body)

    def set_callback_status(self, callback: str, status: str) -> None:
        self._call("PUT", f"{self._fleet}/remote/callbacks/{callback}/status", {"status": status})

    def delete_callback(self, callback: str) -> None:
        try:
            self._call("DELETE", f"{self._fleet}/remote/callbacks/{callback}")
        except ApiStatusError as error:
            if error.status != 404:  # gone already: what we wanted
                raise

    def post_remote(self, vehicle_id: str, callback: str, body: dict[str, Any]) -> tuple[str, str]:
        """(remoteActionId, type). When an answer is lost (the request may have reached the API), the
        vehicle's remote actions are looked up by the body's label first, and an action already accepted is
        adopted: sending it again would fail with SameActionInProgress while the first one runs."""
        path = f"{self._fleet}/vehicles/{vehicle_id}/callbacks/{callback}/remotes"
        label = body.get("label")
        attempt = 0
        while True:
            try:
                return wire.remote_ref(self._call("POST", path, body, retry_unknown=False), f"POST {path}")
            except (ApiRequestError, ApiStatusError) as error:
                unknown = isinstance(error, ApiRequestError) or error.status >= 500
                if not unknown or attempt + 1 >= self.retry.attempts:
                    raise
                if isinstance(label, str) and label:
                    found = self.find_remote(vehicle_id, callback, label)
                    if found is not None:
                        return found
            attempt += 1
            self.retries += 1
            self.wait(self.retry.delay(attempt, self.rng))

    def find_remote(self, vehicle_id: str, callback: str, label: str) -> tuple[str, str] | None:
        """The remote action on this vehicle and callback whose body carried `label`, if the API has one."""
        path = f"{self._fleet}/vehicles/{vehicle_id}/callbacks/{callback}/remotes"
        for action in self._pages(path, "remoteActions"):
            if wire.remote_label(action) == label and action.get("remoteActionId"):
                return wire.remote_ref(action, f"GET {path}")
        return None

    def remote(self, vehicle_id: str, callback: str, action: str) -> dict[str, Any]:
        path = f"{self._fleet}/vehicles/{vehicle_id}/callbacks/{callback}/remotes/{action}"
        return _object(self._call("GET", path), f"GET {path}")


def _object(answer: Any, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ApiAnswerError(f"{what}: the answer is not a JSON object")
    return answer


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _target(path: str) -> str:
    """What a request is about, for the breaker: `vehicle ID` for a vehicle's endpoints, else the path."""
    parts = path.split("/")
    if len(parts) > 3 and parts[0] == "fleets" and parts[2] == "vehicles":
        return f"vehicle {parts[3]}"
    return path


def _shown(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


def _status_error(response: httpx.Response) -> ApiStatusError:
    code = uuid = None
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), int) else None
        uuid = body.get("uuid") if isinstance(body.get("uuid"), str) else None
        message = str(body.get("message") or message)
    message = "".join(c if c.isprintable() else " " for c in message[:500])  # the API's words, shown safely
    # the longer of the waits the API asks for: a spent daily quota may say so in either header
    waits = [_seconds(response.headers.get(header)) for header in ("Retry-After", "X-RateLimit-Reset")]
    known = [wait for wait in waits if wait is not None]
    retry_after = max(known) if known else None
    return ApiStatusError(response.status_code, message, code=code, uuid=uuid, retry_after=retry_after)


def _count(value: str | None) -> int | None:
    """A request count from a quota header; None when absent or not a plain number."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 12:
        return None
    return int(value)


def _seconds(value: str | None) -> float | None:
    """A wait in seconds from a header; None when absent or not a finite, non-negative number."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 10**9 else None
