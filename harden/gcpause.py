"""gcpause: run a bulk stage without Python's cycle collector.

A plan reads and builds tens of thousands of small dicts, lists and tuples and almost no reference
cycles (parsed JSON and YAML have none; the plan's values are frozen dataclasses of them). The
collector still walks every tracked container on each full collection, and a full collection
comes around every few hundred thousand allocations: at 10,000 objects that was half the CPU of
reading the cluster and a tenth of a whole no-change plan. So the bulk stages pause it, and what
they built is then frozen (moved out of the collector's sight for good). Frozen objects are still
freed by reference counting when the last reference goes; only a cycle among them would outlive
its use, and these stages make none worth a collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cycle collection inside; what was allocated is frozen at the end. Nests: only the
    outermost pause turns the collector back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
