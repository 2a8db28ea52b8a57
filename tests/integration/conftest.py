"""Integration test wiring: one real Kubernetes control plane per pytest session.

Fixtures:
    kube       (session)  KubeCluster, see below
    namespace  (function) name of a fresh namespace, deleted after the test

The cluster comes from tests/kube/cluster.py (etcd + kube-apiserver +
kube-controller-manager built from the pinned Kubernetes release). Set
HARDEN_KUBECONFIG=/path/to/kubeconfig to run against an existing cluster
instead (restricted identities are then unavailable unless
HARDEN_KUBECONFIG_<NAME> variables point at their kubeconfigs).

Every test collected under tests/integration gets the `integration` marker,
so `pytest -m "not integration"` runs only the fast unit tests.
"""

from __future__ import annotations

import atexit
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubeutil import apply_manifests, load_script

HERE = Path(__file__).resolve().parent
CLUSTER_PY = HERE.parent / "kube" / "cluster.py"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class KubeCluster:
    """What the `kube` fixture yields.

    kubeconfig   admin kubeconfig path (system:masters)
    restricted   {"alice": path, "bob": path}: users with no RBAC at all
    api_client   kubernetes.client.ApiClient for the admin
    info         content of cluster.json (server, ports, timings, logs), or
                 {} when HARDEN_KUBECONFIG points at an external cluster
    """

    kubeconfig: str
    restricted: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api_client = self.client_for()
        self._dynamic: DynamicClient | None = None

    # -- clients ---------------------------------------------------------
    def client_for(self, user: str | None = None) -> client.ApiClient:
        """A new ApiClient for `user` (one of self.restricted), or admin if None."""
        if user is None:
            path = self.kubeconfig
        else:
            try:
                path = self.restricted[user]
            except KeyError:
                pytest.skip(f"no kubeconfig for restricted user {user!r} "
                            f"(have: {sorted(self.restricted) or 'none'})")
        return config.new_client_from_config(config_file=path)

    def dynamic_for(self, user: str | None = None) -> DynamicClient:
        return DynamicClient(self.client_for(user))

    @property
    def dynamic(self) -> DynamicClient:
        """Admin DynamicClient (shared; discovery is cached)."""
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api_client)
        return self._dynamic

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def server(self) -> str:
        return self.api_client.configuration.host

    # -- helpers ---------------------------------------------------------
    def apply_manifests(self, path_or_docs, namespace: str | None = None, **kw) -> list[dict]:
        """kubeutil.apply_manifests with the admin client."""
        return apply_manifests(self.api_client, path_or_docs, namespace, **kw)

    def create_namespace(self, prefix: str = "t") -> str:
        name = _namespace_name(prefix)
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={"harden.test/ephemeral": "true"})))
        return name

    def delete_namespace(self, name: str) -> None:
        """Start deleting; do not wait for the namespace controller."""
        try:
            self.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


def _namespace_name(hint: str) -> str:
    # DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:50].strip("-") or "t"
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kube(tmp_path_factory) -> KubeCluster:
    external = os.environ.get("HARDEN_KUBECONFIG")
    if external:
        restricted = {k[len("HARDEN_KUBECONFIG_"):].lower(): v for k, v in os.environ.items()
                      if k.startswith("HARDEN_KUBECONFIG_") and v}
        yield KubeCluster(kubeconfig=external, restricted=restricted)
        return

    cluster = load_script("harden_test_kube_cluster", CLUSTER_PY)
    # tmp_path_factory keeps the last few runs' directories: logs of a failed
    # session stay inspectable under /tmp/pytest-of-$USER/.
    d = tmp_path_factory.mktemp("kube")
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            cluster.down(d, quiet=True)

    # atexit covers an interpreter exit that skips fixture finalization;
    # --watch-pid covers SIGKILL of pytest itself.
    atexit.register(stop)
    try:
        info = cluster.up(d, watch_pid=os.getpid())
    except cluster.ClusterError as e:
        stop()
        pytest.fail(f"could not start the test cluster:\n{e}", pytrace=False)
    kubeconfigs = dict(info["kubeconfigs"])
    admin = kubeconfigs.pop("admin")
    try:
        yield KubeCluster(kubeconfig=admin, restricted=kubeconfigs, info=info)
    finally:
        stop()


@pytest.fixture
def namespace(kube: KubeCluster, request) -> str:
    """A fresh, uniquely named namespace; deletion is started (not awaited) afterwards."""
    name = kube.create_namespace(request.node.name)
    yield name
    kube.delete_namespace(name)
