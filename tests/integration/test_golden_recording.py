"""The golden desired/live pairs the unit tests read (tests/unit/golden/) are still what the real
API server returns: recorded again here, they must equal the files in the repository. A change in
server defaulting or managedFields (a Kubernetes upgrade in tests/kube) fails this test instead of
leaving the unit tests to pass against an answer the server no longer gives."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD_PY = HERE.parent / "golden" / "record.py"


def _record_module():
    # record.py is a script (python tests/golden/record.py), not a package module: load it by path.
    spec = importlib.util.spec_from_file_location("harden_test_golden_record", RECORD_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _files(root: Path) -> dict[str, dict]:
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))}


def test_recorded_pairs_match_what_the_server_returns_now(kube, tmp_path):
    record = _record_module()
    written = record.record(kube.kubeconfig, tmp_path)
    assert written, "the examples render nothing to record"
    now, stored = _files(tmp_path), _files(record.GOLDEN)
    assert sorted(now) == sorted(stored), "re-record with `python tests/golden/record.py`"
    drifted = [name for name in now if now[name] != stored[name]]
    assert not drifted, f"the server now returns something else for {drifted}; re-record with " \
                        "`python tests/golden/record.py` and check what the diff normalization must learn"
