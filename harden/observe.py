"""observe: read the live state in bulk, from a cluster or an offline snapshot.

One paginated LIST per kind (across all namespaces), never one GET per object, run in parallel
across kinds. A snapshot is a directory or file of manifests (multi-document YAML, `kind: List`
from `kubectl get -o yaml`), so a pipeline without credentials can still plan. Secret values are
redacted here, at the edge, so nothing downstream can leak them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from .errors import Forbidden, InputError
from .gcpause import collector_paused
from .mergekeys import BUILTIN, MergeKeys, from_openapi, openapi_paths
from .model import Live, Obj, ResourceKey
from .parallel import NotStarted, guarded
from .redact import redact
from .yamlsrc import load_file

# What the plan and its impact analysis read, besides the kinds the profiles name.
BASE_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    # The API server's own addresses (the `kubernetes` Service's slice), for egress needs and policies.
    ("discovery.k8s.io/v1", "EndpointSlice"),
)

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
                  "StorageClass", "PersistentVolume", "Node", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration", "APIService", "IngressClass", "RuntimeClass",
                  "ClusterWorkflowTemplate"}


class Source(Protocol):
    def observe(self, kinds: Iterable[tuple[str, str]]) -> Live: ...

    def merge_keys(self, kinds: Iterable[tuple[str, str]]) -> MergeKeys: ...


def _index(objs: Iterable[Obj], kinds: set[tuple[str, str]], source: dict) -> Live:
    live = Live(kinds=set(kinds), source=source)
    for obj in objs:
        live.objects[ResourceKey.of(obj)] = redact(obj)
    return live


class Reader(Protocol):
    """What observe needs of the Kubernetes client (harden.kube.KubeClient), which it may not import."""

    context: str
    host: str

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]: ...

    def openapi(self, path: str) -> dict[str, Any] | None: ...


class ClusterSource:
    def __init__(self, client: Reader, parallelism: int = 6) -> None:
        self.client = client
        self.parallelism = parallelism

    def observe(self, kinds: Iterable[tuple[str, str]]) -> Live:
        kinds = sorted(set(kinds) | set(BASE_KINDS))
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.parallelism)
        with collector_paused():
            return self._read(pool, stop, kinds)

    def _read(self, pool: ThreadPoolExecutor, stop: threading.Event, kinds: list[tuple[str, str]]) -> Live:
        try:
            futures = [pool.submit(guarded, stop, self.client.list, *k) for k in kinds]
            # The first failure ends the read: a dead connection costs one request timeout, not
            # one per batch of kinds.
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [e for f in futures if f.done() and not f.cancelled()
                      and (e := f.exception()) is not None and not isinstance(e, NotStarted)]
            if failed:
                raise failed[0]
            objs = [o for f in futures for o in f.result()]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return _index(objs, set(kinds), {"kind": "cluster", "context": self.client.context, "host": self.client.host})

    def merge_keys(self, kinds: Iterable[tuple[str, str]]) -> MergeKeys:
        """The list merge strategies the cluster's OpenAPI v3 declares for these kinds (and the base
        kinds), one document per group-version; the built-in table where the cluster says nothing."""
        kinds = sorted(set(kinds) | set(BASE_KINDS))
        try:
            with ThreadPoolExecutor(self.parallelism) as pool:
                docs = [d for d in pool.map(self.client.openapi, openapi_paths(kinds)) if d]
        except Forbidden:
            return BUILTIN  # an identity that may not read the schema plans as offline, not not at all
        return from_openapi(docs, kinds)


class SnapshotSource:
    """Manifests on disk. Objects without a namespace get `default_namespace` if their kind is namespaced."""

    def __init__(self, path: str, default_namespace: str = "default") -> None:
        self.path = Path(path)
        self.default_namespace = default_namespace
        if not self.path.exists():
            raise InputError(f"snapshot not found: {path}", field="--snapshot",
                             hint="pass a directory or YAML file of manifests (e.g. `kubectl get -A -o yaml ...`)")

    def observe(self, kinds: Iterable[tuple[str, str]]) -> Live:
        with collector_paused():
            return self._read(kinds)

    def _read(self, kinds: Iterable[tuple[str, str]]) -> Live:
        files = sorted(self.path.rglob("*.y*ml")) if self.path.is_dir() else [self.path]
        objs: list[Obj] = []
        for f in files:
            for doc in load_file(f):
                is_list = isinstance(doc.data, dict) and doc.data.get("kind", "").endswith("List")
                items = doc.data.get("items", []) if is_list else [doc.data]
                for obj in items:
                    if not isinstance(obj, dict) or "kind" not in obj or "metadata" not in obj:
                        raise InputError("not a Kubernetes object (no kind or metadata)", file=str(f),
                                         line=doc.start_line,
                                         hint="a snapshot holds manifests or `kubectl get -o yaml` output")
                    if obj["kind"] not in CLUSTER_SCOPED:
                        obj["metadata"].setdefault("namespace", self.default_namespace)
                    objs.append(obj)
        # Namespaces that objects live in exist even if the snapshot has no Namespace object for them.
        present = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
        for ns in sorted({o["metadata"].get("namespace") for o in objs} - present - {None}):
            objs.append({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
        return _index(objs, set(kinds) | set(BASE_KINDS), {"kind": "snapshot", "path": str(self.path)})

    def merge_keys(self, kinds: Iterable[tuple[str, str]]) -> MergeKeys:
        return BUILTIN  # a snapshot carries no schema
