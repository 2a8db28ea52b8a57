"""The Argo Workflows profiles planned offline against every layout people run.

Each test plans bundled profiles against a fixture install loaded as a snapshot (the upstream
manifests installed into `argo`, the Helm chart's release `wf` in `wfhelm`), sometimes edited the
way a real install differs (argo-server with SSO), and asserts what the plan does to the install:
which fields change, which objects are created, and that no component need breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harden.engine import Request, build_plan
from harden.model import Action, Plan

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
HELM = FIXTURES / "layouts" / "argo-workflows-helm.yaml"  # release wf in namespace wfhelm
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}

Edit = Callable[[list[dict[str, Any]]], None]


def snapshot(tmp_path: Path, source: Path, namespace: str | None = None, edit: Edit | None = None) -> str:
    """The fixture as a snapshot file: upstream manifests carry no namespace, so they are put in
    `namespace` as `kubectl apply -n` would; `edit` changes the install before it is observed."""
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    if namespace:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d.setdefault("metadata", {}).setdefault("namespace", namespace)
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if edit:
        edit(docs)
    out = tmp_path / f"snapshot-{source.stem}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    return str(out)


def upstream(tmp_path: Path, edit: Edit | None = None, name: str = "quick-start-postgres.yaml") -> str:
    return snapshot(tmp_path, FIXTURES / "argo-workflows" / name, "argo", edit)


def helm(tmp_path: Path, edit: Edit | None = None) -> str:
    return snapshot(tmp_path, HELM, None, edit)


def plan_of(tmp_path: Path, snap: str, profiles: tuple[str, ...], sets: tuple[str, ...] = ()) -> Plan:
    return build_plan(Request(profiles=profiles, sets=sets, snapshot=snap, state_dir=str(tmp_path / "state"))).plan


def broken_needs(plan: Plan) -> list[str]:
    return [f"{f.id}: {f.message}" for f in plan.failed_findings if f.kind == "need"]


def findings(plan: Plan) -> dict[str, Any]:
    return {f.id: f for f in plan.findings}


def server_args(plan: Plan) -> list[str] | None:
    """argo-server's args as the plan sets them (None: not changed)."""
    for c in plan.changes:
        if c.key.kind == "Deployment" and c.body and c.action is not Action.NOOP:
            for ct in c.body["spec"]["template"]["spec"]["containers"]:
                if ct["name"] == "argo-server":
                    return ct["args"]
    return None


def args_of(docs: list[dict[str, Any]], container: str = "argo-server") -> list[str]:
    for d in docs:
        if d["kind"] == "Deployment":
            for ct in d["spec"]["template"]["spec"]["containers"]:
                if ct["name"] == container:
                    return ct.setdefault("args", [])
    raise AssertionError(container)


# -- server-auth-tls -------------------------------------------------------------------------------

def test_server_auth_keeps_sso_and_removes_only_server(tmp_path):
    def sso(docs):
        args_of(docs)[:] = ["server", "--auth-mode", "server", "--auth-mode=sso"]
    plan = plan_of(tmp_path, upstream(tmp_path, sso), ("server-auth-tls",))
    assert server_args(plan) == ["server", "--auth-mode=sso", "--auth-mode=client", "--secure=true"]
    assert findings(plan)["not-server-auth-mode"].passed
    assert broken_needs(plan) == []


def test_helm_server_plans_with_no_broken_need_and_tls_left_as_found(tmp_path):
    # The chart runs --secure=false behind an HTTP readiness probe. harden leaves an explicit
    # --secure=false as found (turning it on alone would leave the pods never Ready) and warns; the check finds the release's
    # server through the install graph, though its pods carry no app=argo-server label.
    plan = plan_of(tmp_path, helm(tmp_path), ("server-auth-tls",), ("namespace=wfhelm",))
    assert broken_needs(plan) == []
    found = findings(plan)
    assert found["not-server-auth-mode"].passed and "wf-argo-workflows-server" in found["not-server-auth-mode"].message
    assert not found["secure-on"].passed and "--secure false" in found["secure-on"].message
    # --auth-mode=client already and --secure left as found: nothing to write, so nothing is taken over.
    assert server_args(plan) is None


def test_server_auth_check_fails_on_the_release_server_when_it_runs_server_mode(tmp_path):
    def server_mode(docs):
        args_of(docs).append("--auth-mode=server")
    plan = plan_of(tmp_path, helm(tmp_path, server_mode), ("server-auth-tls",), ("namespace=wfhelm",))
    args = server_args(plan)
    assert args is not None and "--auth-mode=server" not in args and args.count("--auth-mode=client") == 1


# -- read-only-server ------------------------------------------------------------------------------

def _sso(docs):
    args_of(docs)[:] = ["server", "--auth-mode=client", "--auth-mode=sso"]


def created(plan: Plan) -> dict[str, Any]:
    return {f"{c.key.kind}/{c.key.namespace}/{c.key.name}": c.body for c in plan.changes if c.action is Action.CREATE}


