"""reconciler.yaml -> Settings.

Order of precedence: command-line flags (applied by the CLI), then `RECONCILER_*` environment variables, then
the file, then defaults. Relative paths are relative to the directory of reconciler.yaml.

Longer than most modules, on purpose: every setting's type, default, range check and message naming its line
sits in one place, so a setting is added in one module (and its schema) rather than spread over the commands.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler import schema
from reconciler.api import MAX_RETRY_WAIT, PARALLELISM, RATE_LIMIT, TIMEOUT
from reconciler.api.breaker import DailyBudget
from reconciler.diagnostics import Diagnostic, Severity, Source, clip
from reconciler.envsubst import ENV_REF, EnvValue, resolve
from reconciler.errors import ConfigError
from reconciler.manifests.files import OUTSIDE_SETTING, ManifestPaths, display_name, inside
from reconciler.plan import Limit
from reconciler.yamlload import MAX_INT_DIGITS, Document, load_file

ENV_PREFIX = "RECONCILER_"
# variables the CLI reads itself, so they are not settings overrides
CLI_VARIABLES = frozenset({"RECONCILER_CONFIG", "RECONCILER_CHDIR", "RECONCILER_DEBUG"})
MAX_PENDING_TIMEOUT = 7 * 24 * 3600  # seconds; the schema bounds the number of seconds, this the 90s/30m/2h form


def url_problem(url: str) -> str | None:
    """Why `url` cannot be the API's base URL, or None: it must be http(s) with a host (and a valid port)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    return None


def shown_url(url: str) -> str:
    """A URL as a message shows it: cut short, and without a user name or password it may carry."""
    return clip(re.sub(r"//[^/?#]*@", "//***@", url, count=1), 200)


def _url_message(value: EnvValue, resolved: str) -> str | None:
    problem = url_problem(resolved)
    return None if problem is None else f"api.url '{clip(value.raw)}' {problem}"


def _dsn_message(value: EnvValue, resolved: str) -> str | None:
    """Why the resolved state.dsn cannot be used; never any part of it (a DSN carries the password)."""
    from reconciler.state.dsn import INVALID_DSN, dsn_problem

    problem = dsn_problem(resolved)
    if problem is None:
        return None
    if problem == "is empty":  # libpq would quietly use its defaults (localhost:5432) for an empty DSN
        names = ", ".join(f"${name}" for name in ENV_REF.findall(value.raw))
        set_empty = f" ({names} is set to an empty string)" if names else ""
        return f"state.dsn is empty{set_empty}: it must name the PostgreSQL database (URL or key=value)"
    return INVALID_DSN


# settings whose value is checked once resolved, for those written as ${env:...}: the rule, and the message
_RESOLVED_CHECKS: dict[str, tuple[str, Callable[[EnvValue, str], str | None]]] = {
    "api.url": ("api-url", _url_message),
    "state.dsn": ("state-dsn", _dsn_message),
    # an empty shared secret would let anyone wake the controller: refused, as a variable set to nothing
    "serve.push_secret": (
        "push-secret-empty",
        lambda value, resolved: None if resolved else f"serve.push_secret '{clip(value.raw)}' is empty",
    ),
}


@dataclass(frozen=True, slots=True)
class ApiSettings:
    url: EnvValue | None = None
    client_id: EnvValue | None = None
    username: EnvValue | None = None
    password: EnvValue | None = None
    client_cert: EnvValue | None = None
    client_key: EnvValue | None = None
    ca_bundle: EnvValue | None = None
    rate_limit: float = RATE_LIMIT
    parallelism: int = PARALLELISM
    timeout: float = TIMEOUT
    max_retry_wait: float = MAX_RETRY_WAIT
    daily_budget: DailyBudget | None = None


@dataclass(frozen=True, slots=True)
class StateSettings:
    backend: str = "file"
    path: EnvValue | None = None
    dsn: EnvValue | None = None
    fingerprint_key: EnvValue | None = None
    schema: str = "reconciler"


