"""The controller's status page: render_page on constructed views (escaping, caps, empty fleet, the chart, no
external asset), then the same page served on loopback and read by a real headless Chromium."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from reconciler.render.page import (
    HEALTHS,
    Drift,
    Failure,
    GroupHealth,
    HealthCounts,
    HeldVehicle,
    Point,
    Run,
    StatusView,
    render_page,
)
from tests.browser import Dom, browse, chromium_path
from tests.servers import serve_app

NOW = datetime(2026, 5, 14, 9, 30, tzinfo=UTC)
HOSTILE_CAUSE = "<script>alert(1)</script>"
HOSTILE_GROUP = 'lyon "north" \' onmouseover="alert(2)'
HOSTILE_VIN = "<img src=x onerror=alert(3)>"
HOSTILE_MESSAGE = "</pre></details><script>alert(4)</script>"
HOSTILE_PLAN = "+ create slot\n</pre><script>alert(5)</script>\n& more"


def counts(healthy: int = 0, progressing: int = 0, degraded: int = 0, held: int = 0, unknown: int = 0) -> HealthCounts:
    vehicles = healthy + progressing + degraded + held + unknown
    return HealthCounts(healthy, progressing, degraded, held, unknown, synced=healthy, out_of_sync=vehicles - healthy)


def rich_view() -> StatusView:
    paris, lyon = counts(1200, 30, 7, 3, 1), counts(40, 0, 2, 0, 5)
    total = HealthCounts(*(a + b for a, b in zip(vars(paris).values(), vars(lyon).values(), strict=True)))
    return StatusView(
        fleet="fleet-ops",
        generated=NOW,
        totals=total,
        groups=(GroupHealth("paris", paris), GroupHealth(HOSTILE_GROUP, lyon)),
        failures=(
            Failure(HOSTILE_CAUSE, 2, ("VF3AAAAAAAAAAAA01", HOSTILE_VIN)),
            Failure("VehicleBatteryChargeTooLow", 7, tuple(f"VF3BBBBBBBBBBBB{n:02d}" for n in range(7))),
        ),
        drift=Drift(found=12, repaired=9, pending=3),
        held=(
            HeldVehicle("VF3CCCCCCCCCCCC01", datetime(2026, 6, 1, tzinfo=UTC), "TooManyWakeUpsOverMonth", 1),
            HeldVehicle(HOSTILE_VIN, NOW + timedelta(minutes=20), "VehicleConnectionTimeout", 3),
        ),
        held_total=3,
        runs=(
            Run(
                NOW - timedelta(minutes=1),
                "0123456789abcdef",
                "sha256:" + "f" * 64,
                "success",
                4.25,
                3,
                1,
                0,
                HOSTILE_PLAN,
                HOSTILE_MESSAGE,
            ),
            Run(NOW - timedelta(minutes=11), "fedcba9876543210", "sha256:" + "e" * 64, "partial", 125.0, 0, 40, 2),
        ),
        convergence=tuple(Point(NOW - timedelta(minutes=60 - i), i / 60) for i in range(61)),
        leader="ctl-a:4242",
        leading=True,
        last_error="apply stopped: \x1b[31mVehicleConnectionTimeout\x1b[0m <b>x</b>",
    )


def empty_view() -> StatusView:
    return StatusView(fleet="fleet-empty", generated=NOW, totals=HealthCounts())


# ---- render_page on constructed views ----------------------------------------------------------------------


def check_rich_page(dom: Dom) -> None:
    """What the page of rich_view() shows; the same checks for our parse of the HTML and for Chromium's DOM."""
    assert dom.one(id="fleet").attrs["data-fleet"] == "fleet-ops"
    assert dom.count(data_group="paris", data_health="Healthy") == 1200
    assert dom.count(data_group="paris", data_health="Degraded") == 7
    assert dom.count(data_group="paris", data_sync="OutOfSync") == 41
    assert dom.count(data_group=HOSTILE_GROUP, data_health="Unknown") == 5
    assert dom.count(data_group=HOSTILE_GROUP, data_sync="Synced") == 40
    assert [dom.count(id=f"fleet-{health}") for health in HEALTHS] == [1240, 30, 9, 3, 6]
    assert dom.count(id="fleet-Synced") == 1240 and dom.count(id="fleet-OutOfSync") == 48
    cause = dom.one("tr", data_cause=HOSTILE_CAUSE)
    assert cause.children[0].text == HOSTILE_CAUSE
    battery = dom.one("tr", data_cause="VehicleBatteryChargeTooLow")
    assert [c.text for c in battery.children[1:]] == [
        "7",
        "VF3BBBBBBBBBBBB00, VF3BBBBBBBBBBBB01, VF3BBBBBBBBBBBB02, VF3BBBBBBBBBBBB03, VF3BBBBBBBBBBBB04 and 2 more",
    ]
    assert [dom.count(id=f"drift-{what}") for what in ("found", "repaired", "pending")] == [12, 9, 3]
    held = [(row.attrs["data-vin"], [cell.text for cell in row.children]) for row in dom.find("tr", data_vin=None)]
    assert held == [
        ("VF3CCCCCCCCCCCC01", ["VF3CCCCCCCCCCCC01", "2026-06-01 00:00+00:00", "TooManyWakeUpsOverMonth", "1"]),
        (HOSTILE_VIN, [HOSTILE_VIN, "2026-05-14 09:50+00:00", "VehicleConnectionTimeout", "3"]),
    ]
    assert dom.count(id="held-total") == 3
    assert dom.one(data_more="1").text == "and 1 more held vehicle"
    runs = dom.find("tr", data_run=None)
    assert [(r.attrs["data-run"], r.attrs["data-commit"], r.attrs["data-result"]) for r in runs] == [
        ("0", "0123456", "success"),
        ("1", "fedcba9", "partial"),
    ]
    assert [[c.text for c in r.children[2:8]] for r in runs] == [
        ["ffffffffffff", "success", "4.2 s", "3", "1", "0"],
        ["eeeeeeeeeeee", "partial", "2 min 5 s", "0", "40", "2"],
    ]
    assert HOSTILE_MESSAGE in runs[0].children[1].text
    assert dom.one("details", data_plan="0").text == "plan" + HOSTILE_PLAN
    assert dom.find("details", data_plan="1") == []  # a run without a plan says so
    assert runs[1].children[8].text == "none"
    leader = dom.one(id="leader")
    assert (leader.text, leader.attrs["data-leading"]) == ("ctl-a:4242", "true")
    assert dom.one(id="last-error").text == "apply stopped: [31mVehicleConnectionTimeout[0m <b>x</b>"
    chart = dom.one("svg", id="convergence-chart")
    assert chart.attrs["data-points"] == "61"
    assert dom.find("script") == [] and dom.find("img") == [] and dom.find("b") == []
    assert not any(name.startswith("on") for element in dom.elements for name in element.attrs)


