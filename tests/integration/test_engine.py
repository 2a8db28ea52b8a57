"""Issue 3 acceptance: harden plan/apply/destroy against the real API server with the Argo
Workflows quick-start-postgres install in namespace `argo`.

Every test states its own precondition through a fixture and runs alone or in any order:
`pristine` puts the install back as shipped (nothing of harden's in it, an empty state directory);
`applied` is that plus the stack applied. Only the CRDs, slow to establish and never changed by
harden, are loaded once per module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubeutil import require_fixture, run_harden

NS = "argo"

STACK = {
    "apiVersion": "harden.dev/v1alpha1",
    "kind": "Stack",
    "metadata": {"name": "it-argo"},
    "parameters": {"namespace": NS},
    "profiles": [
        {"profile": "read-only-server"},
        {"profile": "namespace-isolation"},
        {"profile": "metrics-ingress", "with": {"prometheusNamespace": "monitoring"}},
        {"profile": "db-egress", "with": {"database": {"namespace": NS, "podSelector": {"app": "postgres"}}}},
    ],
}
ROLE = "argo-server-cluster-role"
# What harden writes in namespaced objects it owns; patched targets are reset by re-applying the install.
OWNED_KINDS = [("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "Role"),
               ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("v1", "ServiceAccount")]


harden = run_harden


@dataclass(frozen=True)
class Env:
    stack: Path
    state: Path
    dir: Path
    shipped_rules: list  # argo-server-cluster-role's rules as the install ships them

    def run(self, kube, *args: str, stack: Path | None = None):
        return harden(*args, "-f", str(stack or self.stack), kubeconfig=kube.kubeconfig, state=self.state)


@pytest.fixture(scope="module")
def quick_start(kube) -> Path:
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    return require_fixture("argo-workflows/quick-start-postgres.yaml")


def _rbac(kube) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(kube.api_client)


@pytest.fixture
def pristine(kube, quick_start, tmp_path) -> Env:
    """The install as shipped, nothing of harden's in namespace argo (of any stack: another
    stack's object of the same name would be refused, not planned), and an empty state."""
    for api_version, kind in OWNED_KINDS:
        res = kube.dynamic.resources.get(api_version=api_version, kind=kind)
        for item in res.get(namespace=NS, label_selector="app.kubernetes.io/managed-by=harden").items:
            res.delete(name=item.metadata.name, namespace=NS)
    # Force-applying the manifest again takes every patched field (the role's rules) back from
    # whichever manager changed it, so harden meets the install's own manager as on first contact.
    kube.apply_manifests(quick_start, NS)
    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump(STACK))
    rules = [r.to_dict() for r in _rbac(kube).read_cluster_role(ROLE).rules]
    return Env(stack, tmp_path / "state", tmp_path, rules)


@pytest.fixture
def applied(kube, pristine) -> Env:
    r = pristine.run(kube, "apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    return pristine


def _sar(kube, user: str, verb: str, resource: str, group: str, namespace: str) -> bool:
    body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group, namespace=namespace)))
    return client.AuthorizationV1Api(kube.api_client).create_subject_access_review(body).status.allowed


def _add_verb(kube, verb: str) -> None:
    """Someone edits the role by hand: one more verb on its last rule."""
    role = _rbac(kube).read_cluster_role(ROLE)
    role.rules[-1].verbs.append(verb)
    _rbac(kube).replace_cluster_role(ROLE, role)


def _network_policies(kube) -> list[str]:
    return [p.metadata.name for p in client.NetworkingV1Api(kube.api_client).list_namespaced_network_policy(NS).items]


