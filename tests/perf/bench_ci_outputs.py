"""Benchmark: what CI posts from a large plan, rendered from the plan document (as `plan` and `show` do).

Plans of `--vehicles` vehicles (100,000 by default) scattered over `--groups` distinct changes (5,000 and
100,000: every vehicle its own change). For each: the markdown comment (cut under 60,000 characters), the
markdown step summary (cut under GitHub's 1 MiB, counted in bytes) and the GitLab report, timed as medians of
`--runs` runs next to the baseline measured in the same run: the plan as JSON (`--format json`), which every
plan pays for anyway.

    python tests/perf/bench_ci_outputs.py [--vehicles 100000] [--groups 5000 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from reconciler.render.github import SUMMARY_LIMIT, SUMMARY_MARGIN, plan_summary
from reconciler.render.gitlab import render_gitlab
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from tests.bigplans import scattered_plan

SUMMARY_BYTES = SUMMARY_LIMIT - SUMMARY_MARGIN  # what `plan` gives itself in an empty step summary


def timed(render: Callable[[io.StringIO], None], runs: int) -> tuple[float, int]:
    """Median seconds of `runs` renders, and the size of what one writes."""
    seconds = []
    size = 0
    for _ in range(runs):
        out = io.StringIO()
        start = time.perf_counter()
        render(out)
        seconds.append(time.perf_counter() - start)
        size = len(out.getvalue().encode())
    return statistics.median(seconds), size


def bench(vehicles: int, groups: int, runs: int) -> None:
    document: dict[str, Any] = scattered_plan(vehicles, groups).to_dict()
    print(f"\n{vehicles:,} vehicles in {groups:,} distinct changes; medians of {runs} runs")
    base, base_size = timed(lambda out: render_json(document, out), runs)
    print(f"  baseline --format json      : {base:7.4f} s, {base_size / 1e6:7.2f} MB")
    cases: list[tuple[str, Callable[[io.StringIO], None]]] = [
        ("markdown comment (60,000 ch)", lambda out: render_markdown(document, out)),
        (
            "markdown summary (1 MiB)    ",
            lambda out: out.write(plan_summary(document, SUMMARY_BYTES)),
        ),
        ("gitlab report               ", lambda out: render_gitlab(document, out)),
    ]
    for name, render in cases:
        seconds, size = timed(render, runs)
        print(f"  {name}: {seconds:7.4f} s, {seconds / base:5.3f} x baseline, {size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[5_000, 100_000])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for groups in args.groups:
        bench(args.vehicles, groups, args.runs)


if __name__ == "__main__":
    main()
