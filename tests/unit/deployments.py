"""Deployments as plain data for the unit tests of keyed lists (what the server fills in comes from
the golden pairs recorded from the real API server, tests/unit/golden/)."""

from __future__ import annotations

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