def test_the_page_shows_every_figure_of_the_view_through_its_hooks() -> None:
    check_rich_page(Dom(render_page(rich_view())))


def test_hostile_strings_show_as_text_and_create_no_element_or_attribute() -> None:
    page = render_page(rich_view())
    for hostile in (HOSTILE_CAUSE, HOSTILE_VIN, "<script>alert(4)", "<script>alert(5)"):
        assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-group="lyon &quot;north&quot; &#x27; onmouseover=&quot;alert(2)"' in page
    dom = Dom(render_page(replace(rich_view(), fleet='"><script>alert(6)</script>', leader="<i>me</i>")))
    assert dom.find("script") == [] and dom.find("i") == []
    assert dom.find("title")[0].text == 'reconciler: fleet "><script>alert(6)</script>'
    assert dom.one(id="leader").text == "<i>me</i>"


def test_control_characters_are_dropped_and_lone_surrogates_cannot_break_the_page() -> None:
    view = replace(empty_view(), fleet="ops\x00\x1b[1m\ud800", last_error="line 1\nline 2\tend\x07")
    page = render_page(view)
    page.encode("utf-8")  # what the server sends
    dom = Dom(page)
    assert dom.one(id="fleet").attrs["data-fleet"] == "ops[1m?"
    assert dom.one(id="last-error").text == "line 1\nline 2\tend"


