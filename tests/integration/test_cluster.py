"""Acceptance tests for the test cluster itself.

They pin down the API server behaviour harden relies on (server-side apply,
dry-run, field ownership conflicts, RBAC, CRDs, namespace finalization), so a
broken or fake control plane fails here first, not in harden's own tests.
"""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ConflictError, ForbiddenError
from kubeutil import load_docs, require_fixture, wait_for

pytestmark = pytest.mark.integration

NETPOL = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-web"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        # no policyTypes and no port protocol: the server must default them
        "ingress": [{"ports": [{"port": 8080}]}],
    },
}


def _netpols(kube):
    return kube.dynamic.resources.get(api_version="networking.k8s.io/v1", kind="NetworkPolicy")


def _apply(res, body, namespace, manager="harden", **kw):
    return res.server_side_apply(body=copy.deepcopy(body), name=body["metadata"]["name"],
                                 namespace=namespace, field_manager=manager, **kw)


def test_server_side_apply_stores_defaults_and_managed_fields(kube, namespace):
    res = _netpols(kube)
    _apply(res, NETPOL, namespace)

    got = res.get(name="allow-web", namespace=namespace).to_dict()
    assert got["spec"]["ingress"][0]["ports"][0] == {"port": 8080, "protocol": "TCP"}
    assert got["spec"]["policyTypes"] == ["Ingress"]
    managers = {m["manager"]: m for m in got["metadata"]["managedFields"]}
    assert "harden" in managers
    assert managers["harden"]["operation"] == "Apply"
    assert "f:podSelector" in managers["harden"]["fieldsV1"]["f:spec"]


def test_dry_run_apply_changes_nothing(kube, namespace):
    res = _netpols(kube)
    _apply(res, NETPOL, namespace)
    before = res.get(name="allow-web", namespace=namespace).to_dict()

    changed = copy.deepcopy(NETPOL)
    changed["spec"]["ingress"][0]["ports"][0]["port"] = 9090
    dry = _apply(res, changed, namespace, dry_run="All").to_dict()
    # the response shows what *would* be stored ...
    assert dry["spec"]["ingress"][0]["ports"][0]["port"] == 9090

    after = res.get(name="allow-web", namespace=namespace).to_dict()
    # ... but nothing was persisted
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before


def test_conflicting_manager_gets_409_then_force_takes_ownership(kube, namespace):
    res = _netpols(kube)
    _apply(res, NETPOL, namespace)

    other = copy.deepcopy(NETPOL)
    other["spec"]["ingress"][0]["ports"][0]["port"] = 9443
    with pytest.raises(ConflictError) as exc:
        _apply(res, other, namespace, manager="intruder")
    assert exc.value.status == 409
    status = json.loads(exc.value.body)
    # the Status names the current owner of each contested field
    causes = {(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]}
    assert ("FieldManagerConflict", ".spec.ingress", 'conflict with "harden"') in causes

    _apply(res, other, namespace, manager="intruder", force_conflicts=True)
    got = res.get(name="allow-web", namespace=namespace).to_dict()
    assert got["spec"]["ingress"][0]["ports"][0]["port"] == 9443
    owners = {m["manager"]: m.get("fieldsV1", {}) for m in got["metadata"]["managedFields"]}
    assert "f:ingress" in owners["intruder"]["f:spec"]
    # harden lost the contested list (ingress is atomic) but kept podSelector
    assert "f:ingress" not in owners.get("harden", {}).get("f:spec", {})


def test_restricted_identity_is_limited_by_rbac(kube, namespace):
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="read-netpol"),
        rules=[client.V1PolicyRule(api_groups=["networking.k8s.io"], resources=["networkpolicies"],
                                   verbs=["get", "list", "watch"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="alice-read-netpol"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="read-netpol"),
        subjects=[client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User",
                                       name="alice")]))

    authz = client.AuthorizationV1Api(kube.api_client)

    def may(verb: str, user: str = "alice") -> bool:
        review = authz.create_subject_access_review(client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user, groups=["system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb=verb, group="networking.k8s.io",
                    resource="networkpolicies"))))
        return review.status.allowed

    # RBAC is evaluated against an informer cache: the binding can take a
    # moment to become visible to the authorizer.
    wait_for(lambda: may("list"), 10, what="alice's RoleBinding to take effect")
    assert not may("create")
    assert not may("list", user="bob")

    alice = kube.client_for("alice")
    net = client.NetworkingV1Api(alice)
    assert net.list_namespaced_network_policy(namespace).items == []
    with pytest.raises(ApiException) as exc:
        net.create_namespaced_network_policy(namespace, copy.deepcopy(NETPOL))
    assert exc.value.status == 403

    with pytest.raises(ForbiddenError):
        kube.dynamic_for("bob").resources.get(
            api_version="networking.k8s.io/v1", kind="NetworkPolicy").get(namespace=namespace)


def test_argo_workflows_quick_start_loads(kube):
    crds = require_fixture("argo-workflows/crds.yaml")
    install = require_fixture("argo-workflows/quick-start-postgres.yaml")

    kube.apply_manifests(crds)
    applied = kube.apply_manifests(install, "argo")
    assert len(applied) == len(load_docs(install))

    apps = client.AppsV1Api(kube.api_client)
    deployments = {d.metadata.name for d in apps.list_namespaced_deployment("argo").items}
    assert {"workflow-controller", "argo-server", "postgres", "minio"} <= deployments
    # CRs of the new CRDs are served
    wf = kube.dynamic.resources.get(api_version="argoproj.io/v1alpha1", kind="Workflow")
    assert wf.get(namespace="argo").items == []


def test_namespace_deletion_completes(kube):
    name = kube.create_namespace("doomed")
    core = kube.core
    core.create_namespaced_config_map(name, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="payload"), data={"k": "v"}))
    kube.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404

    # The namespace controller has to discover and empty every resource type
    # before it removes the finalizer; give a slow CI box plenty of time.
    wait_for(gone, timeout=120, interval=0.5, what=f"namespace {name} to be finalized")
