"""Issue 4 acceptance for the Argo Workflows profile library, and fault tolerance of apply.

Every Argo Workflows profile (examples/stack.yaml) is applied to the quick-start-postgres install
in its own namespace copy: the next plan is empty, every expectation holds, and the effects are
checked on the server (SubjectAccessReview, the stored args and ConfigMap YAML). A killed apply
leaves valid state and a re-run converges.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubeutil import require_fixture, run_harden, start_harden

NS = "argo"
REPO = Path(__file__).resolve().parents[2]


harden = run_harden


@pytest.fixture(scope="module")
def full(kube, tmp_path_factory):
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), NS)
    d = tmp_path_factory.mktemp("profiles")
    return {"state": str(d / "state"), "dir": d, "kc": kube.kubeconfig}


def test_every_workflows_profile_applies_idempotently_with_expectations(kube, full):
    common = ["-f", "examples/stack.yaml", "--kubeconfig", full["kc"], "--state-dir", full["state"]]
    r = harden("apply", *common, "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("plan", *common, "--detailed-exitcode", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    assert plan["summary"] == {"add": 0, "change": 0, "release": 0, "destroy": 0}
    expectations = [f for f in plan["findings"] if f["kind"] == "expectation"]
    assert len(expectations) >= 12 and all(f["passed"] for f in expectations), expectations

    apps = client.AppsV1Api(kube.api_client)
    args = apps.read_namespaced_deployment("argo-server", NS).spec.template.spec.containers[0].args
    assert "--auth-mode=client" in args and "--secure=true" in args
    assert "server" not in args[1:], args  # the quick start's `--auth-mode server` is gone
    cm = client.CoreV1Api(kube.api_client).read_namespaced_config_map("workflow-controller-configmap", NS)
    defaults = yaml.safe_load(cm.data["workflowDefaults"])
    assert defaults["spec"]["automountServiceAccountToken"] is False
    assert defaults["spec"]["serviceAccountName"] == "harden-workflow"
    assert yaml.safe_load(cm.data["workflowRestrictions"]) == {"templateReferencing": "Strict"}
    assert "persistence" in cm.data  # keys harden does not set are untouched

    def can(user, verb, resource, group=""):
        ns_groups = ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
        spec = client.V1SubjectAccessReviewSpec(user=user, groups=ns_groups if user.startswith("system:serviceaccount:")
                                                else ["argo-viewers", "system:authenticated"],
                                                resource_attributes=client.V1ResourceAttributes(
                                                    verb=verb, resource=resource, group=group, namespace=NS))
        return client.AuthorizationV1Api(kube.api_client).create_subject_access_review(
            client.V1SubjectAccessReview(spec=spec)).status.allowed

    assert can(f"system:serviceaccount:{NS}:harden-executor", "create", "workflowtaskresults", "argoproj.io")
    assert not can(f"system:serviceaccount:{NS}:harden-workflow", "get", "secrets")
    assert can("someone", "list", "workflows", "argoproj.io")       # via group argo-viewers
    assert not can("someone", "create", "workflows", "argoproj.io")


def test_dropping_one_of_three_patching_profiles_hands_only_its_field_back(kube, full, tmp_path):
    stack = yaml.safe_load((REPO / "examples/stack.yaml").read_text())
    stack["profiles"] = [p for p in stack["profiles"] if p["profile"] != "workflow-restrictions"]
    smaller = tmp_path / "stack.yaml"
    smaller.write_text(yaml.safe_dump(stack))
    common = ["-f", str(smaller), "--kubeconfig", full["kc"], "--state-dir", full["state"]]
    r = harden("plan", *common, "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "data.workflowRestrictions.templateReferencing" in r.stdout
    assert harden("apply", *common, "--auto-approve").returncode == 0
    cm = client.CoreV1Api(kube.api_client).read_namespaced_config_map("workflow-controller-configmap", NS)
    assert "workflowRestrictions" not in cm.data  # the quick start had none: back to none
    assert yaml.safe_load(cm.data["workflowDefaults"])["spec"]["automountServiceAccountToken"] is False
    assert harden("plan", *common, "--detailed-exitcode").returncode == 0
    full_stack = ["-f", "examples/stack.yaml", "--kubeconfig", full["kc"], "--state-dir", full["state"]]
    assert harden("apply", *full_stack, "--auto-approve").returncode == 0
    # The same through destroy of that one profile: the shared ConfigMap keeps the others' fields.
    r = harden("destroy", *full_stack, "--profile", "workflow-restrictions", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    cm = client.CoreV1Api(kube.api_client).read_namespaced_config_map("workflow-controller-configmap", NS)
    assert "workflowRestrictions" not in cm.data
    assert yaml.safe_load(cm.data["workflowDefaults"])["spec"]["serviceAccountName"] == "harden-workflow"
    assert harden("plan", *full_stack, "--detailed-exitcode").returncode == 2  # only restrictions to add back
    assert harden("apply", *full_stack, "--auto-approve").returncode == 0


def test_destroy_of_one_profile_leaves_the_others(kube, full):
    common = ["-f", "examples/stack.yaml", "--kubeconfig", full["kc"], "--state-dir", full["state"]]
    r = harden("destroy", *common, "--profile", "ui-read-only-role", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in r.stdout
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    assert sorted(x.metadata.name for x in rbac.list_namespaced_role(NS, label_selector="harden.dev/profile").items) == \
        ["harden-executor", "harden-workflow"]
    r = harden("plan", *common, "--detailed-exitcode")
    assert r.returncode == 2 and "Plan: 2 to add, 0 to change, 0 to destroy." in r.stdout, r.stdout
    assert harden("apply", *common, "--auto-approve").returncode == 0


def test_destroy_hands_fields_back(kube, full):
    common = ["-f", "examples/stack.yaml", "--kubeconfig", full["kc"], "--state-dir", full["state"]]
    r = harden("destroy", *common, "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    apps = client.AppsV1Api(kube.api_client)
    args = apps.read_namespaced_deployment("argo-server", NS).spec.template.spec.containers[0].args
    assert args == ["server", "--auth-mode", "server", "--auth-mode", "client"] or "--auth-mode=client" not in args, args
    cm = client.CoreV1Api(kube.api_client).read_namespaced_config_map("workflow-controller-configmap", NS)
    assert "workflowDefaults" not in (cm.data or {}) and "workflowRestrictions" not in (cm.data or {})


def _bulk_profile(path: Path, n: int, namespace: str) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
        "metadata": {"name": "bulk", "title": "many policies", "recommendation": [{"document": "test", "section": "faults"}]},
        "parameters": [{"name": "names", "type": "stringList", "default": [f"p{i:03d}" for i in range(n)]}],
        "objects": [{"forEach": {"parameter": "names", "as": "item"}, "apiVersion": "networking.k8s.io/v1",
                     "kind": "NetworkPolicy", "metadata": {"name": "bulk-${item}", "namespace": namespace},
                     "spec": {"podSelector": {"matchLabels": {"bulk": "${item}"}}, "policyTypes": ["Ingress"]}}],
    }))


def _own_stack(tmp_path: Path, profile: Path) -> Path:
    """A stack of its own for one test: another test's objects (their namespaces may still be
    terminating) carry another stack label, so they are never this test's orphans."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump({"apiVersion": "harden.dev/v1alpha1", "kind": "Stack",
                                     "metadata": {"name": "t-" + tmp_path.name[-40:].lower().strip("-_").replace("_", "-")},
                                     "profiles": [{"profile": str(profile)}]}))
    return stack


