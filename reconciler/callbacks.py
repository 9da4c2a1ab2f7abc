"""A desired Callback as reconciler records and compares it: the spec (secrets masked) and keyed fingerprints
of its secrets. The body the API takes is built in reconciler.api.wire."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from reconciler.envsubst import SENSITIVE
from reconciler.model import Callback

SECTIONS = {"Header": "headers", "Query": "query", "Body": "body"}


def callback_spec(callback: Callback) -> dict[str, Any]:
    """The callback as recorded and compared: manifest-shaped, sensitive values replaced by a marker."""
    webhook: dict[str, Any] = {
        "target": SENSITIVE if callback.target.sensitive else callback.target.raw,
        "name": callback.webhook_name,
        "headers": {},
        "query": {},
        "body": {},
    }
    for attribute in callback.attributes:
        webhook[SECTIONS[attribute.kind]][attribute.key] = SENSITIVE if attribute.sensitive else attribute.value.raw
    spec: dict[str, Any] = {"webhook": webhook, "remoteTypes": list(callback.remote_types)}
    if callback.retry_policy is not None:
        spec["retryPolicy"] = dict(callback.retry_policy)
    if callback.batch_notify is not None:
        spec["batchNotify"] = dict(callback.batch_notify)
    return spec


def callback_secrets(callback: Callback) -> dict[str, str | None]:
    """Path -> resolved value (None while its variable is unset) of every sensitive value."""
    found: dict[str, str | None] = {}
    if callback.target.sensitive:
        found["webhook.target"] = callback.target.value
    for attribute in callback.attributes:
        if attribute.sensitive:
            found[f"webhook.{SECTIONS[attribute.kind]}.{attribute.key}"] = attribute.value.value
    return found


def fingerprint(key: str, path: str, value: str) -> str:
    """A keyed fingerprint of a secret: enough to see it changed, useless to recover it."""
    digest = hmac.new(key.encode(), f"{path}\0{value}".encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def fingerprints(callback: Callback, key: str) -> dict[str, str]:
    return {
        path: fingerprint(key, path, value) for path, value in callback_secrets(callback).items() if value is not None
    }
