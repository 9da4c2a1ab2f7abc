"""The controller's status page: one self-contained, read-only HTML5 document built from a `StatusView`.

The controller fills a `StatusView` (aggregates and short lists only) and serves `render_page(view)` at `/`.
The page needs no JavaScript and loads nothing else: inline CSS, an inline SVG chart, a meta refresh every 30 s.
Every string that comes from the state, the network or git (group names, VINs, causes, commit messages, plan
text, errors) is cleaned of control characters, shortened to a bound and escaped, so a hostile value shows as
text; the lists are capped ("and N more"), so a fleet of any size gives a page of a bounded size.

Stable hooks (what tests, scripts and monitors may read; other markup may change):

- `<time id="generated" datetime="...">`: when the page was made; `<h1 id="fleet" data-fleet="NAME">`.
- health per group: `<td data-group="GROUP" data-health="Healthy|Progressing|Degraded|Held|Unknown">N</td>`,
  sync per group: `<td data-group="GROUP" data-sync="Synced|OutOfSync">N</td>`; the fleet's totals:
  `<td id="fleet-Healthy" data-health="Healthy">N</td>` ... `<td id="fleet-OutOfSync" data-sync="OutOfSync">`.
- failures: `<tr data-cause="CAUSE">` holding `<td data-vehicles>N</td>` and `<td data-examples>VIN, ...</td>`.
- drift: `<td id="drift-found">`, `<td id="drift-repaired">`, `<td id="drift-pending">`.
- held vehicles: `<tr data-vin="VIN">` with cells `data-field="until|cause|attempts"`; `<span id="held-total">`.
- runs: `<tr data-run="INDEX" data-commit="SHORT" data-result="RESULT">` (0 = the most recent) with cells
  `data-count="created|updated|deleted"`; its plan in `<details data-plan="INDEX"><pre>`.
- chart: `<svg id="convergence-chart" data-points="N">`; its summary in `<p id="convergence-summary">`.
- leadership: `<span id="leader" data-leading="true|false">HOLDER</span>`; `<p id="last-error">` when set.
- a capped list ends with `<p class="more" data-more="N">and N more ...</p>`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.words import plural

HEALTHS = ("Healthy", "Progressing", "Degraded", "Held", "Unknown")
SYNCS = ("Synced", "OutOfSync")

EXAMPLE_VINS = 5
CAUSES_SHOWN = 50
HELD_SHOWN = 50
RUNS_SHOWN = 20
CHART_POINTS = 500
PLAN_CHARS = 20_000  # of one run's plan: 20 runs stay well under a megabyte
TEXT_CHARS = 200  # a group name, a cause, a VIN, a commit message
ERROR_CHARS = 2_000
REFRESH_SECONDS = 30

# Control characters other than tab and newline (ANSI colours of a text plan, NULs of a hostile notification)
# would show as garbage or be refused by the browser: they are dropped.
_CONTROLS = {code: None for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}


@dataclass(frozen=True)
class HealthCounts:
    """Vehicles by health (one of HEALTHS each) and, separately, by sync status (from the last plan)."""

    healthy: int = 0
    progressing: int = 0
    degraded: int = 0
    held: int = 0
    unknown: int = 0
    synced: int = 0
    out_of_sync: int = 0

    def by_health(self) -> tuple[tuple[str, int], ...]:
        return tuple(
            zip(HEALTHS, (self.healthy, self.progressing, self.degraded, self.held, self.unknown), strict=True)
        )

    def by_sync(self) -> tuple[tuple[str, int], ...]:
        return (("Synced", self.synced), ("OutOfSync", self.out_of_sync))

    @property
    def vehicles(self) -> int:
        return self.healthy + self.progressing + self.degraded + self.held + self.unknown


@dataclass(frozen=True)
class GroupHealth:
    name: str
    counts: HealthCounts


@dataclass(frozen=True)
class Failure:
    """Vehicles whose last outcome failed with one cause; `examples` are a few of their VINs."""

    cause: str
    vehicles: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Drift:
    found: int = 0
    repaired: int = 0
    pending: int = 0


@dataclass(frozen=True)
class HeldVehicle:
    vin: str
    until: datetime
    cause: str
    attempts: int


@dataclass(frozen=True)
class Run:
    """One pass of the controller: what it planned from which commit, and how it ended."""

    started: datetime
    commit: str
    digest: str
    result: str
    duration: float  # seconds
    created: int = 0
    updated: int = 0
    deleted: int = 0
    plan_text: str = ""
    message: str = ""  # the commit's subject line


@dataclass(frozen=True)
class Point:
    """The share of the fleet Healthy (0..1) at one moment."""

    at: datetime
    healthy: float


@dataclass(frozen=True)
class StatusView:
    """Everything the page shows. Lists longer than the page's caps are cut by the renderer, but a caller should
    pass no more than it shows (and the true totals in `held_total`)."""

    fleet: str
    generated: datetime
    totals: HealthCounts
    groups: tuple[GroupHealth, ...] = ()
    failures: tuple[Failure, ...] = ()
    drift: Drift = field(default_factory=Drift)
    held: tuple[HeldVehicle, ...] = ()
    held_total: int = 0
    runs: tuple[Run, ...] = ()  # the most recent first
    convergence: tuple[Point, ...] = ()  # oldest first
    leader: str | None = None
    leading: bool = False
    last_error: str | None = None


def render_page(view: StatusView) -> str:
    """The whole page. The result encodes to UTF-8 whatever the input held (lone surrogates become `?`)."""
    fleet = _text(view.fleet)
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>reconciler: fleet {fleet}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<header>\n",
        f'<h1 id="fleet" data-fleet="{fleet}">Fleet {fleet}</h1>\n',
        f"<p>As of {_time(view.generated, 'generated')}. {_leader(view)}</p>\n</header>\n<main>\n",
    ]
    if view.last_error:
        error = _text(view.last_error, ERROR_CHARS)
        parts.append('<section aria-labelledby="h-error">\n<h2 id="h-error">Last error</h2>\n')
        parts.append(f'<p id="last-error" class="error">{error}</p>\n</section>\n')
    parts += [_health(view), _chart(view.convergence), _failures(view.failures), _drift(view.drift)]
    parts += [_held(view.held, view.held_total), _runs(view.runs), "</main>\n</body>\n</html>\n"]
    return "".join(parts).encode("utf-8", "replace").decode("utf-8")


def _text(value: str, limit: int = TEXT_CHARS) -> str:
    """A value from outside, safe in text and in a quoted attribute, and of a bounded length."""
    # cut before cleaning: a megabyte-long value costs no more than a short one
    value = value[: limit - 1].translate(_CONTROLS) + "…" if len(value) > limit else value.translate(_CONTROLS)
    return html.escape(value, quote=True)


def _time(moment: datetime, ident: str = "") -> str:
    hook = f' id="{ident}"' if ident else ""
    return f'<time{hook} datetime="{moment.isoformat()}">{moment.isoformat(sep=" ", timespec="minutes")}</time>'


def _leader(view: StatusView) -> str:
    if view.leader is None:
        return '<span id="leader" data-leading="false">No leader known.</span>'
    holder = _text(view.leader)
    role = "this replica leads" if view.leading else "this replica follows"
    leading = "true" if view.leading else "false"
    return f'Leader: <span id="leader" data-leading="{leading}">{holder}</span> ({role}).'


def _more(hidden: int, what: str) -> str:
    return f'<p class="more" data-more="{hidden}">and {plural(hidden, "more " + what)}</p>\n' if hidden > 0 else ""


def _section(ident: str, title: str, body: str) -> str:
    return f'<section aria-labelledby="h-{ident}">\n<h2 id="h-{ident}">{title}</h2>\n{body}</section>\n'


def _health(view: StatusView) -> str:
    head = "".join(f'<th scope="col">{name}</th>' for name in (*HEALTHS, *SYNCS))
    rows = []
    for group in view.groups:
        name = _text(group.name) or "(unnamed)"
        cells = [f'<td data-group="{name}" data-health="{h}">{n:,}</td>' for h, n in group.counts.by_health()]
        cells += [f'<td data-group="{name}" data-sync="{s}">{n:,}</td>' for s, n in group.counts.by_sync()]
        rows.append(f'<tr><th scope="row">{name}</th>{"".join(cells)}</tr>\n')
    totals = [f'<td id="fleet-{h}" data-health="{h}">{n:,}</td>' for h, n in view.totals.by_health()]
    totals += [f'<td id="fleet-{s}" data-sync="{s}">{n:,}</td>' for s, n in view.totals.by_sync()]
    note = "" if view.totals.vehicles else "<p>No vehicles in the fleet yet.</p>\n"
    body = (
        f"{note}<table>\n<caption>Vehicles by health and sync status, per vehicle group</caption>\n"
        f'<thead><tr><th scope="col">Group</th>{head}</tr></thead>\n<tbody>\n{"".join(rows)}</tbody>\n'
        f'<tfoot><tr><th scope="row">Fleet</th>{"".join(totals)}</tr></tfoot>\n</table>\n'
    )
    return _section("health", "Health", body)


def _failures(failures: Sequence[Failure]) -> str:
    if not failures:
        return _section("failures", "Failures by cause", "<p>No vehicle failed.</p>\n")
    rows = []
    for failure in failures[:CAUSES_SHOWN]:
        cause = _text(failure.cause)
        shown = [_text(vin) for vin in failure.examples[:EXAMPLE_VINS]]
        hidden = failure.vehicles - len(shown)
        examples = ", ".join(shown) + (f" and {hidden:,} more" if hidden > 0 and shown else "")
        rows.append(
            f'<tr data-cause="{cause}"><th scope="row">{cause}</th><td data-vehicles>{failure.vehicles:,}</td>'
            f"<td data-examples>{examples}</td></tr>\n"
        )
    body = (
        '<table>\n<thead><tr><th scope="col">Cause</th><th scope="col">Vehicles</th>'
        f'<th scope="col">For example</th></tr></thead>\n<tbody>\n{"".join(rows)}</tbody>\n</table>\n'
    )
    return _section("failures", "Failures by cause", body + _more(len(failures) - CAUSES_SHOWN, "cause"))


def _drift(drift: Drift) -> str:
    body = (
        '<table>\n<tbody>\n<tr><th scope="row">Found</th>'
        f'<td id="drift-found">{drift.found:,}</td></tr>\n'
        f'<tr><th scope="row">Repaired</th><td id="drift-repaired">{drift.repaired:,}</td></tr>\n'
        f'<tr><th scope="row">Pending repair</th><td id="drift-pending">{drift.pending:,}</td></tr>\n'
        "</tbody>\n</table>\n"
    )
    return _section("drift", "Drift", body)


def _held(held: Sequence[HeldVehicle], total: int) -> str:
    total = max(total, len(held))
    count = f'<p><span id="held-total">{total:,}</span> {"vehicle" if total == 1 else "vehicles"} held.</p>\n'
    if not held:
        return _section("held", "Held vehicles", count)
    rows = [
        f'<tr data-vin="{_text(car.vin)}"><th scope="row">{_text(car.vin)}</th>'
        f'<td data-field="until">{_time(car.until)}</td><td data-field="cause">{_text(car.cause)}</td>'
        f'<td data-field="attempts">{car.attempts:,}</td></tr>\n'
        for car in held[:HELD_SHOWN]
    ]
    body = (
        f'{count}<table>\n<thead><tr><th scope="col">VIN</th><th scope="col">Held until</th>'
        f'<th scope="col">Cause</th><th scope="col">Attempts</th></tr></thead>\n<tbody>\n{"".join(rows)}'
        "</tbody>\n</table>\n"
    )
    return _section("held", "Held vehicles", body + _more(total - len(rows), "held vehicle"))


def _runs(runs: Sequence[Run]) -> str:
    if not runs:
        return _section("runs", "Recent runs", "<p>No run yet.</p>\n")
    rows = []
    for index, run in enumerate(runs[:RUNS_SHOWN]):
        commit = _text(run.commit[:7])
        digest = _text(run.digest.removeprefix("sha256:")[:12])
        result = _text(run.result)
        subject = f"<br><small>{_text(run.message)}</small>" if run.message else ""
        rows.append(
            f'<tr data-run="{index}" data-commit="{commit}" data-result="{result}">'
            f'<th scope="row">{_time(run.started)}</th><td><code>{commit}</code>{subject}</td>'
            f"<td><code>{digest}</code></td><td>{result}</td><td>{_duration(run.duration)}</td>"
            f'<td data-count="created">{run.created:,}</td><td data-count="updated">{run.updated:,}</td>'
            f'<td data-count="deleted">{run.deleted:,}</td><td>{_plan(index, run.plan_text)}</td></tr>\n'
        )
    head = "".join(
        f'<th scope="col">{title}</th>'
        for title in ("Started", "Commit", "Plan digest", "Result", "Duration", "Created", "Updated", "Deleted", "Plan")
    )
    body = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
    return _section("runs", "Recent runs", body + _more(len(runs) - RUNS_SHOWN, "run"))


def _plan(index: int, text: str) -> str:
    if not text:
        return "none"
    cut = ""
    if len(text) > PLAN_CHARS:
        kept = text[:PLAN_CHARS].rsplit("\n", 1)[0] or text[:PLAN_CHARS]
        cut = f"\n… {len(text) - len(kept):,} more characters (the whole plan: reconciler plan)"
        text = kept
    body = _text(text, PLAN_CHARS) + html.escape(cut)
    return f'<details data-plan="{index}"><summary>plan</summary><pre>{body}</pre></details>'


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


# ---- the convergence chart --------------------------------------------------------------------------------

_W, _H = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 12, 44  # margins for the axes' labels


def _chart(points: Sequence[Point]) -> str:
    kept = _sample([p for p in points if math.isfinite(p.healthy)])
    if not kept:
        return _section("convergence", "Convergence", '<p id="convergence-summary">No figures yet.</p>\n')
    shares = [min(1.0, max(0.0, p.healthy)) for p in kept]
    first, last = kept[0].at.timestamp(), kept[-1].at.timestamp()
    span_x, span_y = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(point: Point) -> float:
        return _LEFT + (span_x * (point.at.timestamp() - first) / (last - first) if last > first else span_x / 2)

    def y(share: float) -> float:
        return _TOP + span_y * (1 - share)

    coords = " ".join(f"{x(p):.1f},{y(s):.1f}" for p, s in zip(kept, shares, strict=True))
    line = (
        f'<polyline points="{coords}" fill="none" stroke="#1a7f37" stroke-width="2"/>'
        if len(kept) > 1
        else f'<circle cx="{x(kept[0]):.1f}" cy="{y(shares[0]):.1f}" r="4" fill="#1a7f37"/>'
    )
    grid = "".join(
        f'<line x1="{_LEFT}" y1="{y(v):.1f}" x2="{_W - _RIGHT}" y2="{y(v):.1f}" stroke="#ddd"/>'
        f'<text x="{_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0%}</text>'
        for v in (0.0, 0.5, 1.0)
    )
    start, end = (p.at.isoformat(sep=" ", timespec="minutes") for p in (kept[0], kept[-1]))
    summary = _summary(kept, shares)
    svg = (
        f'<svg id="convergence-chart" data-points="{len(kept)}" role="img" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" aria-labelledby="chart-title" aria-describedby="convergence-summary" '
        'font-family="sans-serif" font-size="11">'
        f'<title id="chart-title">Share of the fleet Healthy over time</title>{grid}'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_H - _BOTTOM}" stroke="#333"/>'
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" stroke="#333"/>'
        f'<text x="{_LEFT}" y="{_H - _BOTTOM + 16}">{start}</text>'
        f'<text x="{_W - _RIGHT}" y="{_H - _BOTTOM + 16}" text-anchor="end">{end}</text>'
        f'<text x="{_LEFT + span_x / 2:.0f}" y="{_H - 6}" text-anchor="middle">time</text>'
        f'<text x="14" y="{_TOP + span_y / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + span_y / 2:.0f})">Healthy share</text>'
        f"{line}</svg>\n"
    )
    return _section("convergence", "Convergence", f'{svg}<p id="convergence-summary">{summary}</p>\n')


def _sample(points: Sequence[Point]) -> list[Point]:
    """At most CHART_POINTS points, evenly spread, the first and the last always kept: the shape of a long
    history, not only its end."""
    if len(points) <= CHART_POINTS:
        return list(points)
    step = (len(points) - 1) / (CHART_POINTS - 1)
    return [points[round(i * step)] for i in range(CHART_POINTS)]


def _summary(points: Sequence[Point], shares: Sequence[float]) -> str:
    now = f"{shares[-1]:.0%} of the fleet Healthy at {_time(points[-1].at)}"
    if len(points) == 1:
        return f"{now} (one figure so far)."
    low = min(range(len(shares)), key=shares.__getitem__)
    return (
        f"{now}; {shares[0]:.0%} at {_time(points[0].at)}, lowest {shares[low]:.0%} at {_time(points[low].at)} "
        f"({len(points):,} figures shown)."
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#1f2328;background:#fff}"
    "table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd}"
    "td[data-health],td[data-sync],td[data-vehicles],td[data-count],td[data-field=attempts],section>table td[id]"
    "{text-align:right;font-variant-numeric:tabular-nums}"
    "thead th{text-align:left;background:#f6f8fa}tbody th{text-align:left;font-weight:normal}"
    "td[data-health=Healthy]{color:#1a7f37}td[data-health=Degraded]{color:#cf222e}"
    "td{overflow-wrap:anywhere}.error{color:#cf222e;white-space:pre-wrap;overflow-wrap:anywhere}.more{color:#59636e}pre{max-height:30rem;overflow:auto}"
    "svg{max-width:100%;height:auto}"
)
