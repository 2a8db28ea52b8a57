"""gcpause: run a bulk stage without Python's cycle collector.

A plan reads and builds tens of thousands of small dicts, lists and tuples and almost no reference
cycles (parsed JSON and YAML have none; the plan's values are frozen dataclasses of them). The
collector still walks every tracked container on each full collection, and a full collection
comes around every few hundred thousand allocations: at 10,000 objects that was half the CPU of
reading the cluster and a tenth of a whole no-change plan. So the bulk stages pause it, and what
they built is then frozen (moved out of the collector's sight for good). Frozen objects are still
freed by reference counting when the last reference goes; only a cycle among them would outlive
its use; so a stage that may make cycles (DeepDiff's result trees are full of them) asks for one
collection before the freeze, which walks only what the stage built beyond the frozen read.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(*, collect: bool = False) -> Iterator[None]:
    """No cycle collection inside; what was allocated is frozen at the end, after one collection
    if `collect` (for a stage that may leave cycles behind). Nests: only the outermost pause turns
    the collector back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collect:
            gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()
