"""The Argo CD profiles (examples/argocd-stack.yaml) against a real API server.

Argo CD's CRDs and cluster install (../shared/fixtures/argo-cd) are loaded into namespace argocd,
the stack is applied with the CLI, and then: the next plan is empty (idempotent) with every
expectation holding, the stored objects carry the settings, and SubjectAccessReviews agree with
the RBAC expectations. Finally `destroy` hands every patched field back (the controller's
ClusterRole is `*` again), so later tests in the session see the upstream install.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubeutil import require_fixture, run_harden

STACK = "examples/argocd-stack.yaml"
NS = "argocd"
APP_NAMESPACES = ("guestbook", "team-a")  # the stack's `namespaces`


harden = run_harden


@pytest.fixture(scope="module")
def argocd(kube, tmp_path_factory):
    crds = require_fixture("argo-cd/crds.yaml")
    install = require_fixture("argo-cd/install.yaml")
    kube.apply_manifests(crds)
    kube.apply_manifests(install, NS)
    for ns in APP_NAMESPACES:  # Roles land there: the namespaces must exist (the profile does not own them)
        try:
            kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        except ApiException as e:
            if e.status != 409:
                raise
    d = tmp_path_factory.mktemp("argocd-profiles")
    common = ["-f", STACK, "--kubeconfig", kube.kubeconfig, "--state-dir", str(d / "state")]
    yield {"common": common, "dir": d}
    harden("destroy", *common, "--auto-approve")  # best effort, if a test failed before test_destroy


def sar(kube, user: str, verb: str, resource: str, group: str = "", namespace: str | None = None,
        subresource: str | None = None) -> bool:
    groups = ["system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}"]
    attrs = client.V1ResourceAttributes(verb=verb, resource=resource, group=group, namespace=namespace,
                                        subresource=subresource)
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(user=user, groups=groups,
                                                                                resource_attributes=attrs))
    return client.AuthorizationV1Api(kube.api_client).create_subject_access_review(review).status.allowed


CONTROLLER = f"system:serviceaccount:{NS}:argocd-application-controller"
SERVER = f"system:serviceaccount:{NS}:argocd-server"
REPO_SERVER = f"system:serviceaccount:{NS}:argocd-repo-server"


def test_apply_then_plan_is_empty_with_every_expectation(kube, argocd):
    # Before: the upstream install gives the controller cluster-admin.
    assert sar(kube, CONTROLLER, "create", "deployments", "apps", "kube-system")
    r = harden("apply", *argocd["common"], "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("plan", *argocd["common"], "--detailed-exitcode", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    assert plan["summary"] == {"add": 0, "change": 0, "release": 0, "destroy": 0}
    failed = [f for f in plan["findings"] if not f["passed"] and f["kind"] != "need"]
    assert not failed, failed
    # No component need is broken by the hardened install; the Redis password Secret (created at run
    # time by the redis-secret-init Job, which does not run here) is the only thing missing.
    assert not [n for n in plan["impact"]["needs"] if n["status"] == "broken"]
    expectations = [f for f in plan["findings"] if f["kind"] == "expectation"]
    assert len(expectations) >= 30
    assert {f["profile"] for f in expectations} == {"argocd-repo-server-no-k8s", "argocd-network",
                                                    "argocd-controller-namespaces", "argocd-tls"}


def test_stored_objects_carry_the_settings(kube, argocd):
    core, apps = kube.core, client.AppsV1Api(kube.api_client)
    net = client.NetworkingV1Api(kube.api_client)
    rbac_api = client.RbacAuthorizationV1Api(kube.api_client)

    cm = core.read_namespaced_config_map("argocd-cmd-params-cm", NS)
    assert cm.data["server.tls.minversion"] == "1.2" and cm.data["reposerver.tls.minversion"] == "1.2"
    # 1.2 is Argo CD's default already (util/tls/tls.go): writing it restarts no pod.
    for name in ("argocd-server", "argocd-repo-server"):
        annotations = apps.read_namespaced_deployment(name, NS).spec.template.metadata.annotations or {}
        assert "harden.dev/tls-min-version" not in annotations, name

    assert core.read_namespaced_service_account("argocd-repo-server", NS).automount_service_account_token is False
    repo = apps.read_namespaced_deployment("argocd-repo-server", NS)
    assert repo.spec.template.spec.automount_service_account_token is False

    names = {p.metadata.name for p in net.list_namespaced_network_policy(NS).items}
    assert {"harden-default-deny", "harden-allow-dns", "harden-allow-kube-api", "harden-allow-repo-server-git",
            "harden-allow-to-repo-server", "harden-allow-repo-server-ingress", "argocd-server-network-policy"} <= names
    shipped = net.read_namespaced_network_policy("argocd-server-network-policy", NS).spec.ingress
    # 8080 from serverIngressFrom; metrics (8083) only from metricsNamespace, not every namespace.
    assert 8083 not in [p.port for rule in shipped for p in rule.ports if not rule._from or
                        any(f.namespace_selector is not None and not (f.namespace_selector.match_labels or {})
                            for f in rule._from)]
    assert 8080 in [p.port for rule in shipped for p in rule.ports]

    rules = rbac_api.read_cluster_role("argocd-application-controller").rules
    assert all(sorted(r.verbs) == ["get", "list", "watch"] for r in rules)
    for ns in APP_NAMESPACES:
        assert rbac_api.read_namespaced_role("harden-argocd-application-controller", ns).rules[0].verbs == ["*"]
        binding = rbac_api.read_namespaced_role_binding("harden-argocd-application-controller", ns)
        assert (binding.subjects[0].name, binding.subjects[0].namespace) == ("argocd-application-controller", NS)


def test_subject_access_reviews_agree(kube, argocd):
    for ns in APP_NAMESPACES:
        assert sar(kube, CONTROLLER, "create", "deployments", "apps", ns)
        assert sar(kube, SERVER, "delete", "deployments", "apps", ns)
        assert sar(kube, SERVER, "create", "jobs", "batch", ns)
    for ns in ("kube-system", "default"):
        assert not sar(kube, CONTROLLER, "create", "deployments", "apps", ns)
        assert not sar(kube, SERVER, "delete", "deployments", "apps", ns)
    assert not sar(kube, CONTROLLER, "create", "clusterrolebindings", "rbac.authorization.k8s.io")
    assert not sar(kube, CONTROLLER, "create", "namespaces")
    assert sar(kube, CONTROLLER, "list", "pods")                  # cluster-wide read stays
    assert sar(kube, CONTROLLER, "watch", "secrets")
    assert sar(kube, CONTROLLER, "update", "applications", "argoproj.io", NS)
    assert sar(kube, SERVER, "get", "pods", namespace="kube-system", subresource="log")
    assert not sar(kube, SERVER, "patch", "deployments", "apps")  # no cluster-wide write
    for verb, resource, ns in (("list", "secrets", NS), ("get", "secrets", None), ("list", "pods", None),
                               ("get", "configmaps", NS)):
        assert not sar(kube, REPO_SERVER, verb, resource, namespace=ns), (verb, resource, ns)


def test_destroy_hands_fields_back(kube, argocd):
    r = harden("destroy", *argocd["common"], "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    rbac_api = client.RbacAuthorizationV1Api(kube.api_client)
    rules = rbac_api.read_cluster_role("argocd-application-controller").rules
    assert rules[0].verbs == ["*"], rules
    assert sar(kube, CONTROLLER, "create", "deployments", "apps", "kube-system")
    assert "patch" in rbac_api.read_cluster_role("argocd-server").rules[0].verbs
    net = client.NetworkingV1Api(kube.api_client)
    assert not [p.metadata.name for p in net.list_namespaced_network_policy(NS).items
                if p.metadata.name.startswith("harden-")]
    shipped = net.read_namespaced_network_policy("argocd-server-network-policy", NS).spec.ingress
    assert len(shipped) == 1 and not shipped[0].ports and not shipped[0].to_dict().get("_from")
    cm = kube.core.read_namespaced_config_map("argocd-cmd-params-cm", NS)
    assert "server.tls.minversion" not in (cm.data or {})