@dataclass(frozen=True, slots=True)
class SyncWindow:
    """A time when `serve` may (allow) or may not (deny) change the fleet: from each start of `schedule` (cron,
    in `timezone`) for `duration` seconds."""

    kind: str
    schedule: str
    duration: float
    timezone: str
    source: Source


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The controller's settings (`serve:`): how often it reconciles, its leader lease, its sync windows."""

    interval: float = 60.0
    lease_period: float = 30.0
    windows: tuple[SyncWindow, ...] = ()
    windows_bind_manual_apply: bool = False
    push_secret: EnvValue | None = None
    workdir: EnvValue | None = None
    # vehicles whose status the leader reads per hour to find drift (0: none), and whether it repairs what it finds
    drift_reads_per_hour: int = 0
    self_heal: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    file: Path
    root: Path
    fleet: EnvValue | None = None
    manifests: tuple[Path, ...] = ()
    api: ApiSettings = ApiSettings()
    state: StateSettings = StateSettings()
    guards: Mapping[str, Limit] = field(default_factory=dict)
    pending_timeout: float = 1800.0
    serve: ServeSettings = ServeSettings()
    timezone: str = "UTC"
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def zone(self) -> tzinfo:
        """The fleet's time zone (`timezone`, checked when the settings were loaded)."""
        return time_zone(self.timezone)

    def require(self, value: EnvValue | None, what: str) -> str:
        """A setting's resolved value; ConfigError if it is unset or names an unset variable."""
        if value is None:
            raise ConfigError(
                [Diagnostic(Source(str(self.file)), "setting-missing", f"{what} is not set in {self.file.name}")]
            )
        resolved = value.require(what)
        rule, check = _RESOLVED_CHECKS.get(what, ("", lambda _value, _resolved: None))
        message = check(value, resolved)
        if message is not None:  # the value may have come from the environment: it is not shown
            raise ConfigError([Diagnostic(value.source, rule, message)])
        return resolved

    def path(self, value: EnvValue, what: str) -> Path:
        """A path setting, resolved against the directory of reconciler.yaml."""
        return self.root / self.require(value, what)


def _leaves(node: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], Any]]:
    """RECONCILER_* name -> (path, leaf schema) for every setting in the config schema."""
    found: dict[str, tuple[tuple[str, ...], Any]] = {}
    for key, sub in node.get("properties", {}).items():
        path = (*prefix, key)
        if "properties" in sub:
            found.update(_leaves(sub, path))
        else:
            found[ENV_PREFIX + "_".join(path).upper()] = (path, sub)
    return found


def _coerce(text: str, leaf: Mapping[str, Any]) -> Any:
    kinds = {leaf.get("type")} | {option.get("type") for option in leaf.get("anyOf", ())}
    if "$ref" in leaf:
        kinds |= {"integer", "string"}
    if "array" in kinds:
        return [part for part in text.split(os.pathsep) if part]
    if "boolean" in kinds and text in ("true", "false"):
        return text == "true"
    if "integer" in kinds and re.fullmatch(rf"[+-]?[0-9]{{1,{MAX_INT_DIGITS}}}", text):
        return int(text)
    if "number" in kinds and re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text):
        return float(text)
    return text


def _apply_environment(document: Document, environ: Mapping[str, str], found: list[Diagnostic]) -> None:
    leaves = _leaves(schema.load_schema("config.schema.json"))
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in CLI_VARIABLES:
            continue
        if name not in leaves:
            found.append(
                Diagnostic(
                    Source(f"${name}"),
                    "env-unknown",
                    f"environment variable {name} is not a reconciler setting{schema.suggest(name, leaves)}",
                    Severity.WARNING,
                )
            )
            continue
        path, leaf = leaves[name]
        target = document.data
        for step in path[:-1]:
            target = target.setdefault(step, {})
            if not isinstance(target, dict):
                break  # the file has a non-mapping here; the schema reports it
        else:
            target[path[-1]] = _coerce(environ[name], leaf)
            document.overrides[path] = Source(f"${name}")


