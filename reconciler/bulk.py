"""Building large, long-lived structures (a state of 100,000 vehicles, their manifests) at full speed.

CPython's cyclic garbage collector runs every few hundred container allocations and, as the young objects
survive, walks older and older generations: while a 100,000-vehicle state is decoded it walks the millions of
objects decoded so far again and again, a third of the time `plan` takes. What is built here holds no reference
cycles for it to find (decoded JSON and YAML, frozen records), so it is paused while building. Memory is still
freed as usual by reference counting.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (as it was afterwards; blocks may nest)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
