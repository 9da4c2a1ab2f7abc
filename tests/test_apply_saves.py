"""Apply's periodic saves: often enough to keep a restart cheap, never a large share of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api.client import ApiConfig, FleetClient
from reconciler.apply import SAVE_EVERY, Applier
from reconciler.plan import Plan
from reconciler.state.file import FileBackend
from reconciler.state.model import State
from tests.planning import desired


@pytest.mark.parametrize(("save_takes", "next_save_after"), [(0.05, SAVE_EVERY), (2.0, 20.0)])
def test_saves_keep_to_a_tenth_of_the_run(tmp_path: Path, save_takes: float, next_save_after: float) -> None:
    clock = [100.0]

    class Timed(FileBackend):
        def save(self, *args: Any, **kwargs: Any) -> int:
            clock[0] += save_takes
            return super().save(*args, **kwargs)

    api = httpx.MockTransport(lambda request: httpx.Response(500))
    config = ApiConfig("https://api.example/v3", "c", "u", "p")
    with FleetClient(config, "f", transport=api) as client:
        applier = Applier(
            Plan("f", None, None, "m"),
            desired(),
            State.new("f"),
            Timed(tmp_path / "s.json"),
            client,
            clock=lambda: clock[0],
        )
        applier.save()
        applier.save()
    assert applier.save_every == pytest.approx(next_save_after)
    assert applier.report.saves == 2
    assert applier.report.saving == pytest.approx(2 * save_takes)
