"""Rules across documents (names, references, slots per vehicle) and the Desired model they produce."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler import schema
from reconciler.diagnostics import Diagnostic, Severity, Source
from reconciler.manifests.documents import Named, Parsed
from reconciler.model import MAX_SLOTS, THERMAL, Callback, Desired, Schedule, SlotAssignment

SHOWN_VINS = 3


@dataclass(frozen=True, slots=True)
class _Claim:
    """One schedule's claim on a set of slots, for the vehicles it selects."""

    schedule: Schedule
    slot_sources: dict[int, Source]


def check_names(named: Iterable[Named], found: list[Diagnostic]) -> None:
    first: dict[tuple[str, str], Source] = {}
    for item in named:
        if not item.name:
            continue
        key = (item.kind, item.name)
        if key in first:
            found.append(
                Diagnostic(
                    item.source,
                    "duplicate-name",
                    f"{item.kind} '{item.name}' is already defined at {first[key]}",
                )
            )
        else:
            first[key] = item.source


def build(parsed: list[Parsed], named: list[Named], found: list[Diagnostic], files: list[str], digest: str) -> Desired:
    """Resolve references, check every vehicle's slots, and assemble the Desired model.

    `named` lists every document with a usable kind and name, valid or not, so that a reference to an
    invalid document is not reported a second time as unknown.
    """
    known = {(item.kind, item.name) for item in named}
    callbacks = {p.name: p.callback for p in parsed if p.kind == "Callback" and p.callback is not None}
    groups = {p.name: tuple(p.data["vins"]) for p in parsed if p.kind == "VehicleGroup"}
    schedules: dict[str, Schedule] = {}
    claims: list[_Claim] = []
    for item in parsed:
        if item.kind != "Preconditioning":
            continue
        schedule = _schedule(item, known, callbacks, groups, found)
        if schedule is not None:
            schedules[schedule.name] = schedule
            claims.append(_Claim(schedule, item.slot_sources))
    vehicles = _vehicles(claims, found)
    return Desired(
        callbacks=dict(sorted(callbacks.items())),
        groups=groups,
        schedules=schedules,
        vehicles=vehicles,
        files=tuple(files),
        digest=digest,
    )


def _schedule(
    item: Parsed,
    known: set[tuple[str, str]],
    callbacks: Mapping[str, Callback],
    groups: dict[str, tuple[str, ...]],
    found: list[Diagnostic],
) -> Schedule | None:
    document = item.document
    data = item.data
    ok = True
    callback_name = data["callback"]
    if ("Callback", callback_name) not in known:
        ok = False
        found.append(
            Diagnostic(
                document.position(["callback"]),
                "unknown-callback",
                f"unknown callback '{callback_name}'{schema.suggest(callback_name, _names(known, 'Callback'))}",
            )
        )
    else:
        callback = callbacks.get(callback_name)
        if callback is not None and THERMAL not in callback.remote_types:
            ok = False
            found.append(
                Diagnostic(
                    document.position(["callback"]),
                    "callback-remote-type",
                    f"callback '{callback_name}' does not list {THERMAL} in remoteTypes (defined at {callback.source})",
                )
            )
    vins = set(data["vehicles"]["vins"])
    unresolved = False
    raw_groups = document.data["vehicles"].get("groups", [])
    for index, group in enumerate(raw_groups):
        if ("VehicleGroup", group) not in known:
            ok = False
            found.append(
                Diagnostic(
                    document.position(["vehicles", "groups", index]),
                    "unknown-group",
                    f"unknown vehicle group '{group}'{schema.suggest(group, _names(known, 'VehicleGroup'))}",
                )
            )
        elif group in groups:
            vins.update(groups[group])
        else:
            unresolved = True  # the group is invalid (and reported): its vehicles are unknown, not absent
    if not ok:
        return None
    if not vins and not unresolved:
        found.append(
            Diagnostic(
                document.position(["vehicles"]),
                "empty-schedule",
                f"schedule '{item.name}' selects no vehicle",
                Severity.WARNING,
            )
        )
    return Schedule(
        name=item.name,
        callback=callback_name,
        vins=frozenset(vins),
        groups=tuple(data["vehicles"]["groups"]),
        programs=item.programs,
        source=document.source,
        takeover=bool(data["takeover"]),
    )


