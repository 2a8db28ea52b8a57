"""harden.kube lists every object of a kind across pages, on the real API server."""

from __future__ import annotations

import harden.kube
from harden.kube import KubeClient


def test_a_list_over_many_pages_returns_every_object_once(kube, namespace, monkeypatch):
    names = [f"cm-{i:02d}" for i in range(23)]
    kube.apply_manifests([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"i": n}}
                          for n in names], namespace=namespace)
    client = KubeClient(kube.kubeconfig)
    whole = client.list("v1", "ConfigMap", namespace)
    # Pages of 4: six requests, each following the server's continue token from the last.
    monkeypatch.setattr(harden.kube, "PAGE", 4)
    monkeypatch.setattr(harden.kube, "PAGE_LARGE", 4)
    paged = client.list("v1", "ConfigMap", namespace)
    listed = [o["metadata"]["name"] for o in paged if o["metadata"]["name"].startswith("cm-")]
    assert sorted(listed) == names
    assert len(listed) == len(set(listed))
    assert [o["metadata"]["name"] for o in paged] == [o["metadata"]["name"] for o in whole]
    assert all(o["apiVersion"] == "v1" and o["kind"] == "ConfigMap" for o in paged)
