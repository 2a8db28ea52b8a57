"""The golden desired/live pairs the unit tests read (tests/unit/golden/) are still what the real
API server returns: recorded again here, they must equal the files in the repository. A change in
server defaulting or managedFields (a Kubernetes upgrade in tests/kube) fails this test instead of
leaving the unit tests to pass against an answer the server no longer gives."""

from __future__ import annotations

import json
from pathlib import Path

from kubeutil import load_script

HERE = Path(__file__).resolve().parent
RECORD_PY = HERE.parent / "golden" / "record.py"


def _files(root: Path) -> dict[str, dict]:
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))}


def test_recorded_pairs_match_what_the_server_returns_now(kube, tmp_path):
    record = load_script("harden_test_golden_record", RECORD_PY)
    written = record.record(kube.kubeconfig, tmp_path)
    assert written, "the examples render nothing to record"
    now, stored = _files(tmp_path), _files(record.GOLDEN)
    assert sorted(now) == sorted(stored), "re-record with `python tests/golden/record.py`"
    drifted = [name for name in now if now[name] != stored[name]]
    assert not drifted, f"the server now returns something else for {drifted}; re-record with " \
                        "`python tests/golden/record.py` and check what the diff normalization must learn"
