"""The fault soak of `soak.py`, small: 12 seeded runs on a stack of three workflow namespaces.

The full soak (200 runs, a few hundred objects) is run by hand with `python
tests/integration/soak.py --runs 200`; its counts are in the README (State and locking). This
keeps the same checks in CI: every run exits 0 or 1 within its timeout, leaves valid state, and
converges (on a re-run without faults if it exited 1); no destroy loses a restore point.
"""

from __future__ import annotations

import os

from soak import Config, Soak

RUNS = int(os.environ.get("HARDEN_SOAK_RUNS", "12"))


def test_fault_injected_applies_and_destroys_converge(kube, tmp_path):
    soak = Soak(kube, tmp_path / "soak", Config(runs=RUNS, seed=2026, namespaces=3, stall_chance=0.25),
                log=print)
    try:
        soak.setup()
        counts = soak.run()
    finally:
        soak.close()
    print(counts)
    assert counts.failures == [] and counts.failed == 0
    assert counts.hangs == 0 and counts.lost_restore_points == 0 and counts.bad_exit_codes == 0
    assert counts.runs == RUNS == counts.converged_first_try + counts.exit1_then_converged
    # The seed gives a mix that reaches both outcomes and both operations, through every fault type.
    assert counts.applies and counts.destroys and counts.exit1_then_converged and counts.converged_first_try
    assert counts.objects > 40
    assert {"reset_before", "reset_after", "throttle", "conflict", "stall"} <= set(counts.faults), counts.faults
