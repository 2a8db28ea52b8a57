"""Helpers for integration tests that talk to the real API server.

Importable from test modules as ``from kubeutil import ...`` (pytest puts
tests/integration on sys.path because the directory has no __init__.py).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

# Upstream install manifests vendored into the repository (tests/fixtures/README.md names their
# source and licence), so a plain clone runs every test.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Field manager used when loading fixtures, distinct from harden's own
# ("harden") so tests can observe ownership hand-over.
FIXTURE_MANAGER = "harden-tests"

# libyaml parses the 1.8 MB Argo CD CRDs in ~1s instead of ~20s.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_script(name: str, path: Path) -> ModuleType:
    """A script of the test suite (tests/kube/cluster.py, tests/argocd/argocd.py, tests/golden/record.py:
    run before the project is installed, so not package modules), loaded by path as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses & co. look modules up here
    spec.loader.exec_module(mod)
    return mod


def require_fixture(relpath: str) -> Path:
    """Path of a vendored fixture file; a missing one fails the test (it is part of the repository)."""
    p = FIXTURES / relpath
    if not p.exists():
        pytest.fail(f"fixture {relpath} is missing at {p}; it is vendored in tests/fixtures/")
    return p


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> Any:
    """Poll predicate() until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def load_docs(path_or_docs: str | Path | dict | Iterable[dict]) -> list[dict]:
    """Multi-document YAML file / YAML text / dict / list of dicts -> list of objects.

    `kind: List` documents are flattened; empty documents are dropped.
    """
    if isinstance(path_or_docs, Path) or (isinstance(path_or_docs, str) and "\n" not in path_or_docs
                                          and Path(path_or_docs).exists()):
        docs = list(yaml.load_all(Path(path_or_docs).read_text(), Loader=_Loader))
    elif isinstance(path_or_docs, str):
        docs = list(yaml.load_all(path_or_docs, Loader=_Loader))
    elif isinstance(path_or_docs, dict):
        docs = [path_or_docs]
    else:
        docs = list(path_or_docs)
    out: list[dict] = []
    for d in docs:
        if not d:
            continue
        if d.get("kind") == "List" or (d.get("kind", "").endswith("List") and "items" in d):
            out.extend(i for i in d.get("items") or [] if i)
        else:
            out.append(d)
    return out


def _is_crd(obj: dict) -> bool:
    return obj.get("kind") == "CustomResourceDefinition" and \
        obj.get("apiVersion", "").startswith("apiextensions.k8s.io/")


def wait_for_crds(dyn: DynamicClient, crds: Iterable[dict], timeout: float = 60.0) -> None:
    """Wait until each CRD is Established and its kind is served by discovery."""
    crd_api = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    for crd in crds:
        name = crd["metadata"]["name"]

        def established() -> bool:
            conds = (crd_api.get(name=name).to_dict().get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

        wait_for(established, timeout, what=f"CRD {name} to be Established")
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if not v.get("served", True):
                continue

            def discovered() -> bool:
                # LazyDiscoverer refreshes its cache on a miss, so polling
                # get() is enough to see the new group once it is published.
                try:
                    dyn.resources.get(api_version=f"{group}/{v['name']}", kind=kind)
                    return True
                except ResourceNotFoundError:
                    return False

            wait_for(discovered, timeout, interval=0.5,
                     what=f"discovery of {kind}.{group}/{v['name']}")


def apply_manifests(api_client: client.ApiClient, path_or_docs, namespace: str | None = None, *,
                    field_manager: str = FIXTURE_MANAGER, override_namespace: bool = False,
                    create_namespace: bool = True, timeout: float = 60.0) -> list[dict]:
    """Server-side apply every object of a manifest; return the applied objects.

    Order: Namespaces, then CRDs (waited on until Established and discoverable),
    then everything else in file order. Namespaced objects without a namespace
    get `namespace` (set override_namespace=True to force it on all of them);
    the namespace is created first if missing. Server-side apply (force) makes
    the call idempotent, so loading the same fixture twice is fine.
    """
    docs = load_docs(path_or_docs)
    dyn = DynamicClient(api_client)
    core = client.CoreV1Api(api_client)

    if namespace and create_namespace:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        except ApiException as e:
            if e.status != 409:
                raise

    namespaces = [d for d in docs if d.get("kind") == "Namespace" and d.get("apiVersion") == "v1"]
    crds = [d for d in docs if _is_crd(d)]
    rest = [d for d in docs if d not in namespaces and d not in crds]

    applied: list[dict] = []

    def apply(objs: list[dict]) -> None:
        for obj in objs:
            obj = dict(obj, metadata=dict(obj.get("metadata") or {}))
            res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            ns = None
            if res.namespaced:
                ns = obj["metadata"].get("namespace")
                if namespace and (override_namespace or not ns):
                    ns = namespace
                if not ns:
                    raise ValueError(f"{obj['kind']}/{obj['metadata'].get('name')} is namespaced "
                                     f"but no namespace was given")
                obj["metadata"]["namespace"] = ns
            else:
                obj["metadata"].pop("namespace", None)
            out = res.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=ns,
                                        field_manager=field_manager, force_conflicts=True)
            applied.append(out.to_dict())

    apply(namespaces)
    apply(crds)
    if crds:
        wait_for_crds(dyn, crds, timeout)
    apply(rest)
    return applied


# -- running harden as a user would ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
CLI_ENV = {"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}


def harden_cmd(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "harden.cli", *args]


def run_harden(*args: str, kubeconfig: str | None = None, state: Path | str | None = None):
    """Run the harden CLI in a subprocess (real exit codes, real stdout/stderr)."""
    import subprocess

    cmd = harden_cmd(*args)
    if kubeconfig:
        cmd += ["--kubeconfig", kubeconfig]
    if state:
        cmd += ["--state-dir", str(state)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env=CLI_ENV)


def start_harden(*args: str):
    """Start the harden CLI in the background, output discarded (a full pipe would stall it)."""
    import subprocess

    return subprocess.Popen(harden_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=CLI_ENV)