def test_plan_shows_changes_and_exits_2(kube, pristine):
    r = pristine.run(kube, "plan", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Plan: 8 to add, 2 to change, 0 to destroy." in r.stdout
    assert "+ NetworkPolicy.networking.k8s.io argo/harden-default-deny" in r.stdout
    # The fixture's field manager owns the role's rules: the plan names it.
    assert "rules is owned by field manager harden-tests" in r.stdout
    assert "system:serviceaccount:argo:argo-server loses create, update, patch, delete on argoproj.io/workflows" in r.stdout


def test_apply_then_plan_is_empty(kube, pristine):
    r = pristine.run(kube, "apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Apply complete! Resources: 8 added, 2 changed, 0 destroyed." in r.stdout
    r = pristine.run(kube, "plan", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes." in r.stdout
    state = json.loads((pristine.state / "it-argo.json").read_text())
    assert state["serial"] >= 1 and state["lineage"]
    assert len(state["records"]) == 10
    # Objects carry harden's labels and a managedFields entry for the harden manager.
    np = client.NetworkingV1Api(kube.api_client).read_namespaced_network_policy("harden-default-deny", NS)
    assert np.metadata.labels["app.kubernetes.io/managed-by"] == "harden"
    assert any(m.manager == "harden-it-argo" for m in np.metadata.managed_fields)  # one manager per stack


def test_apply_records_objects_in_sync_and_a_hand_edit_still_shows_as_drift(kube, applied):
    from harden.plan import in_sync_token

    net = client.NetworkingV1Api(kube.api_client)

    def records() -> dict:
        return {r["key"]: r for r in json.loads((applied.state / "it-argo.json").read_text())["records"].values()}

    owned = {k: r for k, r in records().items() if r["kind"] == "object" and k.startswith("networking.k8s.io/")}
    assert owned
    def token(policy) -> str | None:
        return in_sync_token({"metadata": {"resourceVersion": policy.metadata.resource_version,
                                           "uid": policy.metadata.uid}})

    for key, rec in owned.items():
        # The resourceVersion the write left: what a plan may trust until somebody writes the object.
        assert rec["inSync"] == token(net.read_namespaced_network_policy(key.rsplit("/", 1)[1], NS))
    # Somebody opens the default-deny policy to every source: a new resourceVersion, so a field-by-field diff.
    deny = net.read_namespaced_network_policy("harden-default-deny", NS)
    deny.spec.ingress = [client.V1NetworkPolicyIngressRule()]
    net.replace_namespaced_network_policy("harden-default-deny", NS, deny)
    r = applied.run(kube, "plan", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "~ NetworkPolicy.networking.k8s.io argo/harden-default-deny" in r.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in r.stdout
    r = applied.run(kube, "apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    live = net.read_namespaced_network_policy("harden-default-deny", NS)
    assert not live.spec.ingress
    key = f"networking.k8s.io/NetworkPolicy/{NS}/harden-default-deny"
    assert records()[key]["inSync"] == token(live)
    assert applied.run(kube, "plan", "--detailed-exitcode").returncode == 0


def test_server_account_may_list_but_not_create_workflows(kube, applied):
    user = f"system:serviceaccount:{NS}:argo-server"
    assert _sar(kube, user, "list", "workflows", "argoproj.io", NS)
    assert not _sar(kube, user, "create", "workflows", "argoproj.io", NS)
    assert not _sar(kube, user, "delete", "workflows", "argoproj.io", NS)


def test_drift_is_planned_and_restored(kube, applied):
    _add_verb(kube, "create")
    r = applied.run(kube, "plan", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "~ ClusterRole.rbac.authorization.k8s.io argo-server-cluster-role" in r.stdout
    assert '"create"' in r.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in r.stdout
    assert "gains create" not in r.stdout and "loses create" in r.stdout
    r = applied.run(kube, "apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not _sar(kube, f"system:serviceaccount:{NS}:argo-server", "create", "workflows", "argoproj.io", NS)


def test_saved_plan_refused_when_object_changed(kube, applied):
    _add_verb(kube, "delete")
    planfile = applied.dir / "drift.plan.json"
    r = applied.run(kube, "plan", "--out", str(planfile))
    assert r.returncode == 0, r.stdout + r.stderr
    saved = json.loads(planfile.read_text())
    assert saved["summary"]["change"] == 1
    # A hand edit after the plan was saved makes it stale.
    _add_verb(kube, "patch")
    r = harden("apply", str(planfile), kubeconfig=kube.kubeconfig, state=applied.state)
    assert r.returncode == 1
    assert "argo-server-cluster-role" in r.stderr and "since the plan was made" in r.stderr
    assert "Traceback" not in r.stderr
    assert "patch" in _rbac(kube).read_cluster_role(ROLE).rules[-1].verbs  # nothing was applied
    # A fresh saved plan applies exactly, and is then refused because state moved on.
    r = applied.run(kube, "plan", "--out", str(planfile))
    assert r.returncode == 0
    r = harden("apply", str(planfile), kubeconfig=kube.kubeconfig, state=applied.state)
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("apply", str(planfile), kubeconfig=kube.kubeconfig, state=applied.state)
    assert r.returncode == 1 and "state moved on" in r.stderr


def test_dropping_a_profile_plans_deletion(kube, applied):
    smaller = dict(STACK, profiles=[p for p in STACK["profiles"] if p["profile"] != "metrics-ingress"])
    stack = applied.dir / "smaller.yaml"
    stack.write_text(yaml.safe_dump(smaller))
    r = applied.run(kube, "plan", "--detailed-exitcode", stack=stack)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "- NetworkPolicy.networking.k8s.io argo/harden-allow-metrics-ingress" in r.stdout
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in r.stdout
    r = applied.run(kube, "apply", "--auto-approve", stack=stack)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "harden-allow-metrics-ingress" not in _network_policies(kube)


def test_apply_without_terminal_or_approval_refuses(kube, pristine):
    """Changes are pending and stdin is no terminal (a pipe): apply shows the plan, refuses, and
    writes nothing, neither to the cluster nor to state."""
    r = pristine.run(kube, "apply")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Plan: 8 to add, 2 to change, 0 to destroy." in r.stdout
    message = " ".join(r.stderr.split())
    assert "refusing to perform these actions without confirmation: no terminal to ask on" in message
    assert "--auto-approve" in message
    assert "Traceback" not in r.stderr
    assert not [n for n in _network_policies(kube) if n.startswith("harden-")]
    assert [x.to_dict() for x in _rbac(kube).read_cluster_role(ROLE).rules] == pristine.shipped_rules
    assert not (pristine.state / "it-argo.json").exists()


def test_destroy_leaves_nothing_labelled_and_restores_roles(kube, applied):
    r = applied.run(kube, "destroy", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    for api_version, kind in OWNED_KINDS:
        items = kube.dynamic.resources.get(api_version=api_version, kind=kind).get(
            label_selector="app.kubernetes.io/managed-by=harden,harden.dev/stack=it-argo").items
        assert items == [], f"{kind} still labelled as harden's: {[i.metadata.name for i in items]}"
    # The role's rules went back to what they were before harden first changed them.
    role = _rbac(kube).read_cluster_role(ROLE)
    assert [x.to_dict() for x in role.rules] == applied.shipped_rules
    assert not any(m.manager == "harden-it-argo" and m.fields_v1 and "f:rules" in m.fields_v1 for m in role.metadata.managed_fields)
    state = json.loads((applied.state / "it-argo.json").read_text())
    assert state["records"] == {}


def test_a_namespace_that_does_not_exist_is_refused_before_anything_is_written(kube, pristine):
    # namespace-isolation's `workflowNamespaces` names a namespace nobody created: the API server
    # would refuse its objects in the middle of apply, after the others had landed.
    stack = yaml.safe_load(pristine.stack.read_text())
    stack["profiles"][1]["with"] = {"workflowNamespaces": [NS, "it-no-such-namespace"]}
    bad = pristine.dir / "bad-stack.yaml"
    bad.write_text(yaml.safe_dump(stack))
    for command in (("plan",), ("apply", "--auto-approve")):
        r = pristine.run(kube, *command, stack=bad)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "namespace 'it-no-such-namespace' does not exist" in r.stderr
        assert "kubectl create namespace it-no-such-namespace" in r.stderr
        assert "profiles/namespace-isolation.yaml:" in r.stderr  # the object's line in the profile
        assert "Traceback" not in r.stderr
    assert "harden-default-deny" not in _network_policies(kube)  # nothing was applied
    assert not pristine.state.exists() or not list(pristine.state.glob("*.json"))


def _quota_profile(tmp_path: Path, namespaces: list[str]) -> Path:
    """Five NetworkPolicies in each namespace, written namespace by namespace (one phase)."""
    profile = {
        "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
        "metadata": {"name": "it-quota", "title": "policies the server may refuse",
                     "recommendation": [{"document": "test", "section": "preflight"}]},
        "parameters": [{"name": "namespaces", "type": "stringList", "default": namespaces}],
        "objects": [{"forEach": {"parameter": "namespaces", "as": "ns"},
                     "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"it-quota-{i}", "namespace": "${ns}"},
                     "spec": {"podSelector": {"matchLabels": {"app": f"a{i}"}}, "policyTypes": ["Ingress"],
                              "ingress": [{"ports": [{"port": 8080}]}]}} for i in range(5)],
    }
    path = tmp_path / "it-quota.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.mark.parametrize("preflight", [True, False])
def test_a_write_the_server_refuses_with_and_without_preflight(kube, tmp_path, preflight):
    """A ResourceQuota of zero NetworkPolicies makes the API server's admission refuse every policy
    in one namespace. With the preflight (the default) the dry run meets the refusal and nothing
    is written anywhere; with --no-preflight the refusal comes part-way, what landed is recorded in
    state, and once the quota is lifted a re-run writes only the rest and converges."""
    core = client.CoreV1Api(kube.api_client)
    net = client.NetworkingV1Api(kube.api_client)
    ok, refused = (kube.create_namespace(f"it-pre-{n}-{int(preflight)}") for n in ("ok", "quota"))
    counted = {"count/networkpolicies.networking.k8s.io": "0"}
    core.create_namespaced_resource_quota(refused, {"metadata": {"name": "no-policies"}, "spec": {"hard": counted}})
    # The test cluster runs no resource-quota controller; its status (what admission enforces
    # against) is written here as that controller would write it.
    core.patch_namespaced_resource_quota_status("no-policies", refused, {"status": {"hard": counted, "used": counted}})
    profile = _quota_profile(tmp_path, [ok, refused])
    state = tmp_path / "state"
    flags = () if preflight else ("--no-preflight",)
    # One writer, so the writes go in the plan's order and stop at the first refusal.
    r = harden("apply", "-p", str(profile), "--auto-approve", "--parallelism", "1", *flags,
               kubeconfig=kube.kubeconfig, state=state)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exceeded quota" in r.stdout + r.stderr and "Traceback" not in r.stderr
    landed = sorted(p.metadata.name for p in net.list_namespaced_network_policy(ok).items)
    assert net.list_namespaced_network_policy(refused).items == []
    if preflight:
        assert landed == []  # refused in the dry run: nothing anywhere
        return
    assert landed  # the writes before the refusal stay
    plan = harden("plan", "-p", str(profile), "-o", "json", kubeconfig=kube.kubeconfig, state=state)
    creates = sorted((c["key"]["namespace"], c["key"]["name"]) for c in json.loads(plan.stdout)["changes"]
                     if c["action"] == "create")
    missing = [(ns, f"it-quota-{i}") for ns in (ok, refused) for i in range(5)
               if ns == refused or f"it-quota-{i}" not in landed]
    assert creates == sorted(missing)  # what landed is recorded and in sync: the rest, and only it, remains
    core.delete_namespaced_resource_quota("no-policies", refused)
    r = harden("apply", "-p", str(profile), "--auto-approve", *flags, kubeconfig=kube.kubeconfig, state=state)
    assert r.returncode == 0, r.stdout + r.stderr
    again = harden("plan", "-p", str(profile), "--detailed-exitcode", kubeconfig=kube.kubeconfig, state=state)
    assert again.returncode == 0, again.stdout + again.stderr
