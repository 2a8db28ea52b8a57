"""A lost state directory loses nothing: the originals of patched fields ride on the objects.

Runner A applies the quick-start stack, then its state is gone (a fresh CI checkout). Runner B,
with a state of its own, applies the same stack and then destroys it: every field harden patched
is back to the upstream install's value and owner, as if A's state had never been lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubeutil import FIXTURE_MANAGER, require_fixture, run_harden

NS = "argo"
REPO = Path(__file__).resolve().parents[2]


def _patched(kube) -> dict[str, object]:
    """The fields the quick-start stack patches, with the managers that own them."""
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    apps = client.AppsV1Api(kube.api_client)
    core = client.CoreV1Api(kube.api_client)
    role = rbac.read_cluster_role("argo-server-cluster-role")
    server = apps.read_namespaced_deployment("argo-server", NS)
    cm = core.read_namespaced_config_map("workflow-controller-configmap", NS)

    def ours(manager: str) -> bool:  # harden's field managers, not the tests' fixture manager
        return manager != FIXTURE_MANAGER and (manager == "harden" or manager.startswith("harden-"))

    def owners(obj, field: str) -> list[str]:
        return sorted({m.manager for m in obj.metadata.managed_fields or []
                       if field in str(m.fields_v1) and not ours(m.manager)})

    args = next(c.args for c in server.spec.template.spec.containers if c.name == "argo-server")
    return {
        "rules": [r.to_dict() for r in role.rules],
        "rules-owners": owners(role, "f:rules"),
        "args": list(args or []),
        "data": {k: v for k, v in (cm.data or {}).items() if k in ("workflowDefaults", "workflowRestrictions")},
        "harden-managers": sorted({m.manager for o in (role, server, cm) for m in o.metadata.managed_fields or []
                                   if ours(m.manager)}),
        "annotations": sorted(k for o in (role, server, cm) for k in (o.metadata.annotations or {})
                              if k.startswith("harden.dev/")),
    }


def _leftovers(kube) -> list[str]:
    core = client.CoreV1Api(kube.api_client)
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    networking = client.NetworkingV1Api(kube.api_client)
    selector = "harden.dev/stack=it-lost-state"
    found = [*core.list_namespaced_secret(NS, label_selector=selector).items,
             *core.list_namespaced_service_account(NS, label_selector=selector).items,
             *rbac.list_namespaced_role(NS, label_selector=selector).items,
             *networking.list_namespaced_network_policy(NS, label_selector=selector).items]
    return [o.metadata.name for o in found if not o.metadata.deletion_timestamp]


@pytest.fixture()
def stack(kube, tmp_path):
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), NS)
    data = yaml.safe_load((REPO / "examples/stack.yaml").read_text())
    data["metadata"]["name"] = "it-lost-state"
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data))
    yield path
    # Whatever a failed assertion left behind goes: destroy needs no state (labels and annotations).
    run_harden("destroy", "-f", str(path), "--auto-approve", kubeconfig=kube.kubeconfig, state=tmp_path / "cleanup")


def _run(kube, stack: Path, state: Path, *args: str):
    r = run_harden(*args, "-f", str(stack), kubeconfig=kube.kubeconfig, state=state)
    assert r.returncode in (0, 2), r.stdout + r.stderr
    return r


def test_apply_lose_state_apply_again_destroy_restores_the_upstream_install(kube, stack, tmp_path):
    before = _patched(kube)
    assert before["harden-managers"] == [] and before["annotations"] == []

    _run(kube, stack, tmp_path / "a", "apply", "--auto-approve")
    hardened = _patched(kube)
    assert hardened["rules"] != before["rules"] and hardened["args"] != before["args"]
    assert hardened["annotations"] == ["harden.dev/original"] * 3

    # Runner B: a fresh checkout, no state. Nothing is left to do, and nothing is recorded wrongly.
    r = _run(kube, stack, tmp_path / "b", "plan", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout
    _run(kube, stack, tmp_path / "b", "apply", "--auto-approve")
    _run(kube, stack, tmp_path / "b", "destroy", "--auto-approve")

    after = _patched(kube)
    assert after["rules"] == before["rules"]
    assert after["args"] == before["args"]
    assert after["data"] == before["data"]
    assert after["rules-owners"] == before["rules-owners"] == [FIXTURE_MANAGER]
    assert after["harden-managers"] == [] and after["annotations"] == []  # harden let go of every field


def test_destroy_with_no_state_at_all_still_hands_the_fields_back(kube, stack, tmp_path):
    before = _patched(kube)
    _run(kube, stack, tmp_path / "a", "apply", "--auto-approve")
    # The state is gone and nobody applies again: destroy finds the patches by their annotation.
    r = _run(kube, stack, tmp_path / "fresh", "destroy", "--auto-approve")
    assert "released" in r.stdout or "release" in r.stdout
    after = _patched(kube)
    assert (after["rules"], after["args"], after["data"]) == (before["rules"], before["args"], before["data"])
    assert after["harden-managers"] == [] and after["annotations"] == []
    assert _leftovers(kube) == []  # every object the stack created is gone too, Secrets included
