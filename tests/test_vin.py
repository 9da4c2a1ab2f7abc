from __future__ import annotations

import re

from reconciler import schema
from reconciler.vin import WMIS, check_digit, make_vin


def test_check_digit_of_the_textbook_example() -> None:
    assert check_digit("1M8GDM9A_KP042788".replace("_", "0")) == "X"


def test_made_vins_are_valid_unique_and_stable() -> None:
    vins = [make_vin(i) for i in range(2000)]
    assert len(set(vins)) == 2000
    assert all(re.fullmatch(schema.VIN_PATTERN, v) for v in vins)
    assert all(v[8] == check_digit(v) for v in vins)
    assert {v[:3] for v in vins} == set(WMIS)
    assert make_vin(1) == "VF7SHMZH8RP000001"