def test_long_strings_and_lists_are_capped_with_what_was_left_out() -> None:
    huge = "x" * 1_000_000
    plan = "".join(f"+ vehicle.VF3{n:014d}\n" for n in range(100_000))
    view = replace(
        rich_view(),
        failures=tuple(Failure(f"Cause{n}{huge if n == 0 else ''}", 2, ("V1",)) for n in range(60)),
        held=tuple(HeldVehicle(f"VF3{n:014d}", NOW, "VehicleConnectionTimeout", 2) for n in range(80)),
        held_total=1_000,
        runs=tuple(replace(rich_view().runs[1], plan_text=plan, message=huge) for _ in range(25)),
        last_error=huge,
    )
    page = render_page(view)
    assert len(page) < 600_000
    dom = Dom(page)
    assert len(dom.find("tr", data_cause=None)) == 50 and dom.one(data_more="10").text == "and 10 more causes"
    assert dom.find("tr", data_cause=None)[0].attrs["data-cause"] == "Cause0" + "x" * 193 + "…"
    assert dom.find("tr", data_cause=None)[1].children[2].text == "V1 and 1 more"
    assert len(dom.find("tr", data_vin=None)) == 50 and dom.count(id="held-total") == 1_000
    assert dom.one(data_more="950").text == "and 950 more held vehicles"
    assert len(dom.find("tr", data_run=None)) == 20 and dom.one(data_more="5").text == "and 5 more runs"
    shown = dom.one("details", data_plan="0").text
    kept = shown[len("plan") : shown.index("\n… ")]
    assert shown.startswith("plan+ vehicle.VF300000000000000\n") and len(kept) <= 20_000
    assert plan.startswith(kept + "\n") and kept.endswith("\n+ vehicle.VF300000000000713")  # whole lines
    assert shown.endswith(f"… {len(plan) - len(kept):,} more characters (the whole plan: reconciler plan)")
    assert len(dom.one(id="last-error").text) == 2_000


def test_an_empty_fleet_with_no_run_and_no_figure_yet() -> None:
    page = render_page(empty_view())
    dom = Dom(page)
    assert [dom.count(id=f"fleet-{name}") for name in (*HEALTHS, "Synced", "OutOfSync")] == [0] * 7
    assert dom.find(data_group=None) == []
    assert "No vehicles in the fleet yet." in page and "No run yet." in page and "No vehicle failed." in page
    assert dom.count(id="held-total") == 0 and dom.find("tr", data_vin=None) == []
    assert dom.find("svg") == [] and dom.one(id="convergence-summary").text == "No figures yet."
    assert dom.one(id="leader").attrs["data-leading"] == "false" and dom.find(id="last-error") == []
    assert "No vehicles in the fleet yet." not in render_page(rich_view())


def test_a_follower_names_the_leader() -> None:
    dom = Dom(render_page(replace(empty_view(), leader="ctl-b:7", leading=False)))
    leader = dom.one(id="leader")
    assert (leader.text, leader.attrs["data-leading"]) == ("ctl-b:7", "false")
    assert "this replica follows" in dom.one("header").text


def polyline_points(dom: Dom) -> list[tuple[float, float]]:
    (line,) = dom.find("polyline")
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in line.attrs["points"].split())]


def test_the_chart_of_one_point_is_a_dot_with_its_summary() -> None:
    dom = Dom(render_page(replace(empty_view(), convergence=(Point(NOW, 0.375),))))
    chart = dom.one("svg", id="convergence-chart")
    assert chart.attrs["data-points"] == "1" and chart.attrs["role"] == "img"
    assert dom.find("polyline") == [] and len(dom.find("circle")) == 1
    assert dom.one("title", id="chart-title").text == "Share of the fleet Healthy over time"
    summary = dom.one(id="convergence-summary").text
    assert summary == "38% of the fleet Healthy at 2026-05-14 09:30+00:00 (one figure so far)."


