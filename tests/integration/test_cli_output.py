"""`apply` and `destroy` with `-o json`: one document on stdout a pipeline can branch on, against
the real API server."""

from __future__ import annotations

import json

import yaml
from kubernetes import client
from kubeutil import run_harden

POLICY = "harden-allow-metrics-ingress"


def test_apply_and_destroy_write_json(kube, namespace, tmp_path):
    stack = tmp_path / "stack.yaml"
    # A stack of its own: destroy removes what carries its stack label, and names are per cluster.
    stack.write_text(yaml.safe_dump({"apiVersion": "harden.dev/v1alpha1", "kind": "Stack",
                                     "metadata": {"name": "it-cli-json"}, "parameters": {"namespace": namespace},
                                     "profiles": [{"profile": "metrics-ingress"}]}))
    common = ["-f", str(stack), "--auto-approve", "-o", "json"]
    address = f"networking.k8s.io/NetworkPolicy/{namespace}/{POLICY}"

    r = run_harden("apply", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["complete"] is True and doc["failed"] == [] and doc["stack"] == "it-cli-json"
    assert doc["summary"] == {"add": 1, "change": 0, "release": 0, "destroy": 0}
    assert [(c["address"], c["action"]) for c in doc["applied"]] == [(address, "create")]
    assert doc["state"]["serial"] >= 1
    networking = client.NetworkingV1Api(kube.api_client)
    assert networking.read_namespaced_network_policy(POLICY, namespace).metadata.name == POLICY

    r = run_harden("apply", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["applied"] == []

    r = run_harden("destroy", *common, kubeconfig=kube.kubeconfig, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["destroy"] == 1 and [c["address"] for c in doc["applied"]] == [address]
    names = [p.metadata.name for p in networking.list_namespaced_network_policy(namespace).items]
    assert POLICY not in names