def _state_file(state: Path, suffix: str) -> Path:
    return next(iter(state.glob(f"*.{suffix}")), state / f"missing.{suffix}")


def _records_now(state: Path) -> dict:
    """What the state says now, as the next run reads it: the state file with the journal a
    running (or killed) apply appends to folded in."""
    from harden.state import FileBackend

    found = next(iter(sorted(state.glob("*.json")) + sorted(state.glob("*.journal"))), None)
    return FileBackend(state, found.stem).read().records if found else {}


def _bulk_apply_in_background(kube, namespace, tmp_path, n):
    """Start a slow apply (n policies, one write at a time); return it, its CLI args and state dir."""
    profile = tmp_path / "bulk.yaml"
    _bulk_profile(profile, n, namespace)
    state = tmp_path / "state"
    common = ["-f", str(_own_stack(tmp_path, profile)), "--kubeconfig", kube.kubeconfig, "--state-dir", str(state)]
    return start_harden("apply", *common, "--auto-approve", "--parallelism", "1"), common, state


def test_killed_apply_keeps_state_valid_and_rerun_converges(kube, namespace, tmp_path):
    proc, common, state = _bulk_apply_in_background(kube, namespace, tmp_path, 300)
    # Kill it once some writes have been recorded, mid-run.
    deadline = time.time() + 60
    while time.time() < deadline:
        if len(_records_now(state)) >= 20:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Valid: the state file is written atomically, and the journal of finished writes is folded in.
    assert 20 <= len(_records_now(state)) < 300
    # The lock died with the process: a new apply gets it at once and converges.
    r = harden("apply", *common, "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("plan", *common, "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads(_state_file(state, "json").read_text())["records"]) == 300
    live = client.NetworkingV1Api(kube.api_client).list_namespaced_network_policy(namespace).items
    assert len([p for p in live if p.metadata.name.startswith("bulk-")]) == 300


