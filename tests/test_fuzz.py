"""Whatever the input, loading reports diagnostics or raises the tool's own error, never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config import load_settings
from reconciler.errors import ConfigError, ManifestError
from reconciler.manifests import load_desired, load_manifests

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


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(DOCUMENTS)
def test_random_yaml(documents: list[Any]) -> None:
    _load_bytes(yaml.safe_dump_all(documents, allow_unicode=True).encode())


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("kind: -[]{}&*!|>'\"#\t\n ,?%@`Callback07:3")), max_size=120))
def test_random_yaml_like_text(text: str) -> None:
    _load_bytes(text.encode())
