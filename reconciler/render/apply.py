"""What `apply` says when it is done: calls done and failed by cause, outcomes waited for, what to do next."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from reconciler.words import plural

if TYPE_CHECKING:  # the types only: rendering loads no HTTP client
    from reconciler.apply import ApplyReport

LEFTOVERS_SHOWN = 10


def render_apply(
    report: ApplyReport | None,
    out: TextIO,
    err: TextIO,
    *,
    waited: bool = False,
    leftovers: Sequence[str] = (),
    recovered: int = 0,
) -> None:
    """The summary on `out`; on `err`, the journal entries folded in first and any change a new plan still
    makes although no call for it failed (the check that apply converged). `out` is flushed before `err` is
    written, so the lines keep their order where both streams go to one log."""
    if recovered:
        err.write(f"Folded {recovered} journal entries left by an earlier run into the state.\n")
        err.flush()
    if report is None:  # nothing was applied: no changes, or the plan was not confirmed
        return
    ok = sum(1 for r in report.results if r.ok)
    failed = report.failed
    out.write(
        f"Apply: {plural(ok, 'call')} done, {len(failed):,} failed, {len(report.skipped):,} skipped "
        f"in {report.elapsed:.1f} s.\n"
    )
    by_cause = Counter(r.cause for r in failed)
    for cause, count in sorted(by_cause.items()):
        example = next(r for r in failed if r.cause == cause)
        out.write(f"  failed ({cause}): {count:,}, e.g. {example.call.id}: {example.detail}\n")
    if waited:
        outcomes = ", ".join(f"{n:,} {o}" for o, n in sorted(report.outcomes.items())) or "none"
        out.write(f"Outcomes: {outcomes}.\n")
        for cause, count in sorted(report.causes.items()):
            out.write(f"  Failed {cause}: {count:,}\n")
    if leftovers:
        out.flush()
        shown = ", ".join(leftovers[:LEFTOVERS_SHOWN])
        err.write(
            f"Convergence check: a new plan still changes {len(leftovers)} addresses no call failed for "
            f"({shown}). This is a reconciler bug; please report it.\n"
        )
        err.flush()
    if failed or report.causes:
        out.write("Run plan or apply again: the next plan holds only what is left.\n")
