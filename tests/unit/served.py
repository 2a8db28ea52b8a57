"""What the API server hands back for an object harden applied, as plain data for unit tests:
metadata filled in, NetworkPolicy port protocol and policyTypes defaulted, empty matchLabels
omitted (the same defaults the integration tests observe on the real server)."""

from __future__ import annotations

import copy


def served(body: dict, rv: str = "100", manager: str | None = None) -> dict:
    live = copy.deepcopy(body)
    live["metadata"].update(resourceVersion=rv, uid="0b5e", generation=1, creationTimestamp="2024-01-01T00:00:00Z")
    if manager:
        live["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
    if live["kind"] == "NetworkPolicy":
        spec = live["spec"]
        spec.setdefault("policyTypes", ["Ingress"] + (["Egress"] if "egress" in spec else []))
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction, []):
                for port in rule.get("ports", []):
                    port.setdefault("protocol", "TCP")
                for peer in rule.get("from", []) + rule.get("to", []):
                    if peer.get("podSelector") == {"matchLabels": {}}:
                        peer["podSelector"] = {}
    return live


# argo-server as a profile declares it (one container), and as it runs: argo-server second, after a
# sidecar, so tests of keyed lists cannot pass by position. Shared by the diff, merge and ownership tests.
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argo-server", "namespace": "argo"},
          "spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["server", "--secure=true"]}]}}}}


def live_deploy(args=("server", "--secure=true")):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "argo-server", "namespace": "argo", "resourceVersion": "9"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy", "args": ["--foo"]},
                {"name": "argo-server", "image": "argo", "args": list(args)}]}}}}