def test_read_only_server_keeps_what_sso_needs(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path, _sso), ("read-only-server",))
    assert broken_needs(plan) == []
    assert [d.value for d in plan.detected if d.parameter == "authModes"] == [["client", "sso"]]
    role = created(plan)["Role/argo/harden-argo-server-sso"]
    assert {"verbs": ["create"], "apiGroups": [""], "resources": ["secrets"]} in role["rules"]
    get = next(r for r in role["rules"] if r["verbs"] == ["get"])
    assert get["resourceNames"] == ["sso", "argo-server-sso"]
    binding = created(plan)["RoleBinding/argo/harden-argo-server-sso"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-server", "namespace": "argo"}]
    found = findings(plan)
    assert found["server-cannot-create-workflows"].passed


def test_read_only_server_without_sso_creates_no_secret_role(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path), ("read-only-server",))
    assert broken_needs(plan) == []
    assert not [k for k in created(plan) if "sso" in k]


def test_read_only_server_with_sso_breaks_the_need_when_the_user_hides_sso(tmp_path):
    # The need is real: told there is no sso (authModes set by hand), the Role is not made and the
    # plan names the broken need instead of leaving argo-server unable to start.
    plan = plan_of(tmp_path, upstream(tmp_path, _sso), ("read-only-server",), ("authModes=[client]",))
    assert any(b.startswith("argo-server/sso-create-secret") for b in broken_needs(plan))


# -- artifact-egress, db-egress, metrics-ingress ---------------------------------------------------

def test_artifact_egress_selects_helm_pods_by_their_own_selectors(tmp_path):
    plan = plan_of(tmp_path, helm(tmp_path), ("namespace-isolation", "artifact-egress"),
                   ("namespace=wfhelm", "repository=10.9.0.0/16"))
    made = created(plan)
    server = made["NetworkPolicy/wfhelm/harden-allow-artifact-egress-server"]["spec"]["podSelector"]
    controller = made["NetworkPolicy/wfhelm/harden-allow-artifact-egress-controller"]["spec"]["podSelector"]
    assert server == {"matchLabels": {"app.kubernetes.io/name": "argo-workflows-server", "app.kubernetes.io/instance": "wf"}}
    assert controller["matchLabels"]["app.kubernetes.io/instance"] == "wf" and "app" not in controller["matchLabels"]
    assert broken_needs(plan) == []
    found = findings(plan)
    assert found["server-reaches-artifacts"].passed and found["controller-reaches-artifacts"].passed


def _shared_database(docs):
    # A database in its own namespace, shared with an application that is not Argo's.
    def deployment(name, labels, port):  # labels copied: the snapshot is written without YAML aliases
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shared"},
                "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": dict(labels)}, "spec": {
                    "containers": [{"name": name, "image": "x", "ports": [{"containerPort": port}]}]}}}}
    docs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shared"}},
             deployment("pg", {"app": "pg"}, 5432), deployment("webapp", {"app": "webapp"}, 8080)]


def test_db_egress_names_the_clients_the_database_ingress_policy_cuts_off(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path, _shared_database), ("namespace-isolation", "db-egress"),
                   ("database={namespace: shared, podSelector: {app: pg}}",))
    warning = findings(plan)["database-clients-kept"]
    assert not warning.passed and warning.severity.value == "warning"
    assert "shared/deployment/webapp" in warning.message and "shared/deployment/pg" in warning.message
    assert "argo/deployment/argo-server" not in warning.message.split("lose access")[1]
    assert findings(plan)["server-reaches-database"].passed


def test_db_egress_with_a_cidr_isolates_nothing_and_says_so(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path, _shared_database), ("namespace-isolation", "db-egress"),
                   ("database=10.20.0.0/24",))
    assert findings(plan)["database-clients-kept"].passed
    assert not [k for k in created(plan) if "ingress-from-argo" in k]


def test_metrics_ingress_names_a_scraper_outside_the_prometheus_namespace(tmp_path):
    def scraper(docs):
        docs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
                 {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vmagent", "namespace": "other"},
                  "spec": {"selector": {"matchLabels": {"app": "vmagent"}}, "template": {
                      "metadata": {"labels": {"app": "vmagent"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}}}]
    plan = plan_of(tmp_path, upstream(tmp_path, scraper), ("metrics-ingress",))
    warning = findings(plan)["controller-clients-kept"]
    assert not warning.passed and "other/deployment/vmagent" in warning.message


# -- namespace-isolation in the namespaces workflows run in ----------------------------------------

def _workflow_namespace(docs):
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wf1"}})


def test_namespace_isolation_covers_every_workflow_namespace(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path, _workflow_namespace), ("namespace-isolation",),
                   ("workflowNamespaces=[wf1]", "workflowEgress=[{namespace: apps, podSelector: {app: api}}, 10.30.0.0/16]"))
    made = created(plan)
    assert made["NetworkPolicy/wf1/harden-workflows-default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                                                            "ingress": [], "egress": []}
    dns = made["NetworkPolicy/wf1/harden-workflows-allow-dns"]["spec"]["egress"][0]
    assert {"protocol": "UDP", "port": 53} in dns["ports"]
    api = made["NetworkPolicy/wf1/harden-workflows-allow-kube-api"]["spec"]
    assert api["podSelector"] == {} and api["egress"][0]["ports"]
    egress = made["NetworkPolicy/wf1/harden-workflows-allow-egress"]["spec"]
    assert egress["podSelector"] == {"matchExpressions": [{"key": "workflows.argoproj.io/workflow", "operator": "Exists"}]}
    assert egress["egress"] == [{"to": [
        {"podSelector": {"matchLabels": {"app": "api"}}, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}},
        {"ipBlock": {"cidr": "10.30.0.0/16"}}]}]
    assert "NetworkPolicy/argo/harden-default-deny" in made
    assert broken_needs(plan) == []


