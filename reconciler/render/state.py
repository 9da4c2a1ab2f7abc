"""`show --state`: what the recorded state holds, at a glance."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from reconciler.state.backend import LockInfo
from reconciler.state.model import State


def render_state(state: State | None, where: str, lock: LockInfo | None, out: TextIO) -> None:
    if state is None:
        out.write(f"No state at {where} yet: the first apply creates it.\n")
    else:
        out.write(f"State {where}: fleet {state.fleet}, lineage {state.lineage}, serial {state.serial}\n")
        out.write(f"Callbacks: {len(state.callbacks)}\n")
        for name, record in sorted(state.callbacks.items()):
            out.write(f"  callback.{name}: id {record.id}, {record.status}\n")
        out.write(
            f"Vehicles: {len(state.slots):,} with {state.slot_count:,} slots; {len(state.vehicles_index):,} ids known\n"
        )
        outcomes = Counter(action.outcome or "unknown" for action in state.actions.values())
        if outcomes:
            out.write("Remote actions: " + ", ".join(f"{n:,} {o}" for o, n in sorted(outcomes.items())) + "\n")
        causes = Counter(a.cause for a in state.actions.values() if a.outcome == "Failed" and a.cause)
        for cause, count in sorted(causes.items()):
            out.write(f"  Failed {cause}: {count:,}\n")
    out.write(f"Lock: {lock.describe()}\n" if lock else "Lock: none\n")
