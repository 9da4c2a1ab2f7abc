"""`show --state`: what the recorded state holds, at a glance, as text, as a markdown summary table, or as JSON.

All read one summary (`state_summary`), so their counts agree with each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from reconciler.render.json import write_json
from reconciler.state.backend import LockInfo, Version
from reconciler.state.model import Outcome, SlotKind, State
from reconciler.words import plural, program_text

PROGRAMS_SHOWN = 20


def state_summary(state: State) -> dict[str, Any]:
    """Counts of what the state records: callbacks, vehicles, slots, programs in use, remote action outcomes."""
    programs: Counter[tuple[int, str]] = Counter()
    foreign = 0
    for records in state.slots.values():
        for slot, record in records.items():
            if record.kind == SlotKind.SET:
                programs[(slot, program_text(record.program))] += 1
            elif record.kind == SlotKind.FOREIGN:
                foreign += 1
    outcomes = Counter(action.outcome or "unknown" for action in state.actions.values())
    causes = Counter(a.cause for a in state.actions.values() if a.outcome == Outcome.FAILED and a.cause)
    return {
        "callbacks": len(state.callbacks),
        "vehicles": len(state.slots),
        "slots": state.slot_count,
        "foreign_slots": foreign,
        "vehicle_ids": len(state.vehicles_index),
        "programs": [
            {"slot": slot, "program": text, "vehicles": count}
            for (slot, text), count in sorted(programs.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))
        ],
        "outcomes": dict(sorted(outcomes.items())),
        "failed_by_cause": dict(sorted(causes.items())),
    }


def render_state(state: State | None, where: str, lock: LockInfo | None, out: TextIO) -> None:
    if state is None:
        out.write(f"No state at {where} yet: the first apply creates it.\n")
    else:
        summary = state_summary(state)
        out.write(f"State {where}: fleet {state.fleet}, lineage {state.lineage}, serial {state.serial}\n")
        out.write(f"Callbacks: {summary['callbacks']:,}\n")
        for name, record in sorted(state.callbacks.items()):
            out.write(f"  callback.{name}: id {record.id}, {record.status}\n")
        out.write(
            f"Vehicles: {summary['vehicles']:,} with {plural(summary['slots'], 'slot')}; "
            f"{plural(summary['vehicle_ids'], 'id')} known\n"
        )
        if summary["programs"]:
            out.write("Programs:\n")
        for item in summary["programs"][:PROGRAMS_SHOWN]:
            out.write(f"  slot {item['slot']}: {item['program']} on {plural(item['vehicles'], 'vehicle')}\n")
        if len(summary["programs"]) > PROGRAMS_SHOWN:
            out.write(f"  ... and {plural(len(summary['programs']) - PROGRAMS_SHOWN, 'more program')}\n")
        if summary["foreign_slots"]:
            out.write(f"  not set by reconciler: {plural(summary['foreign_slots'], 'slot')}\n")
        if summary["outcomes"]:
            outcomes = ", ".join(f"{n:,} {o}" for o, n in summary["outcomes"].items())
            out.write(f"Remote actions: {outcomes}\n")
        for cause, count in summary["failed_by_cause"].items():
            out.write(f"  Failed {cause}: {count:,}\n")
    out.write(f"Lock: {lock.describe()}\n" if lock else "Lock: none\n")


def render_state_markdown(state: State | None, where: str, lock: LockInfo | None, out: TextIO) -> None:
    """The state as a comment or step summary: a heading, one table of counts, then the programs in use."""
    if state is None:
        out.write(f"### reconciler state\n\nNo state at `{where}` yet: the first apply creates it.\n")
    else:
        summary = state_summary(state)
        rows = [
            ("callbacks", summary["callbacks"]),
            ("vehicles", summary["vehicles"]),
            ("slots", summary["slots"]),
            ("vehicle ids known", summary["vehicle_ids"]),
            *((f"remote actions {outcome}", n) for outcome, n in summary["outcomes"].items()),
            *((f"failed {cause}", n) for cause, n in summary["failed_by_cause"].items()),
        ]
        if summary["foreign_slots"]:
            rows.append(("slots not set by reconciler", summary["foreign_slots"]))
        lines = [
            f"### reconciler state for fleet `{state.fleet}`",
            "",
            f"`{where}`, lineage `{state.lineage}`, serial {state.serial}.",
            "",
            "| | count |",
            "|---|---:|",
            *(f"| {name} | {count:,} |" for name, count in rows),
            "",
        ]
        if summary["programs"]:
            lines += ["| slot | program | vehicles |", "|---:|---|---:|"]
            lines += [
                f"| {item['slot']} | {item['program']} | {item['vehicles']:,} |"
                for item in summary["programs"][:PROGRAMS_SHOWN]
            ]
            if len(summary["programs"]) > PROGRAMS_SHOWN:
                more = plural(len(summary["programs"]) - PROGRAMS_SHOWN, "more program")
                lines.append(f"| | ... and {more} | |")
            lines.append("")
        out.write("\n".join(lines) + "\n")
    out.write(f"Lock: {lock.describe()}\n" if lock else "Lock: none\n")


def render_state_json(state: State | None, lock: LockInfo | None, out: TextIO) -> None:
    """The whole state, its summary and the lock (each null when there is none), for tools."""
    document = {
        "state": state.to_dict() if state else None,
        "summary": state_summary(state) if state else None,
        "lock": asdict(lock) if lock else None,
    }
    write_json(document, out, result="ok")


def render_history(versions: Sequence[Version], where: str, out: TextIO) -> None:
    """`state history`: one line per version kept, newest first."""
    if not versions:
        out.write(f"No state is recorded in {where} yet.\n")
        return
    out.write(f"Versions of the state in {where}, newest first:\n")
    for version in versions:
        writer = f"  {version.writer}" if version.writer else ""
        out.write(f"  serial {version.serial:>6}  {version.saved_at}  lineage {version.lineage}{writer}\n")
