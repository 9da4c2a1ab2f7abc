"""Whatever the input, loading reports diagnostics or raises the tool's own error, never anything else."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config import load_settings
from reconciler.diagnostics import Report
from reconciler.errors import ConfigError, ExitCode, ManifestError
from reconciler.manifests import load_desired, load_manifests
from reconciler.validate import validate_project
from tests.files import REPO

KEYS = st.sampled_from(
    [
        "kind",
        "name",
        "vins",
        "vehicles",
        "groups",
        "programs",
        "slot",
        "start",
        "days",
        "callback",
        "webhook",
        "target",
        "headers",
        "remoteTypes",
        "retryPolicy",
        "batchNotify",
        "status",
        "enabled",
        "api",
        "state",
        "fleet",
    ]
)
KINDS = st.sampled_from(["Callback", "VehicleGroup", "Preconditioning", "Other"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    KINDS,
    st.sampled_from(["07:30", "24:00", "PT7H", "weekdays", "Mon", "VF3UHNKF5RL000005", "${env:X}", "${bad"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), inner, max_size=5)
    ),
    max_leaves=25,
)
DOCUMENTS = st.lists(
    st.one_of(VALUES, st.dictionaries(KEYS, VALUES, min_size=1).map(lambda d: {"kind": "Preconditioning", **d})),
    min_size=0,
    max_size=4,
)


def _load_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "m.yaml")
        path.write_bytes(raw)
        outcome = load_manifests([path], {})
        assert outcome.desired is not None or outcome.errors
        try:
            load_desired([path], {})
        except ManifestError as error:
            assert error.diagnostics
        config = Path(folder, "reconciler.yaml")
        config.write_bytes(raw)
        try:
            load_settings(config, {})
        except ConfigError as error:
            assert error.diagnostics


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    _load_bytes(raw)


@pytest.mark.slow
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(DOCUMENTS)
def test_random_yaml(documents: list[Any]) -> None:
    _load_bytes(yaml.safe_dump_all(documents, allow_unicode=True).encode())


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("kind: -[]{}&*!|>'\"#\t\n ,?%@`Callback07:3")), max_size=120))
def test_random_yaml_like_text(text: str) -> None:
    _load_bytes(text.encode())


# ---- hostile repos: random nesting, aliases and kinds of file, through `validate` ------------------------

RULES = frozenset(
    re.findall(
        r"`([a-z0-9]+(?:-[a-z0-9]+)*)`",
        "\n".join(
            line.split("|")[1]
            for line in (REPO / "README.md")
            .read_text()
            .split("### What `validate` checks")[1]
            .split("\n## ")[0]
            .splitlines()
            if line.startswith("| `")
        ),
    )
)
GROUP = "kind: VehicleGroup\nname: g{n}\nvins: [VF3UHNKF5RL000005]\n"


def _bomb(levels: int, width: int) -> str:
    lines = [f"  a0: &a0 [{', '.join(['VF3UHNKF5RL000005'] * width)}]"]
    lines += [f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * width)}]" for n in range(1, levels)]
    return "kind: VehicleGroup\nname: bomb\nvins: []\ndescription:\n" + "\n".join(lines) + f"\nx: *a{levels - 1}\n"


def _nested(depth: int, mapping: bool) -> str:
    opening, closing = ("{a: ", "}") if mapping else ("[", "]")
    return f"kind: VehicleGroup\nname: deep\nvins: {opening * depth}x{closing * depth}\n"


ENTRIES = st.one_of(
    st.tuples(st.just("yaml"), DOCUMENTS.map(lambda docs: yaml.safe_dump_all(docs, allow_unicode=True))),
    st.tuples(st.just("yaml"), st.builds(_bomb, st.integers(1, 10), st.integers(1, 12))),
    st.tuples(st.just("yaml"), st.builds(_nested, st.integers(1, 200), st.booleans())),
    st.tuples(
        st.just("yaml"), st.sampled_from(["a: &a [1, *a]\n", "", "# nothing\n", "a: *nowhere\n", "x: !!binary aGk=\n"])
    ),
    st.tuples(st.just("yaml"), st.just("kind: VehicleGroup\nname: big\nvins: ['" + "x" * 300_000 + "']\n")),
    st.tuples(
        st.sampled_from(["fifo", "devzero", "loop", "broken", "folder", "outside", "self", "socket"]), st.just("")
    ),
)
CONFIGS = st.sampled_from(
    [
        "fleet: f\n",
        "fleet: f\n",
        "fleet: f\n",
        "fleet: f\nmanifests: [manifests/sub, manifests]\n",
        "fleet: f\nmanifests: [manifests, manifests/sub]\n",
        "fleet: f\nmanifests: [/]\n",
        "fleet: f\nallow_manifests_outside_repo: true\n",
        "fleet: f\napi: {rate_limit: 1e-300, timeout: 1e308, parallelism: 1e9}\n",
        "fleet: f\npending_timeout: 999999999h\nguards: {max_deleted_slots: 1000%}\n",
        "fleet: &f [*f]\n",
        _bomb(8, 9).replace("kind: VehicleGroup\nname: bomb\nvins: []\ndescription:", "api:"),
    ]
)


def _make(root: Path, index: int, kind: str, text: str, sockets: list[socket.socket]) -> None:
    folder = root / "manifests" / ("sub" if index % 3 == 2 else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"e{index}.yaml"
    if kind == "yaml":
        path.write_text(text, encoding="utf-8")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(f"e{index}-back.yaml")
        (folder / f"e{index}-back.yaml").symlink_to(path.name)
    elif kind == "broken":
        path.symlink_to("nowhere.yaml")
    elif kind == "folder":
        path.mkdir()
        (path / "inner.yaml").write_text(GROUP.format(n=index))
    elif kind == "outside":
        path.symlink_to(root.parent)
    elif kind == "self":
        (folder / f"up{index}").symlink_to(".")
        path.write_text(GROUP.format(n=index))
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        sockets.append(server)


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(CONFIGS, st.lists(ENTRIES, min_size=1, max_size=6))
def test_hostile_repos_get_documented_diagnostics_in_bounded_time_and_memory(
    config: str, entries: list[tuple[str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "repo"
        root.mkdir()
        (root / "reconciler.yaml").write_text(config)
        sockets: list[socket.socket] = []
        for index, (kind, text) in enumerate(entries):
            _make(root, index, kind, text, sockets)
        outcome: list[Report] = []
        tracemalloc.start()
        started = time.perf_counter()
        try:
            worker = threading.Thread(target=lambda: outcome.append(validate_project(root / "reconciler.yaml", {})))
            worker.daemon = True
            worker.start()
            worker.join(60)
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            for server in sockets:
                server.close()
        assert outcome, "validate blocked"
        report = outcome[0]
        assert report.exit_code in (ExitCode.OK, ExitCode.INVALID)
        assert {d.rule for d in report.diagnostics} <= RULES, {d.rule for d in report.diagnostics} - RULES
        assert all(len(d.message) < 2000 for d in report.diagnostics)
        assert elapsed < 20, elapsed
        assert peak < 200 * 1024 * 1024, peak