def _names(known: set[tuple[str, str]], kind: str) -> list[str]:
    return sorted(name for k, name in known if k == kind)


def _vehicles(claims: list[_Claim], found: list[Diagnostic]) -> dict[str, tuple[SlotAssignment, ...]]:
    """VIN -> slot assignments; conflicting claims are reported once per schedule pair and slot."""
    # VIN -> indexes of the claims selecting it, equal tuples being one object: a list per vehicle cost
    # gigabytes (and the garbage collector's time) on a fleet of millions
    by_vin: dict[str, tuple[int, ...]] = {}
    grown: dict[tuple[tuple[int, ...], int], tuple[int, ...]] = {}
    for index, claim in enumerate(claims):
        alone = (index,)
        for vin in claim.schedule.vins:
            before = by_vin.get(vin)
            if before is None:
                by_vin[vin] = alone
                continue
            joined = grown.get((before, index))
            if joined is None:
                joined = grown[(before, index)] = (*before, index)
            by_vin[vin] = joined
    # vehicles selected by the same schedules share one assignment tuple and one check
    by_signature: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for vin, indexes in by_vin.items():
        by_signature[indexes].append(vin)
    del by_vin  # before the vehicles mapping is built: the two would be the peak
    conflicts: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    over_limit: dict[tuple[int, ...], list[str]] = {}
    shared: dict[tuple[int, ...], tuple[SlotAssignment, ...]] = {}
    for signature, vins in by_signature.items():
        owner: dict[int, int] = {}
        assignments: list[SlotAssignment] = []
        total = 0
        for index in signature:
            schedule = claims[index].schedule
            total += len(schedule.programs)
            for program in schedule.programs:
                if program.slot in owner:
                    conflicts[(owner[program.slot], index, program.slot)].extend(vins)
                    continue
                owner[program.slot] = index
                assignments.append(SlotAssignment(program, schedule.callback, schedule.name))
        if total > MAX_SLOTS:
            over_limit[signature] = vins
        shared[signature] = tuple(sorted(assignments, key=lambda a: a.program.slot))
    for (first, second, slot), vins in sorted(conflicts.items()):
        a, b = claims[first], claims[second]
        found.append(
            Diagnostic(
                b.slot_sources[slot],
                "slot-conflict",
                f"slot {slot} of {_vehicle_list(vins)} is claimed by both '{a.schedule.name}' "
                f"({a.slot_sources[slot]}) and '{b.schedule.name}' ({b.slot_sources[slot]})",
            )
        )
    for signature, vins in sorted(over_limit.items()):
        parts = [
            f"{len(claims[i].schedule.programs)} from '{claims[i].schedule.name}' ({claims[i].schedule.source})"
            for i in signature
        ]
        total = sum(len(claims[i].schedule.programs) for i in signature)
        found.append(
            Diagnostic(
                claims[signature[-1]].schedule.source,
                "slot-limit",
                f"{_vehicle_list(vins)} would hold {total} programs, more than the {MAX_SLOTS} slots a vehicle "
                f"has: {', '.join(parts)}",
            )
        )
    return {vin: shared[signature] for signature, vins in sorted(by_signature.items()) for vin in vins}


def _vehicle_list(vins: list[str]) -> str:
    ordered = sorted(set(vins))
    if len(ordered) == 1:
        return f"vehicle {ordered[0]}"
    shown = ", ".join(ordered[:SHOWN_VINS])
    more = len(ordered) - SHOWN_VINS
    return f"{len(ordered):,} vehicles ({shown}{f' and {more:,} more' if more > 0 else ''})"
