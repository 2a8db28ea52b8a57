"""`apply` and `destroy` with `-o json`: one document on stdout a pipeline can branch on, against
the real API server."""

from __future__ import annotations

import json

import yaml
from kubernetes import client
from kubeutil import run_harden

ROLE = "ui-user-read-only"  # ui-read-only-role without a group or user: one Role, no install needed


def test_apply_and_destroy_write_json(kube, namespace, tmp_path):
    stack = tmp_path / "stack.yaml"
    # A stack of its own: destroy removes what carries its stack label, and names are per cluster.
    stack.write_text(yaml.safe_dump({"apiVersion": "harden.dev/v1alpha1", "kind": "Stack",
                                     "metadata": {"name": "it-cli-json"}, "parameters": {"namespace": namespace},
                                     "profiles": [{"profile": "ui-read-only-role"}]}))
    common = ["-f", str(stack), "--auto-approve", "-o", "json"]
    address = f"rbac.authorization.k8s.io/Role/{namespace}/{ROLE}"

    r = run_harden("apply", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["complete"] is True and doc["failed"] == [] and doc["stack"] == "it-cli-json"
    assert doc["summary"] == {"add": 1, "change": 0, "release": 0, "destroy": 0}
    assert [(c["address"], c["action"]) for c in doc["applied"]] == [(address, "create")]
    assert doc["state"]["serial"] >= 1
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    assert rbac.read_namespaced_role(ROLE, namespace).metadata.name == ROLE

    r = run_harden("apply", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["applied"] == []

    r = run_harden("destroy", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["destroy"] == 1 and [c["address"] for c in doc["applied"]] == [address]
    names = [r.metadata.name for r in rbac.list_namespaced_role(namespace).items]
    assert ROLE not in names
