"""argocd-resource-exclusions against a real API server: entries appended, the user's kept, destroy exact.

Argo CD's namespace install (tests/fixtures/argo-cd/namespace-install.yaml) goes into a namespace of
its own, with `resource.exclusions` in argocd-cm replaced by a user's own list (as a Helm value or a
kustomize patch would), which lacks one of the profile's default entries and holds the other in a
different layout. Then: the plan shows the missing entry member by member, apply appends it below
the user's text, the re-plan is empty, and destroy puts argocd-cm's data back exactly as it was.
"""

from __future__ import annotations

import json

import pytest
import yaml
from kubeutil import load_docs, require_fixture, run_harden

PROFILE = "argocd-resource-exclusions"
# A user's list: a comment, an entry of their own, and upstream's CSR entry written another way.
MINE = ("# ours: cilium churn\n"
        "- apiGroups: [cilium.io]\n  kinds: [CiliumIdentity]\n  clusters: ['*']\n"
        "- kinds: [CertificateSigningRequest]\n  apiGroups:\n  - certificates.k8s.io\n")
REVIEWS = {"apiGroups": ["authentication.k8s.io", "authorization.k8s.io"],
           "kinds": ["SelfSubjectReview", "TokenReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview",
                     "SelfSubjectRulesReview", "SubjectAccessReview"]}


@pytest.fixture(scope="module")
def install(kube, tmp_path_factory):
    kube.apply_manifests(require_fixture("argo-cd/crds.yaml"))
    ns = kube.create_namespace("excl")
    docs = load_docs(require_fixture("argo-cd/namespace-install.yaml"))
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "argocd-cm":
            d["data"] = {**(d.get("data") or {}), "resource.exclusions": MINE}
    kube.apply_manifests(docs, ns)
    d = tmp_path_factory.mktemp("exclusions")
    common = ["--profile", PROFILE, "--set", f"namespace={ns}", "--kubeconfig", kube.kubeconfig,
              "--state-dir", str(d / "state")]
    original = kube.core.read_namespaced_config_map("argocd-cm", ns)
    yield {"ns": ns, "common": common, "original": original}
    run_harden("destroy", *common, "--auto-approve")  # best effort, if a test failed before the destroy test
    kube.delete_namespace(ns)


def test_plan_shows_the_missing_entry_member_by_member(install):
    r = run_harden("plan", *install["common"], "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    [change] = [c for c in plan["changes"] if c["action"] != "noop"]
    fields = {f["path"]: f["after"] for f in change["fields"] if "harden.dev/original" not in f["path"]}
    assert fields == {'data["resource.exclusions"][2].apiGroups': REVIEWS["apiGroups"],
                      'data["resource.exclusions"][2].kinds': REVIEWS["kinds"]}


def test_apply_appends_below_the_users_text_and_replans_empty(kube, install):
    r = run_harden("apply", *install["common"], "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    text = kube.core.read_namespaced_config_map("argocd-cm", install["ns"]).data["resource.exclusions"]
    assert text.startswith(MINE), text  # the user's comment, entries and layout are untouched
    assert yaml.safe_load(text) == yaml.safe_load(MINE) + [REVIEWS]
    r = run_harden("plan", *install["common"], "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr


def test_destroy_restores_the_value_exactly(kube, install):
    r = run_harden("destroy", *install["common"], "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    cm = kube.core.read_namespaced_config_map("argocd-cm", install["ns"])
    assert cm.data == install["original"].data
    assert cm.data["resource.exclusions"] == MINE
    assert "harden.dev/original" not in (cm.metadata.annotations or {})
