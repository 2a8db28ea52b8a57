"""mergekeys: the list merge strategies, extracted from a cluster's OpenAPI v3 documents.

data/openapi-fragment.json is recorded from the test API server (Kubernetes v1.36.3, tests/kube):
`/openapi/v3/apis/apps/v1` (Deployment down to Container, ObjectMeta) and `/openapi/v3/api/v1`
(ServiceAccount), with descriptions and non-list properties off the way to a list removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from harden.mergekeys import ATOMIC_ONLY, BUILTIN, ListType, MergeKeys, from_openapi, list_semantics, openapi_paths

RECORDED = json.loads((Path(__file__).parent / "data" / "openapi-fragment.json").read_text())
DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE_ACCOUNT = ("v1", "ServiceAccount")


def test_keyed_lists_of_a_deployment_come_from_its_schema():
    got = from_openapi(RECORDED.values(), {DEPLOYMENT}, fallback=ATOMIC_ONLY)
    assert dict(got.keyed) == {
        "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
        "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "hostAliases": "ip",
        "imagePullSecrets": "name", "resourceClaims": "name", "schedulingGates": "name", "ownerReferences": "uid"}
    assert got.sets == frozenset({"finalizers"})


def test_the_recorded_schema_agrees_with_the_builtin_table():
    got = from_openapi(RECORDED.values(), {DEPLOYMENT}, fallback=ATOMIC_ONLY)
    assert {f: got.key(f) for f in BUILTIN.keyed} == dict(BUILTIN.keyed)


def test_compound_keys_and_atomic_lists_are_not_keyed():
    got = from_openapi(RECORDED.values(), {DEPLOYMENT}, fallback=ATOMIC_ONLY)
    assert got.key("ports") is None  # containerPort + protocol: compared whole
    assert got.key("topologySpreadConstraints") is None
    assert got.key("args") is None and got.key("tolerations") is None


def test_only_the_kinds_in_play_count():
    """imagePullSecrets is keyed in a PodSpec but atomic on a ServiceAccount: with only the
    ServiceAccount in play it is atomic, with both the schemas disagree and the fallback decides."""
    sa = from_openapi(RECORDED.values(), {SERVICE_ACCOUNT}, fallback=ATOMIC_ONLY)
    assert sa.key("imagePullSecrets") is None and sa.key("secrets") == "name"
    assert sa.key("containers") is None  # no PodSpec reachable from a ServiceAccount
    both = {DEPLOYMENT, SERVICE_ACCOUNT}
    assert from_openapi(RECORDED.values(), both, fallback=ATOMIC_ONLY).key("imagePullSecrets") is None
    pulls = MergeKeys(MappingProxyType({"imagePullSecrets": "name"}))
    assert from_openapi(RECORDED.values(), both, fallback=pulls).key("imagePullSecrets") == "name"


def test_the_cluster_overrides_the_fallback_where_it_decides():
    stale = MergeKeys(MappingProxyType({"containers": "image", "args": "x", "unknownToTheCluster": "id"}))
    got = from_openapi(RECORDED.values(), {DEPLOYMENT}, fallback=stale)
    assert got.key("containers") == "name"  # the schema says name
    assert got.key("args") is None  # the schema says atomic
    assert got.key("unknownToTheCluster") == "id"  # the schema says nothing


def test_no_documents_leave_the_fallback():
    assert from_openapi([], {DEPLOYMENT}) == BUILTIN


@pytest.mark.parametrize("prop, expected", [
    ({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}, (ListType.MAP, "name")),
    ({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"]}, (ListType.ATOMIC, None)),
    ({"type": "array", "x-kubernetes-list-type": "set"}, (ListType.SET, None)),
    ({"type": "array", "x-kubernetes-list-type": "atomic", "x-kubernetes-patch-strategy": "merge",
      "x-kubernetes-patch-merge-key": "name"}, (ListType.ATOMIC, None)),
    # No list-type: the strategic-merge-patch extensions decide, as for older built-in fields and CRDs.
    ({"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"},
     (ListType.MAP, "name")),
    ({"type": "array", "x-kubernetes-patch-strategy": "merge,retainKeys", "x-kubernetes-patch-merge-key": "name"},
     (ListType.ATOMIC, None)),
    ({"type": "array"}, (ListType.ATOMIC, None)),
])
def test_list_semantics(prop, expected):
    assert list_semantics(prop) == expected


def test_one_document_per_group_version():
    assert openapi_paths([("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
                          ("rbac.authorization.k8s.io/v1", "Role")]) == [
        "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1", "/openapi/v3/apis/rbac.authorization.k8s.io/v1"]