def test_second_apply_is_refused_while_first_holds_the_lock(kube, namespace, tmp_path):
    first, common, state = _bulk_apply_in_background(kube, namespace, tmp_path, 150)
    deadline = time.time() + 30
    while time.time() < deadline and not (_state_file(state, "lock").exists() and _state_file(state, "lock").read_text()):
        time.sleep(0.02)
    second = harden("apply", *common, "--auto-approve")
    first.wait(timeout=300)
    assert first.returncode == 0
    assert second.returncode == 1
    assert "locked by pid" in second.stderr and "on host" in second.stderr


def test_server_rejection_in_dry_run_applies_nothing(kube, namespace, tmp_path):
    """A write the API server refuses is caught by the server dry-run: nothing is written at all."""
    profile = tmp_path / "bad.yaml"
    good = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "fine", "namespace": namespace}, "spec": {"podSelector": {}}}
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "broken", "namespace": namespace},
           "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}}
    profile.write_text(yaml.safe_dump({
        "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
        "metadata": {"name": "bad", "title": "one good, one invalid", "recommendation": [{"document": "t", "section": "t"}]},
        "objects": [good, bad]}))
    state = tmp_path / "state"
    r = harden("apply", "--profile", str(profile), "--kubeconfig", kube.kubeconfig, "--state-dir", str(state), "--auto-approve")
    assert r.returncode == 1
    assert "broken" in r.stderr and "Traceback" not in r.stderr
    names = [p.metadata.name for p in client.NetworkingV1Api(kube.api_client).list_namespaced_network_policy(namespace).items]
    assert names == []
    assert not (state / "default.json").exists()


def test_identity_without_rbac_gets_a_clear_forbidden_error(kube, tmp_path):
    """Real RBAC: alice may not list anything, and harden says so, naming the request."""
    r = harden("plan", "--profile", "read-only-server", "--kubeconfig", kube.restricted["alice"],
               "--state-dir", str(tmp_path))
    assert r.returncode == 1
    assert "forbidden" in r.stderr and "alice" in r.stderr
    assert "Traceback" not in r.stderr


def test_field_dropped_from_an_owned_object_is_planned_and_pruned(kube, namespace, tmp_path):
    def write(egress: bool) -> Path:
        spec = {"podSelector": {}, "policyTypes": ["Egress"]}
        if egress:
            spec["egress"] = [{"ports": [{"port": 53, "protocol": "UDP"}]}]
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump({
            "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
            "metadata": {"name": "shrink", "title": "t", "recommendation": [{"document": "t", "section": "t"}]},
            "objects": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": "shrink", "namespace": namespace}, "spec": spec}]}))
        return p

    common = ["--kubeconfig", kube.kubeconfig, "--state-dir", str(tmp_path / "state")]
    assert harden("apply", "-f", str(_own_stack(tmp_path, write(True))), *common, "--auto-approve").returncode == 0
    r = harden("plan", "-f", str(_own_stack(tmp_path, write(False))), *common, "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "- spec.egress" in r.stdout and "Plan: 0 to add, 1 to change, 0 to destroy." in r.stdout
    assert harden("apply", "-f", str(_own_stack(tmp_path, write(False))), *common, "--auto-approve").returncode == 0
    np = client.NetworkingV1Api(kube.api_client).read_namespaced_network_policy("shrink", namespace)
    assert not np.spec.egress
    assert harden("plan", "-f", str(_own_stack(tmp_path, write(False))), *common, "--detailed-exitcode").returncode == 0
