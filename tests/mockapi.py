"""A Fleet API on httpx.MockTransport: a recorder of requests that answers as a test says, and a client on it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from reconciler.api.client import ApiConfig, FleetClient, RetryPolicy

CONFIG = ApiConfig("https://api.example/connectedcar/v3", "app-1", "mzp", "pw", rate_limit=1000, parallelism=2)
FLEET = "fleet-1"


class Recorder:
    """Records every request; answers from a list (an exception in it is raised) or from a function."""

    def __init__(self, answers: list[httpx.Response | Exception] | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self.answers):
            return self.answers(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(recorder: Recorder, sleeps: list[float] | None = None) -> FleetClient:
    """A client of CONFIG on `recorder`, retrying 4 times; its sleeps are recorded in `sleeps`, not slept."""
    record = sleeps if sleeps is not None else []
    return FleetClient(
        CONFIG,
        FLEET,
        transport=httpx.MockTransport(recorder),
        retry=RetryPolicy(attempts=4, base=0.5, cap=2.0),
        sleep=record.append,
    )


def error(status: int, code: int, message: str = "nope", **headers: str) -> httpx.Response:
    """An error answer in the API's shape."""
    return httpx.Response(
        status, json={"code": code, "uuid": "u-1", "message": message, "timestamp": "t"}, headers=headers
    )
