"""The Fleet Owner Web API (v3) as reconciler uses it.

`_send` maps every HTTP outcome to a typed error in one place; `_call` wraps it with the retry policy:
429 and 5xx answers, connection failures and timeouts are retried with bounded exponential backoff and
jitter, honouring Retry-After; a write that may have reached the API is retried only when repeating it is
harmless (`retry_unknown`), otherwise its caller is told the outcome is unknown.
"""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler import __version__
from reconciler.api.limiter import RateLimiter
from reconciler.errors import ApiRequestError, ApiStatusError


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
    rate_limit: float = 20.0
    parallelism: int = 8
    timeout: float = 30.0


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        limits = httpx.Limits(max_connections=config.parallelism + 2, max_keepalive_connections=config.parallelism + 2)
        self.http = httpx.Client(
            base_url=config.url.rstrip("/") + "/",
            auth=(config.username, config.password),
            params={"client_id": config.client_id},
            verify=tls_context(config),
            timeout=config.timeout,
            limits=limits,
            transport=transport,
            headers={"Accept": "application/hal+json, application/json", "User-Agent": f"reconciler/{__version__}"},
        )
        self.fleet = fleet
        self.retry = retry
        self.limiter = RateLimiter(config.rate_limit, sleep=sleep)
        self.sleep = sleep
        self.rng = random.Random()
        self.requests = 0
        self.retries = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one place for status codes, one for retries ---------------------------------------------------

    def _send(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        self.limiter.acquire()
        self.requests += 1
        try:
            response = self.http.request(method, path, json=body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise ApiRequestError(f"{method} {path}: {type(error).__name__}: {error}", sent=False) from error
        except httpx.TransportError as error:
            raise ApiRequestError(f"{method} {path}: {type(error).__name__}: {error}", sent=True) from error
        if response.status_code >= 400:
            raise _status_error(response)
        if response.headers.get("X-RateLimit-Remaining-2") == "0":
            # the API's one-second window is used up: let it refill a little before anyone sends again
            limit = response.headers.get("X-RateLimit-Limit-2", "")
            self.limiter.pause(1.0 / float(limit) if limit.isdigit() and int(limit) else 1.0)
        return response

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
        while True:
            try:
                response = self._send(method, path, body, params)
            except ApiStatusError as error:
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
                if (error.sent and not retry_unknown) or attempt + 1 >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt, self.rng)
            else:
                if response.status_code == 204 or not response.content:
                    return None
                try:
                    return response.json()
                except json.JSONDecodeError as error:
                    raise ApiStatusError(response.status_code, f"answer is not JSON: {error}") from error
            attempt += 1
            self.retries += 1
            if delay:
                self.sleep(delay)

    # ---- paging -------------------------------------------------------------------------------------------

    def _pages(self, path: str, key: str) -> Iterator[dict[str, Any]]:
        url: str = path
        params: dict[str, str] = {"pageSize": "60"}
        seen: set[str] = set()
        while True:
            page = self._call("GET", url, params=params)
            yield from (page.get("_embedded") or {}).get(key, [])
            following = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not following or following in seen:
                return
            seen.add(following)
            # httpx replaces a URL's query with the client's params: pass the link's query as params instead
            link = httpx.URL(following)
            url = str(link.copy_with(query=None))
            params = {name: value for name, value in link.params.items() if name != "client_id"}

    # ---- endpoints ----------------------------------------------------------------------------------------

    @property
    def _fleet(self) -> str:
        return f"fleets/{self.fleet}"

    def vehicles(self) -> dict[str, str]:
        """VIN -> vehicle id for every vehicle of the fleet."""
        return {str(v["vin"]).upper(): str(v["id"]) for v in self._pages(f"{self._fleet}/vehicles", "vehicles")}

    def vehicle_status(self, vehicle_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self._call("GET", f"{self._fleet}/vehicles/{vehicle_id}/status")
        return status

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._fleet}/remote/callbacks", "callbacks"))

    def callback(self, callback: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", f"{self._fleet}/remote/callbacks/{callback}")
        return answer

    def create_callback(self, body: dict[str, Any]) -> str:
        """The new callback's id. A failure whose outcome is unknown raises with `sent`: look the label up."""
        answer = self._call("POST", f"{self._fleet}/remote/callbacks", body, retry_unknown=False)
        return callback_id(answer)

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
        """(remoteActionId, type). Re-sent on an unknown outcome: a Set by slot is idempotent."""
        answer = self._call("POST", f"{self._fleet}/vehicles/{vehicle_id}/callbacks/{callback}/remotes", body)
        kind = answer.get("type")
        if isinstance(kind, list):  # older answers give the type as a list
            kind = kind[0] if kind else None
        return str(answer["remoteActionId"]), str(kind or "")

    def remote(self, vehicle_id: str, callback: str, action: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call(
            "GET", f"{self._fleet}/vehicles/{vehicle_id}/callbacks/{callback}/remotes/{action}"
        )
        return answer


def callback_id(answer: Any) -> str:
    """The id in a callback answer: `callbackId` (CallbackRef) or `id` (RemoteCallback)."""
    if isinstance(answer, dict):
        for key in ("callbackId", "id"):
            if answer.get(key):
                return str(answer[key])
    raise ApiStatusError(200, f"the answer names no callback id: {str(answer)[:200]}")


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
    retry_after = None
    for header in ("Retry-After", "X-RateLimit-Reset"):
        value = response.headers.get(header)
        if value is not None:
            try:
                retry_after = float(value)
                break
            except ValueError:
                continue
    return ApiStatusError(response.status_code, message, code=code, uuid=uuid, retry_after=retry_after)
