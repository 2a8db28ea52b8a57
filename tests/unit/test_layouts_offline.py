"""Targets are found in the layouts people run: upstream kustomize names and the Helm chart's.

The Helm chart names objects `<release>-argo-workflows-server` and labels the server pods
`app: server`; the same profiles must find those objects, read the labels from the install, and
say in the plan which layout they matched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harden.engine import Request, build_plan
from harden.errors import Diagnostics

REPO = Path(__file__).resolve().parents[2]


HELM = REPO / "tests/fixtures/layouts/argo-workflows-helm.yaml"  # release wf in namespace wfhelm


def test_helm_layout_is_found_from_its_workloads_and_reported(tmp_path):
    req = Request(profiles=("read-only-server", "namespace-isolation"), sets=("namespace=wfhelm",),
                  snapshot=str(HELM), state_dir=str(tmp_path / "state"))
    plan = build_plan(req).plan
    chosen = {(t.profile, t.target): t.chosen or "" for t in plan.targets}
    # Every role bound to the release's server account, found through its binding, whatever the name.
    assert "ClusterRole wf-argo-workflows-server (" in chosen[("read-only-server", "serverRoles")]
    assert "ClusterRole wf-argo-workflows-server-cluster-template (" in chosen[("read-only-server", "serverRoles")]
    assert "install graph: helm" in chosen[("namespace-isolation", "server")]
    detected = {(d.profile, d.parameter): d.value for d in plan.detected}
    selector = {"app.kubernetes.io/name": "argo-workflows-server", "app.kubernetes.io/instance": "wf"}
    assert detected[("namespace-isolation", "serverLabels")] == selector
    ingress = next(c for c in plan.changes if c.key.name == "harden-allow-server-ingress")
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": selector}
    # The expectation's subject is the release's real service account, not a guessed argo-server.
    found = {f.id: f for f in plan.findings}
    assert found["server-cannot-create-workflows"].passed
    assert "system:serviceaccount:wfhelm:wf-argo-workflows-server" in found["server-cannot-create-workflows"].message
    installs = {i["name"]: i for i in plan.impact["installs"]}
    assert installs["wfhelm/wf"]["selected"]
    assert {c["name"] for c in installs["wfhelm/wf"]["components"]} == {"argo-server", "workflow-controller"}


def test_helm_server_without_tls_is_not_switched_to_tls_behind_an_http_probe(tmp_path):
    # The chart runs --secure=false with an HTTP readiness probe; turning --secure on alone would
    # leave the new pods never Ready. server-auth-tls leaves TLS as found and says so in a warning.
    req = Request(profiles=("server-auth-tls",), sets=("namespace=wfhelm",), snapshot=str(HELM),
                  state_dir=str(tmp_path / "state"))
    plan = build_plan(req).plan
    assert [f.id for f in plan.failed_findings if f.kind == "need"] == []
    warning = next(f for f in plan.findings if f.id == "secure-on")
    assert not warning.passed and warning.severity.value == "warning" and "wf-argo-workflows-server" in warning.message


def test_a_value_the_user_sets_wins_over_detection(tmp_path):
    req = Request(profiles=("namespace-isolation",), sets=("serverLabels=app=custom",),
                  snapshot=str(REPO / "examples/snapshot"), state_dir=str(tmp_path))
    plan = build_plan(req, with_impact=False).plan
    assert ("namespace-isolation", "serverLabels") not in {(d.profile, d.parameter) for d in plan.detected}
    ingress = next(c for c in plan.changes if c.key.name == "harden-allow-server-ingress")
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": {"app": "custom"}}


def test_no_install_is_an_error_listing_what_was_found(tmp_path):
    snap = tmp_path / "empty.yaml"
    snap.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: argo}\n")
    with pytest.raises(Diagnostics) as ei:
        build_plan(Request(profiles=("namespace-isolation",), snapshot=str(snap), state_dir=str(tmp_path)))
    (d,) = ei.value.diagnostics
    assert "no argo-workflows install in namespace 'argo'" in d.summary and "found: none" in d.summary
    assert d.field == "namespace" and "--set namespace=" in d.hint


def test_the_other_install_is_listed_when_the_namespace_is_wrong(tmp_path):
    with pytest.raises(Diagnostics) as ei:
        build_plan(Request(profiles=("read-only-server",), snapshot=str(HELM), state_dir=str(tmp_path)))
    (d,) = ei.value.diagnostics
    assert "wfhelm/wf" in d.summary and "wf-argo-workflows-server" in d.summary