def test_the_chart_of_many_points_rises_as_the_fleet_converges_and_clamps_bad_figures() -> None:
    shares = [0.1, 0.5, math.nan, 1.7, -0.2]
    points = tuple(Point(NOW + timedelta(minutes=i), share) for i, share in enumerate(shares))
    dom = Dom(render_page(replace(empty_view(), convergence=points)))
    assert dom.one("svg").attrs["data-points"] == "4"  # NaN dropped
    coords = polyline_points(dom)
    xs, ys = [x for x, _ in coords], [y for _, y in coords]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    top, bottom = ys[2], ys[3]  # 1.7 drawn at 100%, -0.2 at 0%
    assert ys[2] < ys[1] < ys[0] < ys[3] and (top, bottom) == (12.0, 176.0)
    summary = dom.one(id="convergence-summary").text
    assert summary.startswith("0% of the fleet Healthy at 2026-05-14 09:34+00:00; 10% at 2026-05-14 09:30+00:00")
    assert "lowest 0% at 2026-05-14 09:34+00:00 (4 figures shown)" in summary
    texts = [element.text for element in dom.find("text")]
    assert {"0%", "50%", "100%", "time", "Healthy share"} <= set(texts)


def test_a_long_history_is_thinned_to_500_points_keeping_both_ends() -> None:
    points = tuple(Point(NOW + timedelta(minutes=i), (i % 100) / 100) for i in range(10_001))
    dom = Dom(render_page(replace(empty_view(), convergence=points)))
    assert dom.one("svg").attrs["data-points"] == "500"
    coords = polyline_points(dom)
    assert len(coords) == 500 and coords[0][0] == 56.0 and coords[-1][0] == 624.0
    assert "at 2026-05-21 08:10+00:00" in dom.one(id="convergence-summary").text  # the last point, 10,000 min on


def test_points_all_at_one_moment_are_drawn_in_the_middle() -> None:
    points = (Point(NOW, 0.2), Point(NOW, 0.4))
    coords = polyline_points(Dom(render_page(replace(empty_view(), convergence=points))))
    assert [x for x, _ in coords] == [340.0, 340.0]


@pytest.mark.parametrize("view", [rich_view(), empty_view()], ids=["rich", "empty"])
def test_the_page_is_a_self_contained_accessible_document(view: StatusView) -> None:
    page = render_page(view)
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert '<meta http-equiv="refresh" content="30">' in page and '<meta charset="utf-8">' in page
    assert "http://" not in page and "https://" not in page
    dom = Dom(page)
    linking = {"src", "href", "srcset", "action", "formaction", "poster", "data", "xlink:href", "background"}
    assert [e.attrs for e in dom.elements if linking & set(e.attrs)] == []
    assert "url(" not in dom.one("style").text and "@import" not in dom.one("style").text
    assert dom.find("script") == [] and dom.find("link") == [] and dom.find("iframe") == []
    assert len(dom.find("h1")) == 1 and len(dom.find("h2")) >= 5
    headers = dom.find("th")
    assert headers and all(th.attrs.get("scope") in ("col", "row") for th in headers)
    for section in dom.find("section"):
        assert dom.find("h2", id=section.attrs["aria-labelledby"])


def test_durations_read_as_people_write_them() -> None:
    runs = tuple(replace(rich_view().runs[1], duration=seconds) for seconds in (0.04, 59.94, 60.0, 3_725.0, math.nan))
    dom = Dom(render_page(replace(empty_view(), runs=runs)))
    assert [row.children[4].text for row in dom.find("tr", data_run=None)] == [
        "0.0 s",
        "59.9 s",
        "1 min 0 s",
        "62 min 5 s",
        "?",
    ]


# ---- in a real browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def served_page() -> Iterator[str]:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(render_page(rich_view()))

    with serve_app(Starlette(routes=[Route("/", page)])) as root:
        yield root + "/"


@pytest.mark.slow
def test_chromium_reads_the_counts_rows_and_runs_and_runs_no_script(
    chromium: str, served_page: str, tmp_path: Path
) -> None:
    dom = Dom(browse(chromium, tmp_path / "profile", "--dump-dom", served_page))
    check_rich_page(dom)
    # the browser built its DOM from the page: a <details> it can open, the chart as SVG, no script anywhere
    assert len(dom.find("details")) == 1 and dom.find("polyline")
    assert "alert(1)" in dom.one("tr", data_cause=HOSTILE_CAUSE).text


@pytest.mark.slow
def test_chromium_draws_the_page(chromium: str, served_page: str, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    browse(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", served_page)
    image = shot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
    assert (width, height) == (1200, 1600)
    assert len(image) > 20_000  # text, tables and a chart: a blank page of that size is a few kilobytes
