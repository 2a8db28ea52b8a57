"""The merge-key table harden reads from the real API server's OpenAPI v3 agrees with the built-in
table it falls back to offline, for every field that table names."""

from __future__ import annotations

from harden.kube import KubeClient
from harden.mergekeys import ATOMIC_ONLY, BUILTIN, from_openapi, openapi_paths
from harden.observe import BASE_KINDS, ClusterSource


def test_cluster_table_agrees_with_the_builtin_fallback(kube):
    client = KubeClient(kube.kubeconfig)
    docs = [client.openapi(p) for p in openapi_paths(BASE_KINDS)]
    assert all(docs), "the API server serves an OpenAPI v3 document for every group-version harden reads"
    # No fallback: what the server alone says.
    served = from_openapi(docs, BASE_KINDS, fallback=ATOMIC_ONLY)
    assert {f: served.key(f) for f in BUILTIN.keyed} == dict(BUILTIN.keyed)
    # Lists harden compares whole must not be keyed by the server either.
    for atomic in ("rules", "subjects", "ingress", "egress", "ports", "args", "verbs"):
        assert served.key(atomic) is None, atomic


def test_cluster_source_table_agrees_and_unknown_groups_are_absent(kube):
    client = KubeClient(kube.kubeconfig)
    table = ClusterSource(client).merge_keys(BASE_KINDS)
    assert {f: table.key(f) for f in BUILTIN.keyed} == dict(BUILTIN.keyed)
    assert client.openapi("/openapi/v3/apis/no-such-group.example.com/v1") is None
