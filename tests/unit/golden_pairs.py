"""Golden desired/live pairs recorded from the real test API server (tests/golden/record.py).

`config` is a body harden's profiles render for the bundled examples; `live` is what the
kube-apiserver of tests/kube stored for it after a server-side apply with field manager `harden`:
defaults filled in, managedFields as served. tests/integration/test_golden_recording.py records
them again and fails when the server's answer drifts from these files.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


@dataclass(frozen=True)
class Pair:
    path: Path
    config: dict
    live: dict

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


def all_pairs() -> list[Pair]:
    pairs = []
    for path in sorted(GOLDEN.glob("*/*.json")):
        data = json.loads(path.read_text())
        pairs.append(Pair(path, data["config"], data["live"]))
    return pairs


def pair(stack: str, kind: str, namespace: str | None, name: str) -> Pair:
    """One recorded pair; deep copies, so a test may mutate them freely."""
    path = GOLDEN / stack / f"{kind}.{namespace or '_'}.{name}.json"
    data = json.loads(path.read_text())
    return Pair(path, copy.deepcopy(data["config"]), copy.deepcopy(data["live"]))


def live_as_served(config: dict, rv: str | None = None) -> dict:
    """The recorded live object whose config is exactly `config` (the body a test rendered),
    with another resourceVersion if given. Fails when no recording matches, so a change to what
    the profiles render asks for a new recording rather than passing against stale data."""
    for p in all_pairs():
        if p.config == config:
            live = copy.deepcopy(p.live)
            if rv is not None:
                live["metadata"]["resourceVersion"] = rv
            return live
    meta = config["metadata"]
    raise LookupError(f"no golden pair for {config['kind']} {meta.get('namespace')}/{meta['name']} with this body; "
                      "re-record with `python tests/golden/record.py`")
