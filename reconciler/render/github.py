"""What a GitHub Actions step gets from `plan` and `apply`: step outputs, and the markdown of the step summary.

GitHub reads step outputs as `name=value` lines (a value with line breaks as `name<<DELIMITER`, the value, then
the delimiter alone on a line) and shows the step summary as markdown, refusing one over 1 MiB. Both texts are
made here; the command appends them to the files GitHub names.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler.errors import ExitCode
from reconciler.render.counts import change_counts
from reconciler.render.markdown import render_markdown

SUMMARY_LIMIT = 1024 * 1024  # GitHub's limit per step summary, in bytes
SUMMARY_MARGIN = 16 * 1024  # left free, for what else the step appends after us
RESULT_SHOWN = 64 * 1024  # of an apply's result text; the plan gets the rest
PLAN_ROOM = 2 * 1024  # the least room worth rendering a plan in
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def size(text: str) -> int:
    """What GitHub counts: bytes of UTF-8."""
    return len(text.encode())


def plan_outputs(plan: Mapping[str, Any]) -> dict[str, str]:
    """`changes`, `create`, `update`, `delete` (the counts of the GitLab report) and `plan-digest`."""
    counts = change_counts(plan)
    changes = bool(plan["callbacks"] or plan["groups"])
    return {
        "changes": "true" if changes else "false",
        "create": str(counts.create),
        "update": str(counts.update),
        "delete": str(counts.delete),
        "plan-digest": str(plan.get("digest", "")),
    }


def output_text(values: Mapping[str, str]) -> str:
    """Step outputs as GitHub reads them. A value with a line break goes between delimiters, as GitHub's own
    toolkit writes them, with a delimiter the value does not hold, so no value can set another output."""
    lines = []
    for name, value in values.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a step output name")
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            while delimiter in value:
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
            lines.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            lines.append(f"{name}={value}\n")
    return "".join(lines)


def plan_summary(plan: Mapping[str, Any], budget: int) -> str:
    """The plan's markdown in at most `budget` bytes."""
    out = io.StringIO()
    render_markdown(plan, out, limit=budget, measure=size, where="step summary")
    return out.getvalue()


def apply_summary(
    fleet: str | None,
    plan: Mapping[str, Any] | None,
    result: str,
    code: ExitCode,
    budget: int,
    allowed: tuple[str, ...] = (),
) -> str:
    """What apply did, then the plan it applied (or would have: `plan` is None when it stopped before one was
    made), in at most `budget` bytes. `result` is the summary apply printed, or the error that stopped it."""
    title = f"### reconciler apply to fleet `{fleet}`" if fleet else "### reconciler apply"
    head = f"{title}\n\nResult: **{code.result}** (exit {int(code)})\n\n"
    if result.strip():
        head += _fenced(_cut_text(result, min(RESULT_SHOWN, budget // 2))) + "\n"
    if plan is None:
        return head
    room = budget - size(head)
    if room < PLAN_ROOM:
        return head + "_The plan is not shown, to stay under the step summary size limit._\n"
    out = io.StringIO()
    render_markdown(plan, out, limit=room, measure=size, where="step summary", allowed=allowed)
    return head + out.getvalue()


def _cut_text(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes, cut at a line break, saying so."""
    if size(text) <= limit:
        return text
    note = "... (cut: the whole result is in the job's log)\n"
    kept = text.encode()[: max(0, limit - size(note))].decode(errors="ignore")
    return kept[: kept.rfind("\n") + 1] + note


def _fenced(text: str) -> str:
    """A code block that the text cannot close: its fence is longer than any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip(chr(10))}\n{fence}\n"
