"""What commands share: settings, desired model and recorded state loaded together, and plan files."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reconciler.config import Settings, load_settings
from reconciler.diagnostics import Diagnostic
from reconciler.errors import PlanError, StateError
from reconciler.manifests import load_desired
from reconciler.model import Desired
from reconciler.plan import Plan, canonical_json
from reconciler.planner import PlanOptions, Selector, make_plan
from reconciler.state.backend import StateBackend, utcnow
from reconciler.state.model import State
from reconciler.state.open import open_backend


@dataclass(frozen=True, slots=True)
class Project:
    settings: Settings
    fleet: str
    backend: StateBackend
    warnings: tuple[Diagnostic, ...] = ()

    def load_state(self) -> State | None:
        state = self.backend.load()
        if state is not None and state.fleet != self.fleet:
            assert self.settings.fleet is not None
            raise StateError(
                f"state {self.backend.name} belongs to fleet {state.fleet}, not {self.fleet} "
                f"(fleet set at {self.settings.fleet.source})"
            )
        return state


def open_project(config: Path, environ: Mapping[str, str]) -> Project:
    settings = load_settings(config, environ)
    fleet = settings.require(settings.fleet, "fleet")
    return Project(settings, fleet, open_backend(settings), settings.diagnostics)


def plan_project(
    project: Project,
    environ: Mapping[str, str],
    *,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    retry_failed: bool = False,
    now: datetime | None = None,
) -> tuple[Plan, Desired, State | None, tuple[Diagnostic, ...]]:
    """Validate the manifests (secrets needed: they are fingerprinted), load the state, and plan."""
    desired, warnings = load_desired(project.settings.manifests, environ, strict=True)
    state = project.load_state()
    options = PlanOptions(
        now=now or utcnow(),
        pending_timeout=project.settings.pending_timeout,
        retry_failed=retry_failed,
        targets=tuple(Selector.parse(t) for t in targets),
        excludes=tuple(Selector.parse(e) for e in excludes),
        guards=project.settings.guards,
    )
    plan = make_plan(desired, state, project.fleet, options)
    # unset API credentials matter to apply, not to a plan (which a pull request from a fork may run)
    relevant = tuple(d for d in project.warnings if d.rule != "env-missing")
    return plan, desired, state, (*relevant, *warnings)


def write_plan(plan: Plan, path: Path) -> None:
    """Save a plan file atomically: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_text(canonical_json(plan.to_dict()) + "\n", encoding="utf-8")
    os.replace(temp, path)


def read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanError(f"{path} is not a reconciler plan file ({error})") from error
    return Plan.from_dict(data, str(path))
