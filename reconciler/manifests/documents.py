"""One manifest document at a time: kind, schema, field rules, normalisation, model object."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reconciler import schema
from reconciler.diagnostics import Diagnostic, Severity, Source, clip
from reconciler.envsubst import EnvValue, resolve
from reconciler.manifests.normalise import normalise_document
from reconciler.model import MAX_SLOTS, Attribute, Callback, Program, parse_start, start_in_range
from reconciler.yamlload import Document

KIND_SCHEMAS = {
    "Callback": "callback.schema.json",
    "VehicleGroup": "vehicle-group.schema.json",
    "Preconditioning": "preconditioning.schema.json",
}
# variables the API substitutes in webhook attribute values (FLEET-API.md 3.2)
API_VARIABLES = ("$vin", "$callbackID", "$remoteType", "$fleetID")


@dataclass(slots=True)
class Parsed:
    """A document that passed its own checks: its normalised data and what cross-document rules need."""

    kind: str
    name: str
    document: Document
    data: dict[str, Any]
    callback: Callback | None = None
    programs: tuple[Program, ...] = ()
    # slot -> where the program claiming it is written
    slot_sources: dict[int, Source] = field(default_factory=dict)


@dataclass(slots=True)
class Named:
    """The kind and name of a document, known even when the rest of it is invalid."""

    kind: str
    name: str
    source: Source


def _quoted(value: Any) -> str:
    return f"'{clip(value)}'" if isinstance(value, str) else schema.describe(value)


def identify(document: Document, found: list[Diagnostic]) -> Named | None:
    """The document's kind and name, or None (with a diagnostic) when its kind is unusable."""
    data = document.data
    if not isinstance(data, dict):
        found.append(
            Diagnostic(
                document.source,
                "document-type",
                f"a manifest document must be a mapping with kind and name, not {schema.describe(data)}",
            )
        )
        return None
    kind = data.get("kind")
    if kind is None:
        found.append(Diagnostic(document.source, "missing-field", "missing required field 'kind'"))
        return None
    if not isinstance(kind, str) or kind not in KIND_SCHEMAS:
        found.append(
            Diagnostic(
                document.position(["kind"]),
                "kind-unknown",
                f"unknown kind {_quoted(kind)}: use one of {', '.join(KIND_SCHEMAS)}"
                f"{schema.suggest(kind, KIND_SCHEMAS)}",
            )
        )
        return None
    name = data.get("name")
    if not isinstance(name, str):
        return Named(kind, "", document.source)
    return Named(kind, name, document.position(["name"]))


# Schema findings about one value whose document keeps its shape: the value is reported and left out, and the
# document still takes part in the cross-document rules (references, slot conflicts, slots per vehicle), so one
# run reports everything. Any other schema finding leaves the document out of those rules, which need its shape.
VALUE_RULES = frozenset({"vin-format", "start-format", "days-unknown", "slot-range"})
_VIN = re.compile(schema.VIN_PATTERN)


def parse(
    document: Document, kind: str, environ: Mapping[str, str], strict: bool, found: list[Diagnostic]
) -> Parsed | None:
    """Check one identified document and normalise it.

    Every finding is reported. The result is None only when the document's shape is unusable (a schema finding
    outside VALUE_RULES, or an unusable callback target); a document with other errors is still returned, for
    the cross-document rules, and the model is never built from it (any error discards the whole model).
    """
    before = len(found)
    errors = schema.check(document, KIND_SCHEMAS[kind])
    found.extend(errors)
    data = document.data
    reported = {d.source for d in errors}
    if kind == "Preconditioning":
        _check_programs(document, data.get("programs"), reported, found)
        _check_duplicates(document, ("vehicles", "vins"), found, upper=True)
    elif kind == "VehicleGroup":
        _check_duplicates(document, ("vins",), found, upper=True)
    own_name = document.position(["name"])
    if any(d.rule not in VALUE_RULES and not (d.rule == "name-format" and d.source == own_name) for d in errors):
        return None
    lenient = any(d.is_error for d in found[before:])
    parsed = Parsed(
        kind, data["name"], document, normalise_document(_usable(data) if lenient else data, lenient=lenient)
    )
    if kind == "Callback":
        parsed.callback = _callback(document, parsed.data, environ, strict, found)
        if parsed.callback is None:
            return None
    elif kind == "Preconditioning":
        parsed.programs = tuple(
            Program(p["slot"], p["start"], tuple(p["days"]), p["recurrence"], p["enabled"])
            for p in parsed.data["programs"]
        )
        parsed.slot_sources = {}
        for index, program in enumerate(data["programs"]):
            if any(p["slot"] == program["slot"] for p in parsed.data["programs"]):
                parsed.slot_sources.setdefault(program["slot"], document.position(["programs", index, "slot"]))
    return parsed