def load_settings(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Load, override, validate and resolve reconciler.yaml.

    Raises ConfigError with every problem found. Unset `${env:...}` variables are not errors here: each
    value keeps them, Settings.diagnostics lists them as warnings, and `require` fails when one is needed.
    """
    environ = os.environ if environ is None else environ
    file = Path(path)
    display = display_name(file)
    if not os.path.lexists(file):
        raise ConfigError(
            [
                Diagnostic(
                    Source(display),
                    "config-missing",
                    "no such file (run in your config repo, or pass --config or --chdir)",
                )
            ]
        )
    loaded = load_file(str(file), display)
    found = list(loaded.diagnostics)
    if len(loaded.documents) > 1:
        found.append(Diagnostic(loaded.documents[1].source, "config-documents", "reconciler.yaml holds one document"))
    document = loaded.documents[0] if loaded.documents else Document(display, 0, None, None)
    if document.data is None:
        document.data = {}
    if not isinstance(document.data, dict):
        found.append(Diagnostic(document.source, "document-type", "reconciler.yaml must be a mapping of settings"))
    if any(d.is_error for d in found):
        raise ConfigError(found)
    _apply_environment(document, environ, found)
    found.extend(schema.check(document, "config.schema.json"))
    if any(d.is_error for d in found):
        raise ConfigError(found)
    return _build(file, document, environ, found)


def _build(file: Path, document: Document, environ: Mapping[str, str], found: list[Diagnostic]) -> Settings:
    data: dict[str, Any] = document.data

    def text(*path: str) -> EnvValue | None:
        value: Any = data
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
        resolved = resolve(str(value), document.position(path), environ)
        if isinstance(resolved, Diagnostic):
            found.append(resolved)
            return None
        if resolved.missing:
            found.append(resolved.missing_diagnostic(".".join(path), Severity.WARNING))
        return resolved

    api = data.get("api", {})
    state = data.get("state", {})
    url = text("api", "url")
    if url is not None and url.value is not None and not url.sensitive:
        problem = url_problem(url.value)
        if problem is not None:
            found.append(Diagnostic(url.source, "api-url", f"api.url '{shown_url(url.value)}' {problem}"))
    dsn = text("state", "dsn")
    if state.get("backend") == "postgres" and dsn is not None and dsn.value is not None and not dsn.sensitive:
        message = _dsn_message(dsn, dsn.value)  # written in the file (or $RECONCILER_STATE_DSN): checked now
        if message is not None:
            found.append(Diagnostic(dsn.source, "state-dsn", message))
    pending_timeout = parse_duration(data.get("pending_timeout", "30m"))
    if not 1 <= pending_timeout <= MAX_PENDING_TIMEOUT:
        found.append(
            Diagnostic(
                document.position(("pending_timeout",)),
                "value",
                f"pending_timeout must be from 1s to 168h (7 days), not {data['pending_timeout']}",
            )
        )
    zone_name = str(data.get("timezone", "UTC"))
    if zone_problem(zone_name):
        found.append(
            Diagnostic(
                document.position(("timezone",)),
                "timezone",
                f"timezone '{clip(zone_name)}' is not a time zone this system knows: an IANA name such as "
                "Europe/Paris, America/New_York or UTC (the names are case-sensitive)",
            )
        )
    budget = None if api.get("daily_budget") is None else DailyBudget.parse(api["daily_budget"])
    if budget is not None and not budget.amount:
        found.append(
            Diagnostic(
                document.position(("api", "daily_budget")),
                "value",
                f"api.daily_budget {budget.text} lets no request through: give a share above 0%",
            )
        )
    settings = Settings(
        file=file,
        root=file.parent,
        fleet=text("fleet"),
        manifests=_manifest_paths(file, document, environ, found),
        api=ApiSettings(
            url=url,
            client_id=text("api", "client_id"),
            username=text("api", "username"),
            password=text("api", "password"),
            client_cert=text("api", "client_cert"),
            client_key=text("api", "client_key"),
            ca_bundle=text("api", "ca_bundle"),
            rate_limit=float(api.get("rate_limit", RATE_LIMIT)),
            parallelism=int(api.get("parallelism", PARALLELISM)),
            timeout=float(api.get("timeout", TIMEOUT)),
            max_retry_wait=float(api.get("max_retry_wait", MAX_RETRY_WAIT)),
            daily_budget=budget,
        ),
        state=StateSettings(
            backend=state.get("backend", "file"),
            path=text("state", "path")
            or EnvValue(".reconciler/state.json", ".reconciler/state.json", Source("default")),
            dsn=dsn,
            fingerprint_key=text("state", "fingerprint_key"),
            schema=str(state.get("schema", "reconciler")),
        ),
        guards={name: Limit.parse(value) for name, value in data.get("guards", {}).items()},
        pending_timeout=pending_timeout,
        serve=_serve(document, text, found),
        timezone=zone_name,
        diagnostics=tuple(found),
    )
    if any(d.is_error for d in found):
        raise ConfigError(found)
    if settings.state.backend == "postgres" and settings.state.dsn is None:
        raise ConfigError(
            [
                Diagnostic(
                    document.position(("state",)), "setting-missing", "state.dsn is required with backend postgres"
                )
            ]
        )
    return settings


MAX_SERVE_WAIT = 86400.0  # serve's interval and lease period, at most: a day


def _serve(document: Document, text: Callable[..., EnvValue | None], found: list[Diagnostic]) -> ServeSettings:
    """The `serve:` block; each window's schedule and time zone are checked here, naming their line."""
    serve: dict[str, Any] = document.data.get("serve", {})
    windows = []
    for index, window in enumerate(serve.get("windows", [])):
        where = ("serve", "windows", index)
        problem = _window_problem(window["schedule"], window.get("timezone", "UTC"))
        if problem is not None:
            key = "timezone" if problem[0] == "timezone" else "schedule"
            found.append(Diagnostic(document.position((*where, key)), "serve-window", problem[1]))
            continue
        windows.append(
            SyncWindow(
                window["kind"],
                window["schedule"],
                parse_duration(window["duration"]),
                window.get("timezone", "UTC"),
                document.position(where),
            )
        )
    for key in ("interval", "lease_period"):  # both are waited on: a wait of years overflows the clock
        if key in serve and not 1 <= parse_duration(serve[key]) <= MAX_SERVE_WAIT:
            message = f"serve.{key} must be from 1s to 24h, not {serve[key]}"
            found.append(Diagnostic(document.position(("serve", key)), "value", message))
    return ServeSettings(
        interval=parse_duration(serve.get("interval", 60)),
        lease_period=parse_duration(serve.get("lease_period", 30)),
        windows=tuple(windows),
        windows_bind_manual_apply=bool(serve.get("windows_bind_manual_apply", False)),
        push_secret=text("serve", "push_secret"),
        workdir=text("serve", "workdir"),
        drift_reads_per_hour=int(serve.get("drift_reads_per_hour", 0)),
        self_heal=bool(serve.get("self_heal", False)),
    )


def _window_problem(schedule: str, timezone: str) -> tuple[str, str] | None:
    """(field, why) when a window's cron schedule or IANA time zone cannot be used."""
    import zoneinfo

    from cronsim import CronSim, CronSimError

    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "timezone", f"serve.windows: '{clip(timezone)}' is not an IANA time zone (such as Europe/Paris)"
    try:
        CronSim(schedule, datetime.now(zone))
    except CronSimError as error:
        return "schedule", f"serve.windows: '{clip(schedule)}' is not a cron schedule ({error})"
    return None


def _manifest_paths(
    file: Path, document: Document, environ: Mapping[str, str], found: list[Diagnostic]
) -> ManifestPaths:
    """The manifest paths, each kept inside the folder of reconciler.yaml unless the setting allows otherwise."""
    data: dict[str, Any] = document.data
    manifests = data.get("manifests", ["manifests"])
    anywhere = data.get(OUTSIDE_SETTING, False)
    root = os.path.realpath(file.parent)
    paths = []
    for index, raw in enumerate([manifests] if isinstance(manifests, str) else manifests):
        where = ("manifests", index) if isinstance(manifests, list) else ("manifests",)
        resolved = resolve(raw, document.position(where), environ)
        if isinstance(resolved, Diagnostic) or resolved.value is None:
            found.append(resolved if isinstance(resolved, Diagnostic) else resolved.missing_diagnostic("manifests"))
            continue
        path = file.parent / resolved.value
        if not anywhere and not inside(os.path.realpath(path), root):
            found.append(
                Diagnostic(
                    resolved.source,
                    "manifests-outside",
                    f"manifest path '{clip(resolved.raw)}' is outside the config repo (the folder of "
                    f"{file.name}); set {OUTSIDE_SETTING}: true to read manifests from elsewhere",
                )
            )
            continue
        paths.append(path)
    return ManifestPaths(paths, None if anywhere else file.parent)


def time_zone(name: str) -> tzinfo:
    """The time zone of an IANA name; UTC needs no time zone database."""
    return UTC if name == "UTC" else ZoneInfo(name)


def zone_problem(name: str) -> bool:
    """Whether `name` is not a time zone the system's database holds."""
    try:
        time_zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return True
    return False


def parse_duration(value: int | str) -> float:
    """Seconds from an integer or a string such as 90s, 30m, 2h (already checked by the schema)."""
    if isinstance(value, int):
        return float(value)
    return float(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]
