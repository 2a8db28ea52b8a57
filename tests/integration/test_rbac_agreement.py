"""harden's RBAC evaluator must agree with the API server's authorizer.

Loads the real Argo Workflows and Argo CD installs, lists every RBAC object from the server
(including the bootstrap roles the server creates), then draws hundreds of random
(subject, verb, resource, subresource, namespace, name) queries and compares harden's answer with
a SubjectAccessReview for each. Every one must agree; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import random

import pytest
from kubernetes import client
from kubeutil import require_fixture

from harden.impact import rbac

QUERIES = 400
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"]
NAMESPACES = ["argo", "argocd", "default", "kube-system", None]


@pytest.fixture(scope="module")
def rbac_objects(kube):
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), "argo")
    kube.apply_manifests(require_fixture("argo-cd/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-cd/install.yaml"), "argocd")
    api = client.RbacAuthorizationV1Api(kube.api_client)
    objs = []
    for kind, items in (("Role", api.list_role_for_all_namespaces().items),
                        ("ClusterRole", api.list_cluster_role().items),
                        ("RoleBinding", api.list_role_binding_for_all_namespaces().items),
                        ("ClusterRoleBinding", api.list_cluster_role_binding().items)):
        for item in items:
            d = kube.api_client.sanitize_for_serialization(item)
            d["apiVersion"], d["kind"] = "rbac.authorization.k8s.io/v1", kind
            objs.append(d)
    return objs


def _identities(objs):
    """(user, groups) pairs: every binding subject, plus a stranger."""
    out = {("stranger", ("system:authenticated",))}
    for o in objs:
        if o["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for s in o.get("subjects") or []:
            if s["kind"] == "ServiceAccount":
                ns = s.get("namespace") or o["metadata"].get("namespace")
                out.add((f"system:serviceaccount:{ns}:{s['name']}",
                         ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated")))
            elif s["kind"] == "User":
                out.add((s["name"], ("system:authenticated",)))
            elif s["kind"] == "Group" and s["name"] != "system:masters":
                out.add(("probe-user", (s["name"], "system:authenticated")))
    return sorted(out)


def _resources(objs):
    """(group, resource, subresource) triples named by rules, plus a few no rule names."""
    out = {("", "pods", None), ("", "pods", "log"), ("", "secrets", None), ("apps", "deployments", "scale"),
           ("argoproj.io", "workflows", None), ("argoproj.io", "applications", None), ("example.com", "widgets", None)}
    for o in objs:
        for rule in o.get("rules") or []:
            for g in rule.get("apiGroups") or []:
                for r in rule.get("resources") or []:
                    if g == "*" or r == "*" or r.startswith("*"):
                        continue
                    res, _, sub = r.partition("/")
                    if sub != "*":
                        out.add((g, res, sub or None))
    return sorted(out, key=lambda t: (t[0], t[1], t[2] or ""))


def _granted(objs):
    """Queries that some binding grants as written: (user, groups, verb, group, resource, sub, ns)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs
             if o["kind"] in ("Role", "ClusterRole")}
    out = []
    for b in objs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = b["roleRef"]
        role = roles.get((ref["kind"], b["metadata"].get("namespace") if ref["kind"] == "Role" else None, ref["name"]))
        for s in (b.get("subjects") or []) if role else []:
            if s["kind"] != "ServiceAccount":
                continue
            ns_sa = s.get("namespace") or b["metadata"].get("namespace")
            ident = (f"system:serviceaccount:{ns_sa}:{s['name']}",
                     ("system:serviceaccounts", f"system:serviceaccounts:{ns_sa}", "system:authenticated"))
            for rule in role.get("rules") or []:
                for g in rule.get("apiGroups") or []:
                    for r in rule.get("resources") or []:
                        for v in rule.get("verbs") or []:
                            if "*" in (g, v) or "*" in r:
                                continue
                            res, _, sub = r.partition("/")
                            out.append((*ident, v, g, res, sub or None, b["metadata"].get("namespace") or "argo"))
    return sorted(out, key=str)


def test_random_queries_agree_with_subject_access_review(kube, rbac_objects):
    rng = random.Random(20261123)
    identities = _identities(rbac_objects)
    resources = _resources(rbac_objects)
    names = [None, None, None, "argo-server", "argocd-secret", "argo-workflows-webhook-clients"]
    authz = client.AuthorizationV1Api(kube.api_client)
    disagreements = []
    allowed_count = 0
    granted = _granted(rbac_objects)
    for i in range(QUERIES):
        if i % 2 and granted:
            # Half the draws start from a real grant (binding -> rule), then perturb one attribute,
            # so both answers are well represented.
            user, groups, verb, group, resource, sub, ns = rng.choice(granted)
            which = rng.randrange(4)
            verb = rng.choice(VERBS) if which == 0 else verb
            ns = rng.choice(NAMESPACES) if which == 1 else ns
            if which == 2:
                group, resource, sub = rng.choice(resources)
        else:
            user, groups = rng.choice(identities)
            group, resource, sub = rng.choice(resources)
            verb = rng.choice(VERBS)
            ns = rng.choice(NAMESPACES)
        name = rng.choice(names)
        review = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user, groups=list(groups),
            resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                            subresource=sub, namespace=ns, name=name))))
        ours = rbac.authorize(rbac_objects, user, list(groups),
                              rbac.Request(verb=verb, group=group, resource=resource, subresource=sub,
                                           namespace=ns, name=name))
        allowed_count += review.status.allowed
        if ours.allowed != review.status.allowed:
            disagreements.append((user, groups, verb, group, resource, sub, ns, name, review.status.allowed))
    assert not disagreements, f"{len(disagreements)} of {QUERIES} disagree, e.g. {disagreements[:5]}"
    # The draw must exercise both answers, or agreement proves little.
    assert 20 < allowed_count < QUERIES - 20, allowed_count
