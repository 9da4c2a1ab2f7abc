"""Writes large, valid config repos for the benchmarks."""

from __future__ import annotations

from pathlib import Path

from reconciler.vin import make_vin

CALLBACK = """kind: Callback
name: fleet-ops
webhook:
  target: https://hooks.example.com/stellantis
  headers: {Authorization: "${env:WEBHOOK_AUTH}"}
remoteTypes: [ThermalPreconditioning]
"""


def write_fleet(
    root: Path,
    vehicles: int,
    group_size: int = 1000,
    groups_per_schedule: int = 10,
    first: int = 0,
    fleet: str = "bench-fleet",
) -> Path:
    """A repo with `vehicles` VINs (make_vin(first) on) in groups, every vehicle holding 4 slots from one schedule."""
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (root / "reconciler.yaml").write_text(f"fleet: {fleet}\nmanifests: [manifests]\n")
    (manifests / "callbacks.yaml").write_text(CALLBACK)
    groups = []
    with open(manifests / "groups.yaml", "w") as out:
        for start in range(0, vehicles, group_size):
            name = f"depot-{start // group_size:04d}"
            groups.append(name)
            out.write(f"---\nkind: VehicleGroup\nname: {name}\nvins:\n")
            out.writelines(f"  - {make_vin(first + i)}\n" for i in range(start, min(start + group_size, vehicles)))
    with open(manifests / "schedules.yaml", "w") as out:
        for index in range(0, len(groups), groups_per_schedule):
            chosen = ", ".join(groups[index : index + groups_per_schedule])
            hour = 5 + (index // groups_per_schedule) % 4
            out.write(
                f"---\nkind: Preconditioning\nname: shift-{index // groups_per_schedule:03d}\ncallback: fleet-ops\n"
                f"vehicles:\n  groups: [{chosen}]\nprograms:\n"
                f'  - {{slot: 1, start: "{hour:02d}:30", days: weekdays}}\n'
                f'  - {{slot: 2, start: "{hour + 6:02d}:00", days: weekdays}}\n'
                f'  - {{slot: 3, start: "{hour + 2:02d}:15", days: weekend}}\n'
                f'  - {{slot: 4, start: "PT{hour + 12}H", days: [Sat]}}\n'
            )
    return root
