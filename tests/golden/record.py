"""Record golden desired/live pairs: what harden sends, and what a real API server stores for it.

    python tests/golden/record.py [--kubeconfig FILE] [--out DIR]

For each bundled example (stack + offline snapshot) harden's own pipeline renders the bodies it
would apply (objects it owns, and its patches on the install's objects). Each body is
server-side applied with field manager `harden` to a real kube-apiserver, after the object it
patches was installed the way an install puts it there (`kubectl apply --server-side`), and read
back. Each pair is written as `{"config": <what harden sent>, "live": <what the server returned>}`
to tests/unit/golden/<case>/<Kind>.<namespace>.<name>.json, so the unit tests of diff and plan
compare against the server's real defaulting and managedFields instead of a hand-written model.

Without --kubeconfig a throwaway cluster is started from tests/kube/cluster.py. With one (the
integration test passes the session's cluster), everything is written under renamed namespaces
and cluster-scoped names (a random suffix), so it neither meets nor disturbs other tests'
objects, and the names are mapped back before the pairs are stored: the files do not depend on
where they were recorded. Values that differ on every run (uid, timestamps, resourceVersion) are
replaced by fixed ones; everything else, managedFields included, is kept as served.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harden.engine import Request, build_plan
from harden.kube import KubeClient
from harden.model import MANAGER, ChangeKind, Obj

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "unit" / "golden"


@dataclass(frozen=True)
class Case:
    name: str  # the directory its pairs go to
    snapshot: str
    stack_file: str | None = None
    profiles: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


CASES = (
    # The example stack binds ui-user-read-only to a Group only; a user binding adds the User subject.
    Case("argo-quick-start", "examples/snapshot", stack_file="examples/stack.yaml",
         sets=("ui-read-only-role.user=alice",)),
    Case("argocd", "examples/snapshot-argocd", stack_file="examples/argocd-stack.yaml"),
    Case("server-defaults", "examples/snapshot", profiles=("tests/golden/server-defaults.yaml",)),
)

# The install's own manager, as `kubectl apply --server-side` records it: harden's patches then
# meet another owner's fields, as they do in a real cluster.
INSTALLER = "kubectl"

FIXED_UID = "00000000-0000-0000-0000-000000000000"
FIXED_TIME = "2024-01-01T00:00:00Z"
FIXED_RESOURCE_VERSION = "100"
# What the server sets on write; an installed object is sent without it, as a manifest would be.
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink")


@dataclass(frozen=True)
class Body:
    """One body harden would apply, and the install's object it patches (None: harden owns it)."""

    case: str
    config: Obj
    installed: Obj | None


def bodies(case: Case) -> Iterator[Body]:
    """What harden would apply for this example, from its own pipeline (planned against the snapshot)."""
    with tempfile.TemporaryDirectory() as state_dir:
        req = Request(profiles=tuple(str(REPO / p) for p in case.profiles),
                      stack_file=str(REPO / case.stack_file) if case.stack_file else None, sets=case.sets,
                      snapshot=str(REPO / case.snapshot), state_dir=state_dir)
        planned = build_plan(req, with_impact=False)
    for change in planned.plan.actionable:
        if change.body is None:
            continue
        installed = planned.live.get(change.key) if change.kind is ChangeKind.PATCH else None
        yield Body(case.name, change.body, installed)


@dataclass(frozen=True)
class Renaming:
    """Where the objects really go on the recording cluster: same names plus a suffix."""

    suffix: str

    def away(self, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        meta = out["metadata"]
        if meta.get("namespace"):
            meta["namespace"] = f"{meta['namespace']}-{self.suffix}"
        else:
            meta["name"] = f"{meta['name']}-{self.suffix}"
        return out

    def back(self, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        meta = out["metadata"]
        if meta.get("namespace"):
            meta["namespace"] = meta["namespace"].removesuffix(f"-{self.suffix}")
        else:
            meta["name"] = meta["name"].removesuffix(f"-{self.suffix}")
        return out


def stable(served: Obj) -> Obj:
    """The served object with the values that differ on every write replaced by fixed ones."""
    out = copy.deepcopy(served)
    meta = out["metadata"]
    meta["uid"] = FIXED_UID
    meta["creationTimestamp"] = FIXED_TIME
    meta["resourceVersion"] = FIXED_RESOURCE_VERSION
    for entry in meta.get("managedFields") or []:
        entry["time"] = FIXED_TIME
    # Entries written within the same second come back in no fixed order; harden looks them up
    # by manager, so their order carries nothing worth recording.
    meta["managedFields"] = sorted(meta.get("managedFields") or [], key=lambda e: (e["manager"], e["operation"]))
    return out


def file_name(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}.{meta.get('namespace') or '_'}.{meta['name']}.json"


def _as_manifest(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for k in SERVER_SET:
        out["metadata"].pop(k, None)
    return out


def _read(client: KubeClient, obj: Obj) -> Obj:
    meta = obj["metadata"]
    res = client.resource(obj["apiVersion"], obj["kind"])
    served = res.get(name=meta["name"], namespace=meta.get("namespace")).to_dict()
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], **served}


def _create_namespace(client: KubeClient, name: str) -> None:
    client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, manager=INSTALLER)


def record(kubeconfig: str, out: Path) -> list[Path]:
    """Apply every example body to the cluster, read it back, write the pairs under `out`."""
    client = KubeClient(kubeconfig)
    renaming = Renaming(uuid.uuid4().hex[:6])
    todo = [b for case in CASES for b in bodies(case)]
    namespaces = sorted({b.config["metadata"]["namespace"] for b in todo if b.config["metadata"].get("namespace")})
    cluster_scoped = [b.config for b in todo if not b.config["metadata"].get("namespace")]
    written: list[Path] = []
    try:
        for ns in namespaces:
            _create_namespace(client, f"{ns}-{renaming.suffix}")
        for b in todo:
            if b.installed is not None:
                client.apply(renaming.away(_as_manifest(b.installed)), manager=INSTALLER)
            sent = renaming.away(b.config)
            client.apply(sent, manager=MANAGER)
            live = stable(renaming.back(_read(client, sent)))
            path = out / b.case / file_name(b.config)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"config": b.config, "live": live}, indent=2, sort_keys=True) + "\n")
            written.append(path)
    finally:
        for obj in cluster_scoped:
            moved = renaming.away(obj)
            client.delete(obj["apiVersion"], obj["kind"], "", moved["metadata"]["name"])
        for ns in namespaces:
            client.delete("v1", "Namespace", "", f"{ns}-{renaming.suffix}")
    return written


def _throwaway_cluster(d: Path) -> tuple[str, object]:
    # cluster.py is a script, not a package module: load it by path (as tests/integration/conftest.py does).
    spec = importlib.util.spec_from_file_location("harden_test_kube_cluster", REPO / "tests" / "kube" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    info = mod.up(d, watch_pid=os.getpid())
    return info["kubeconfigs"]["admin"], mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", help="record against this cluster (default: start a throwaway one)")
    ap.add_argument("--out", type=Path, default=GOLDEN, help=f"where to write the pairs (default: {GOLDEN})")
    a = ap.parse_args(argv)
    if a.kubeconfig:
        written = record(a.kubeconfig, a.out)
    else:
        with tempfile.TemporaryDirectory(prefix="harden-golden-") as d:
            kubeconfig, cluster = _throwaway_cluster(Path(d))
            try:
                written = record(kubeconfig, a.out)
            finally:
                cluster.down(d, quiet=True)
    print(f"wrote {len(written)} pairs under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