def _usable(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a document whose findings are all about single values, without those values: malformed VINs
    are dropped, as are programs whose slot does not exist and all but the first program claiming a slot."""
    out = dict(data)
    if "vins" in data:
        out["vins"] = [vin for vin in data["vins"] if _VIN.match(vin)]
    if "vehicles" in data:
        out["vehicles"] = {**data["vehicles"]}
        if "vins" in data["vehicles"]:
            out["vehicles"]["vins"] = [vin for vin in data["vehicles"]["vins"] if _VIN.match(vin)]
    if "programs" in data:
        seen: set[int] = set()
        programs = []
        for program in data["programs"]:
            if 1 <= program["slot"] <= MAX_SLOTS and program["slot"] not in seen:
                seen.add(program["slot"])
                programs.append(program)
        out["programs"] = programs
    return out


def _check_programs(document: Document, programs: Any, reported: set[Source], found: list[Diagnostic]) -> None:
    """Start times and slots claimed twice in one schedule, for every program with the shape to check; a value
    the schema already reported is not reported again."""
    if not isinstance(programs, list):
        return
    first_line: dict[int, int] = {}
    for index, program in enumerate(programs):
        if not isinstance(program, dict):
            continue
        start = program.get("start")
        start_at = document.position(["programs", index, "start"])
        if isinstance(start, str) and start_at not in reported:
            parsed = parse_start(start)
            if parsed is None:
                found.append(
                    Diagnostic(
                        start_at,
                        "start-format",
                        f'start \'{start}\' is not a time of day: use "HH:MM" or "PT7H30M"',
                    )
                )
            elif not start_in_range(*parsed):
                found.append(Diagnostic(start_at, "start-range", f"start '{start}' is outside 00:00..23:59"))
        slot = program.get("slot")
        if not isinstance(slot, int) or isinstance(slot, bool):
            continue
        slot_at = document.position(["programs", index, "slot"])
        if slot in first_line:
            found.append(
                Diagnostic(
                    slot_at,
                    "slot-conflict",
                    f"slot {slot} appears twice in this schedule (first at line {first_line[slot]})",
                )
            )
        else:
            first_line[slot] = slot_at.line


def _check_duplicates(document: Document, path: tuple[str, ...], found: list[Diagnostic], upper: bool) -> None:
    values: Any = document.data
    for step in path:
        values = values.get(step, []) if isinstance(values, dict) else []
    if not isinstance(values, list):
        return  # the schema reported it
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if not isinstance(value, str):
            continue
        key = value.upper() if upper else value
        if key in seen:
            first = document.position([*path, seen[key]])
            found.append(
                Diagnostic(
                    document.position([*path, index]),
                    "duplicate-vin",
                    f"VIN {key} is listed twice (first at line {first.line})",
                    Severity.WARNING,
                )
            )
        else:
            seen[key] = index


def _env_value(
    document: Document,
    path: list[str | int],
    what: str,
    environ: Mapping[str, str],
    strict: bool,
    found: list[Diagnostic],
) -> EnvValue | None:
    value: Any = document.data
    for step in path:
        value = value[step]
    resolved = resolve(value, document.position(path), environ)
    if isinstance(resolved, Diagnostic):
        found.append(resolved)
        return None
    if resolved.missing:
        found.append(resolved.missing_diagnostic(what, Severity.ERROR if strict else Severity.WARNING))
        if strict:
            return None
    return resolved


def _callback(
    document: Document, data: dict[str, Any], environ: Mapping[str, str], strict: bool, found: list[Diagnostic]
) -> Callback | None:
    target = _env_value(document, ["webhook", "target"], "webhook.target", environ, strict, found)
    if target is not None and target.value is not None:
        # a target made of ${env:...} may carry a secret (a token in its path or query): name the reference
        problem = target_problem(target.value, target.raw if target.sensitive else None)
        if problem:
            found.append(Diagnostic(target.source, "webhook-https", problem))
    attributes = []
    for section, kind in (("headers", "Header"), ("query", "Query"), ("body", "Body")):
        for key in data["webhook"][section]:
            value = _env_value(document, ["webhook", section, key], f"webhook.{section}.{key}", environ, strict, found)
            if value is None:
                continue
            if value.raw.startswith("$") and not value.raw.startswith("${") and value.raw not in API_VARIABLES:
                found.append(
                    Diagnostic(
                        value.source,
                        "webhook-variable",
                        f"unknown variable {value.raw}: the API substitutes {', '.join(API_VARIABLES)}",
                        Severity.WARNING,
                    )
                )
            if kind != "Body" and value.value == "":
                found.append(_empty_credential(value, f"webhook.{section}.{key}"))
            attributes.append(Attribute(kind, key, value))
    credentials = [
        raw for section in ("headers", "query") for raw in data["webhook"][section].values() if raw not in API_VARIABLES
    ]
    if not credentials:
        found.append(
            Diagnostic(
                document.position(["webhook"], key=True),
                "webhook-unauthenticated",
                f"callback '{data['name']}' has no headers or query attribute to authenticate its notifications: "
                "`webhook serve` accepts them from anyone (add e.g. headers: {Authorization: ${env:WEBHOOK_AUTH}})",
                Severity.WARNING,
            )
        )
    if target is None:
        return None
    # with other errors the callback is still returned, for the rules about schedules that use it; the model
    # is never built from it (any error discards the whole model)
    return Callback(
        name=data["name"],
        target=target,
        webhook_name=data["webhook"]["name"],
        attributes=tuple(attributes),
        remote_types=tuple(data["remoteTypes"]),
        retry_policy=data.get("retryPolicy"),
        batch_notify=data.get("batchNotify"),
        status=data["status"],
        source=document.source,
    )


def _empty_credential(value: EnvValue, what: str) -> Diagnostic:
    """A Header or Query attribute the receiver checks, whose value is empty: it would match a missing one."""
    how = f"{value.raw} is set to an empty value" if value.sensitive else "the value is empty"
    return Diagnostic(
        value.source,
        "webhook-empty-credential",
        f"{what}: {how}; an empty credential lets anyone post notifications for this callback",
    )


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def target_problem(url: str, shown: str | None = None) -> str | None:
    """Why a webhook target is unacceptable, or None: https, or http to this machine only. The message names
    `shown` (what the manifest wrote) instead of the URL when given."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    url = clip(shown if shown is not None else url, 200)
    if parts.scheme not in ("http", "https") or not host:
        return f"webhook target '{url}' is not an http(s) URL with a host"
    if parts.scheme == "https":
        return None
    local = host in LOCAL_HOSTS or host.endswith(".localhost")
    if not local:
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
    if local:
        return None
    return f"webhook target '{url}' must use https (http is allowed for localhost only)"
