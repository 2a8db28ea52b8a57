"""Targets are found in the layouts people run: upstream kustomize names and the Helm chart's.

The Helm chart names objects `<release>-argo-workflows-server` and labels the server pods
`app: server`; the same profiles must find those objects, read the labels from the install, and
say in the plan which layout they matched.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from harden.engine import Request, build_plan

REPO = Path(__file__).resolve().parents[2]


def _helm_snapshot(tmp_path: Path, release: str) -> Path:
    docs = [d for d in yaml.safe_load_all((REPO / "examples/snapshot/argo-quick-start-postgres.yaml").read_text()) if d]
    out = []
    for d in docs:
        d = copy.deepcopy(d)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "argo-server":
            d["metadata"]["name"] = f"{release}-argo-workflows-server"
            d["spec"]["selector"]["matchLabels"] = {"app": "server", "release": release}
            d["spec"]["template"]["metadata"]["labels"] = {"app": "server", "release": release}
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "argo-server-cluster-role":
            d["metadata"]["name"] = f"{release}-argo-workflows-server"
        if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "argo-server-cluster-role":
            d["roleRef"]["name"] = f"{release}-argo-workflows-server"
        out.append(d)
    path = tmp_path / "helm.yaml"
    path.write_text(yaml.safe_dump_all(out))
    return path


def test_helm_layout_is_detected_and_reported(tmp_path):
    snap = _helm_snapshot(tmp_path, "wf")
    req = Request(profiles=("read-only-server", "namespace-isolation", "server-auth-tls"), sets=("release=wf",),
                  snapshot=str(snap), state_dir=str(tmp_path / "state"))
    plan = build_plan(req).plan
    chosen = {(t.profile, t.target): t.chosen for t in plan.targets}
    assert chosen[("read-only-server", "serverRole")] == "ClusterRole wf-argo-workflows-server (Helm chart)"
    assert chosen[("server-auth-tls", "server")] == "Deployment argo/wf-argo-workflows-server (Helm chart)"
    detected = {(d.profile, d.parameter): d.value for d in plan.detected}
    assert detected[("namespace-isolation", "serverLabels")] == {"app": "server", "release": "wf"}
    ingress = next(c for c in plan.changes if c.key.name == "harden-allow-server-ingress")
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": {"app": "server", "release": "wf"}}
    # The expectation follows the detected labels, so it checks the real pods.
    found = {f.id: f for f in plan.findings}
    assert found["server-ingress-open"].passed and "app=server" in found["server-ingress-open"].message
    assert found["server-cannot-create-workflows"].passed


def test_a_value_the_user_sets_wins_over_detection(tmp_path):
    req = Request(profiles=("namespace-isolation",), sets=("serverLabels=app=custom",),
                  snapshot=str(REPO / "examples/snapshot"), state_dir=str(tmp_path))
    plan = build_plan(req, with_impact=False).plan
    assert ("namespace-isolation", "serverLabels") not in {(d.profile, d.parameter) for d in plan.detected}
    ingress = next(c for c in plan.changes if c.key.name == "harden-allow-server-ingress")
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": {"app": "custom"}}


def test_no_match_is_reported_not_guessed(tmp_path):
    snap = tmp_path / "empty.yaml"
    snap.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: argo}\n")
    plan = build_plan(Request(profiles=("namespace-isolation",), snapshot=str(snap), state_dir=str(tmp_path)),
                      with_impact=False).plan
    server = next(t for t in plan.targets if t.target == "server")
    assert server.chosen is None and server.optional
    assert plan.detected == ()
    ingress = next(c for c in plan.changes if c.key.name == "harden-allow-server-ingress")
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": {"app": "argo-server"}}  # the default