def test_namespace_isolation_with_no_workflow_namespaces_adds_only_the_workflow_egress_to_the_install(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path), ("namespace-isolation",), ("workflowEgress=[10.30.0.0/16]",))
    workflows = sorted(k for k in created(plan) if "harden-workflows" in k)
    assert workflows == ["NetworkPolicy/argo/harden-workflows-allow-egress"]
    plain = plan_of(tmp_path / "plain", upstream(tmp_path), ("namespace-isolation",))
    assert not [k for k in created(plain) if "harden-workflows" in k]


def test_artifact_egress_follows_workflows_into_their_namespaces(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path, _workflow_namespace), ("namespace-isolation", "artifact-egress"),
                   ("workflowNamespaces=[wf1]", "repository={namespace: argo, podSelector: {app: minio}}", "port=9000"))
    made = created(plan)
    assert "NetworkPolicy/wf1/harden-allow-artifact-egress-workflows" in made
    assert "NetworkPolicy/wf1/harden-allow-artifact-egress-gc" in made
    ingress = made["NetworkPolicy/argo/harden-allow-artifact-ingress-from-workflows-wf1"]["spec"]["ingress"][0]
    assert {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in ingress["from"]} == {"wf1"}
    assert findings(plan)["repository-clients-kept"].passed
    assert broken_needs(plan) == []


# -- workflow-submitter-role, workflow-namespace-rbac ----------------------------------------------

def test_workflow_submitter_role_creates_and_reads_workflows_only(tmp_path):
    plan = plan_of(tmp_path, upstream(tmp_path), ("workflow-submitter-role",), ("group=devs", "namespace=argo"))
    made = created(plan)
    assert made["Role/argo/harden-workflow-submitter"]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get", "list", "watch"]}]
    assert made["RoleBinding/argo/harden-workflow-submitter-group"]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]
    assert "RoleBinding/argo/harden-workflow-submitter-user" not in made
    found = findings(plan)
    for check in ("group-submits-workflows", "group-reads-workflows", "group-cannot-delete-workflows", "group-cannot-create-pods"):
        assert found[check].passed, found[check].message
    assert "user-submits-workflows" not in found


def test_workflow_namespace_rbac_gives_each_workflow_namespace_the_tailored_role(tmp_path):
    plan = plan_of(tmp_path, helm(tmp_path), ("workflow-namespace-rbac",),
                   ("namespace=wfhelm", "workflowNamespaces=[team-a, team-b]"))
    made = created(plan)
    for ns in ("team-a", "team-b"):
        rules = made[f"Role/{ns}/harden-workflow-manager"]["rules"]
        assert rules[0] == {"apiGroups": ["argoproj.io"], "resources": ["workflows", "workflowtemplates", "cronworkflows"],
                            "verbs": ["list", "get", "create", "update", "delete", "watch"]}
        assert not any("secrets" in r.get("resources", []) or "pods" in r.get("resources", []) for r in rules)
        assert made[f"RoleBinding/{ns}/harden-workflow-manager"]["subjects"] == [
            {"kind": "ServiceAccount", "name": "harden-workflow-manager", "namespace": ns}]
        assert f"ServiceAccount/{ns}/harden-workflow-manager" in made
    assert not [k for k in made if "/wfhelm/" in k]  # listed namespaces replace the install's
    assert broken_needs(plan) == []


def test_detecting_args_needs_a_target(tmp_path):
    from harden.errors import Diagnostics
    from harden.load import load_profile

    text = (REPO / "profiles" / "read-only-server.yaml").read_text().replace(
        'detect: {target: server, from: "arg:--auth-mode"}', 'detect: {from: "arg:--auth-mode"}')
    path = tmp_path / "read-only-server.yaml"
    path.write_text(text)
    with pytest.raises(Diagnostics) as exc:
        load_profile(str(path))
    assert any("target" in (d.summary + (d.hint or "")) for d in exc.value.diagnostics), exc.value.diagnostics
