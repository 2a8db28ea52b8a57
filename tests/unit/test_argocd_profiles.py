"""The Argo CD profiles (profiles/argocd-*.yaml), planned offline on examples/snapshot-argocd.

No cluster: `build_plan` reads the snapshot (the upstream install.yaml in namespace argocd), so
these tests pin what each profile creates and patches, that every check and expectation passes,
the security impact (RBAC losses), and the flows the expectations cannot express (egress to the
CIDR-list parameters) on the predicted state. The new checks are tested as pure functions.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from harden.checks import CHECKS
from harden.engine import Request, build_plan
from harden.errors import Diagnostics
from harden.impact import netpol, rbac
from harden.model import Action, ChangeKind, ResourceKey, Severity
from harden.plan import predict

REPO = Path(__file__).resolve().parents[2]
STACK = str(REPO / "examples" / "argocd-stack.yaml")
SNAPSHOT = str(REPO / "examples" / "snapshot-argocd")
INSTALL = REPO / "tests" / "fixtures" / "argo-cd" / "install.yaml"
NS = "argocd"
PROFILES = ("argocd-tls", "argocd-repo-server-no-k8s", "argocd-rbac-default", "argocd-network",
            "argocd-controller-namespaces")


def plan_for(tmp_path, *, stack: str | None = STACK, profiles: tuple[str, ...] = (), sets: tuple[str, ...] = ()):
    return build_plan(Request(profiles=profiles, stack_file=stack, sets=sets, snapshot=SNAPSHOT,
                              state_dir=str(tmp_path / "state")))


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    return plan_for(tmp_path_factory.mktemp("argocd"))


def changes(p, action: Action | None = None, kind: str | None = None):
    return {c.key: c for c in p.plan.changes
            if (action is None or c.action is action) and (kind is None or c.key.kind == kind)}


def key(kind: str, name: str, ns: str = NS, group: str | None = None) -> ResourceKey:
    groups = {"NetworkPolicy": "networking.k8s.io", "Role": "rbac.authorization.k8s.io",
              "RoleBinding": "rbac.authorization.k8s.io", "ClusterRole": "rbac.authorization.k8s.io",
              "Deployment": "apps", "StatefulSet": "apps"}
    return ResourceKey(group if group is not None else groups.get(kind, ""), kind, ns, name)


def fields(change) -> dict[str, object]:
    """The fields a change sets, less the record of the originals harden keeps on patched objects."""
    return {f.path: f.after for f in change.fields if "harden.dev/original" not in f.path}


def after_state(p) -> list[dict]:
    return predict(p.live, p.plan)


def flow(objs, src: str, dst: str, port: str) -> bool:
    number, proto = netpol.parse_port(port)
    return netpol.evaluate(objs, netpol.parse_endpoint(src, objs), netpol.parse_endpoint(dst, objs), number, proto).allowed


def pod(component: str) -> str:
    return f"{NS}/app.kubernetes.io/name=argocd-{component}"


# -- the whole stack ---------------------------------------------------------------------------

def test_stack_plans_with_every_check_and_expectation_passing(planned):
    findings = [f for f in planned.plan.findings if f.kind != "need"]
    assert {f.profile for f in findings} == set(PROFILES)
    failed = [f"{f.profile}/{f.id}: {f.message}" for f in findings if not f.passed]
    assert not failed, failed
    # No component need is broken; those unmet in the snapshot already (the Redis password Secret
    # the redis-secret-init Job creates at run time) are reported, not blamed on the plan.
    needs = planned.plan.impact["needs"]
    assert not [n for n in needs if n["status"] == "broken"]
    assert {n["need"] for n in needs if n["status"] == "unmet"} <= {"redis-password", "get-password-secret",
                                                                   "get-notifications-config",
                                                                   "get-notifications-secret"}
    expectations = [f for f in findings if f.kind == "expectation"]
    by_profile = {p: sum(f.profile == p for f in expectations) for p in PROFILES}
    assert by_profile["argocd-repo-server-no-k8s"] >= 4
    assert by_profile["argocd-network"] >= 15
    assert by_profile["argocd-controller-namespaces"] >= 8
    # argocd-server and argocd-repo-server are not rolled for the default TLS minimum (argocd-tls); the
    # six shipped NetworkPolicies that admit metrics from everywhere are narrowed (argocd-network)
    assert planned.plan.counts() == {"add": 33, "change": 11, "release": 0, "destroy": 0}, planned.plan.counts()


def test_targets_resolve_to_the_upstream_objects(planned):
    chosen = {f"{t.profile}.{t.target}": t.chosen for t in planned.plan.targets}
    assert chosen["argocd-tls.cmdParams"].startswith("ConfigMap argocd/argocd-cmd-params-cm")
    assert chosen["argocd-repo-server-no-k8s.repoServerAccount"] == "ServiceAccount argocd/argocd-repo-server"
    assert chosen["argocd-network.shippedServerPolicy"].startswith("NetworkPolicy argocd/argocd-server-network-policy")
    assert chosen["argocd-controller-namespaces.controllerRole"].startswith("ClusterRole argocd-application-controller")
    assert chosen["argocd-controller-namespaces.serverRole"].startswith("ClusterRole argocd-server")


def test_security_impact_shows_the_rbac_losses(planned):
    texts = [c["text"] for c in planned.plan.impact["rbac"]]
    controller = "system:serviceaccount:argocd:argocd-application-controller"
    server = "system:serviceaccount:argocd:argocd-server"
    assert f"{controller} loses * on * cluster-wide" in texts
    assert f"{server} loses patch, delete on */* cluster-wide" in texts
    assert f"{server} loses update on */*/finalizers cluster-wide" in texts
    assert f"{server} loses create on batch/jobs cluster-wide" in texts
    assert not any("gains" in t for t in texts), texts  # nothing widens
    network = [c["text"] for c in planned.plan.impact["network"]]
    assert not any("can now reach" in t for t in network), network  # the network profile only closes flows


# -- argocd-tls --------------------------------------------------------------------------------

def test_tls_sets_min_version_keys_without_restarting_for_the_default(planned):
    cm = changes(planned)[key("ConfigMap", "argocd-cmd-params-cm")]
    assert cm.action is Action.UPDATE and cm.kind is ChangeKind.PATCH
    assert fields(cm) == {'data["server.tls.minversion"]': "1.2", 'data["reposerver.tls.minversion"]': "1.2"}
    # 1.2 is what the servers enforce without the key: no pod template is touched, nothing rolls.
    for name in ("argocd-server", "argocd-repo-server"):
        c = changes(planned).get(key("Deployment", name))
        assert c is None or not any("harden.dev/tls" in f.path for f in c.fields), c
    # strict TLS is opt-in: without it, no strict keys and the controller is not restarted
    assert key("StatefulSet", "argocd-application-controller") not in changes(planned, Action.UPDATE)
    assert {f.id: f.passed for f in planned.plan.findings if f.profile == "argocd-tls"}["rollout-when-effective"]


def test_tls_a_changed_minimum_needs_a_rollout(tmp_path):
    p = plan_for(tmp_path / "off", stack=None, profiles=("argocd-tls",), sets=("minVersion='1.3'",))
    failed = {f.id: f for f in p.plan.failed_findings}
    assert "rollout-when-effective" in failed and "rollout is off" in failed["rollout-when-effective"].message
    p = plan_for(tmp_path / "on", stack=None, profiles=("argocd-tls",), sets=("minVersion='1.3'", "rollout=true"))
    assert not p.plan.failed_findings
    for name in ("argocd-server", "argocd-repo-server"):
        assert fields(changes(p)[key("Deployment", name)])[
            'spec.template.metadata.annotations["harden.dev/tls-min-version"]'] == "1.3"


def test_tls_strict_and_version_parameters(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-tls",),
                 sets=("strictTls=true", "minVersion='1.3'", "rollout=true"))
    # Strict TLS makes the clients load the CA from argocd-repo-server-tls / argocd-dex-server-tls,
    # which the snapshot does not have: those needs break, and nothing else does.
    failed = [f for f in p.plan.findings if not f.passed and f.severity is Severity.ERROR]
    assert failed and all(f.kind == "need" and "-tls does not exist" in f.message for f in failed)
    assert "application-controller/repo-server-ca" in {f.id for f in failed}
    cm = fields(changes(p)[key("ConfigMap", "argocd-cmd-params-cm")])
    assert cm['data["server.tls.minversion"]'] == "1.3"
    for k in ("server.repo.server.strict.tls", "server.dex.server.strict.tls", "controller.repo.server.strict.tls",
              "applicationsetcontroller.repo.server.strict.tls"):
        assert cm[f'data["{k}"]'] == "true"
    for kind, name in (("StatefulSet", "argocd-application-controller"), ("Deployment", "argocd-applicationset-controller"),
                       ("Deployment", "argocd-server")):
        assert fields(changes(p)[key(kind, name)])['spec.template.metadata.annotations["harden.dev/tls-strict"]'] == "true"


def test_tls_refuses_a_weaker_minimum(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-tls",), sets=("minVersion='1.1'",))
    failed = {f.id: f for f in p.plan.failed_findings}
    assert "min-version-valid" in failed and "older than 1.2" in failed["min-version-valid"].message


# -- argocd-repo-server-no-k8s -----------------------------------------------------------------

def test_repo_server_token_is_off_on_the_account_and_pinned_on_the_pods(planned):
    sa = changes(planned)[key("ServiceAccount", "argocd-repo-server")]
    assert fields(sa) == {"automountServiceAccountToken": False}
    repo = changes(planned)[key("Deployment", "argocd-repo-server")]
    # upstream already ships automountServiceAccountToken: false on the pod: harden owns it, no change
    assert "spec.template.spec.automountServiceAccountToken" in repo.field_paths
    assert "spec.template.spec.automountServiceAccountToken" not in fields(repo)
    assert repo.body["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_repo_server_has_no_kubernetes_permissions(planned):
    objs = after_state(planned)
    subject = "system:serviceaccount:argocd:argocd-repo-server"
    for verb, resource, ns in (("get", "secrets", NS), ("list", "secrets", None), ("get", "configmaps", NS),
                               ("list", "pods", None), ("create", "pods", NS), ("get", "applications.argoproj.io", NS)):
        assert not rbac.check(objs, subject, verb, resource, ns).allowed, (verb, resource, ns)
    checks = {f.id: f for f in planned.plan.findings if f.profile == "argocd-repo-server-no-k8s" and f.kind == "check"}
    assert checks["no-bindings"].passed and checks["no-token-volume"].passed


# -- argocd-network ----------------------------------------------------------------------------

NETPOLS = {
    "harden-default-deny", "harden-allow-dns", "harden-allow-kube-api", "harden-allow-repo-server-git",
    "harden-allow-applicationset-scm", "harden-allow-notifications-egress", "harden-allow-sso-egress",
    "harden-allow-to-repo-server", "harden-allow-repo-server-ingress", "harden-allow-to-redis",
    "harden-allow-redis-ingress", "harden-allow-to-dex", "harden-allow-dex-ingress", "harden-allow-server-ingress",
    "harden-allow-applicationset-webhook", "harden-allow-redis-ha", "harden-allow-redis-ha-ingress",
} | {f"harden-allow-metrics-{c}" for c in ("application-controller", "applicationset-controller", "dex-server",
                                            "notifications-controller", "repo-server", "server")}


def test_network_creates_the_policies_and_narrows_the_shipped_server_policy(planned):
    created = {k.name for k in changes(planned, Action.CREATE, "NetworkPolicy")}
    assert created == NETPOLS
    shipped = changes(planned)[key("NetworkPolicy", "argocd-server-network-policy")]
    assert shipped.kind is ChangeKind.PATCH and shipped.action is Action.UPDATE
    # 8080 from serverIngressFrom; metrics (8083) are harden-allow-metrics-server's, from metricsNamespace
    assert shipped.body["spec"]["ingress"] == [{"from": [], "ports": [{"protocol": "TCP", "port": 8080}]}]
    # release puts Argo CD's allow-all back
    assert shipped.restore.body["spec"]["ingress"] == [{}]


def test_network_egress_to_the_outside_follows_the_parameters(planned):
    objs = after_state(planned)
    api, git, elsewhere = "10.96.0.1", "140.82.112.3", "203.0.113.10"
    for component in ("application-controller", "applicationset-controller", "server", "notifications-controller",
                      "dex-server", "redis"):
        assert flow(objs, pod(component), api, "443"), component
        assert flow(objs, pod(component), api, "6443"), component
    assert flow(objs, pod("repo-server"), git, "443") and flow(objs, pod("repo-server"), git, "22")
    assert not flow(objs, pod("repo-server"), git, "80")                 # only the git ports
    assert not flow(objs, pod("repo-server"), api, "6443")               # no API port of its own
    assert not flow(objs, pod("application-controller"), git, "22")     # only the repo-server clones
    assert flow(objs, pod("applicationset-controller"), git, "443")      # SCM provider APIs
    assert flow(objs, pod("dex-server"), elsewhere, "443")               # the identity provider
    assert not flow(objs, pod("redis"), elsewhere, "80")
    # before: nothing was isolated for egress
    assert flow(planned.live.all(), pod("repo-server"), git, "80")


def test_network_internal_flows_and_closed_ones(planned):
    objs = after_state(planned)
    allowed = [("server", "repo-server", "8081"), ("application-controller", "repo-server", "8081"),
               ("applicationset-controller", "repo-server", "8081"), ("notifications-controller", "repo-server", "8081"),
               ("server", "redis", "6379"), ("application-controller", "redis", "6379"), ("repo-server", "redis", "6379"),
               ("server", "dex-server", "5556"), ("server", "dex-server", "5557")]
    for src, dst, port in allowed:
        assert flow(objs, pod(src), pod(dst), port), (src, dst, port)
    denied = [("repo-server", "application-controller", "8082"), ("dex-server", "redis", "6379"),
              ("repo-server", "server", "8080"), ("redis", "repo-server", "8081"),
              ("applicationset-controller", "redis", "6379"), ("notifications-controller", "redis", "6379")]
    for src, dst, port in denied:
        assert not flow(objs, pod(src), pod(dst), port), (src, dst, port)
    assert flow(objs, "kube-system/k8s-app=kube-dns", pod("repo-server"), "8081") is False
    assert flow(objs, "0.0.0.0/0", pod("server"), "8080")
    assert flow(objs, "ingress-nginx/app=ingress", pod("applicationset-controller"), "7000")
    assert not flow(objs, "0.0.0.0/0", pod("applicationset-controller"), "7000")


def test_network_server_ingress_sources_and_switches(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-network",),
                 sets=("serverIngressFrom=[10.0.0.0/8]", "allowMetrics=false", "gitCIDRs=[]",
                       "applicationSetWebhook=false"))
    assert not [f for f in p.plan.findings if not f.passed and f.severity is Severity.ERROR]
    ids = {f.id for f in p.plan.findings}
    assert "server-ingress-open" not in ids and "prometheus-scrapes-controller" not in ids
    created = {k.name for k in changes(p, Action.CREATE, "NetworkPolicy")}
    assert not any(n.startswith("harden-allow-metrics-") for n in created)
    assert "harden-allow-repo-server-git" not in created and "harden-allow-applicationset-webhook" not in created
    objs = after_state(p)
    assert flow(objs, "10.1.2.3", pod("server"), "8080")
    assert not flow(objs, "192.0.2.1", pod("server"), "8080")   # the shipped allow-all no longer opens it
    assert not flow(objs, pod("repo-server"), "140.82.112.3", "443")


# -- argocd-controller-namespaces --------------------------------------------------------------

def test_controller_namespaces_roles_and_bindings(planned):
    created = changes(planned, Action.CREATE)
    for ns in ("guestbook", "team-a"):
        role = created[key("Role", "harden-argocd-application-controller", ns)]
        assert role.body["rules"] == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
        binding = created[key("RoleBinding", "harden-argocd-application-controller", ns)]
        assert binding.body["subjects"] == [{"kind": "ServiceAccount", "name": "argocd-application-controller",
                                             "namespace": NS}]
        assert key("Role", "harden-argocd-server", ns) in created
        assert key("RoleBinding", "harden-argocd-server", ns) in created
    cr = changes(planned)[key("ClusterRole", "argocd-application-controller", "")]
    assert cr.body["rules"] == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
                                {"nonResourceURLs": ["*"], "verbs": ["get", "list", "watch"]}]
    server = changes(planned)[key("ClusterRole", "argocd-server", "")]
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in server.body["rules"])


def test_controller_permissions_after(planned):
    objs = after_state(planned)
    controller = "system:serviceaccount:argocd:argocd-application-controller"
    server = "system:serviceaccount:argocd:argocd-server"
    for ns in ("guestbook", "team-a"):
        assert rbac.check(objs, controller, "create", "deployments.apps", ns).allowed
        assert rbac.check(objs, controller, "delete", "secrets", ns).allowed
        assert rbac.check(objs, server, "patch", "deployments.apps", ns).allowed
        assert rbac.check(objs, server, "create", "jobs.batch", ns).allowed
    for ns in ("default", "kube-system"):
        assert not rbac.check(objs, controller, "create", "deployments.apps", ns).allowed
        assert not rbac.check(objs, server, "delete", "deployments.apps", ns).allowed
    assert not rbac.check(objs, controller, "create", "namespaces", None).allowed
    assert not rbac.check(objs, controller, "create", "clusterroles.rbac.authorization.k8s.io", None).allowed
    assert rbac.check(objs, controller, "list", "pods", None).allowed
    assert rbac.check(objs, controller, "watch", "secrets", None).allowed       # cluster-wide read stays
    assert rbac.check(objs, server, "get", "pods/log", None).allowed


def test_controller_namespaces_without_server_restriction(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-controller-namespaces",),
                 sets=("namespaces=[apps]", "restrictServer=false"))
    assert not [f for f in p.plan.findings if not f.passed and f.severity is Severity.ERROR]
    ids = {f.id for f in p.plan.findings}
    assert "server-no-delete-elsewhere" not in ids and "controller-writes-chosen-namespace" not in ids
    assert key("ClusterRole", "argocd-server", "") not in changes(p, Action.UPDATE)
    created = {(k.kind, k.namespace, k.name) for k in changes(p, Action.CREATE)}
    assert created == {("Role", "apps", "harden-argocd-application-controller"),
                       ("RoleBinding", "apps", "harden-argocd-application-controller"),
                       ("Role", NS, "harden-argocd-controller-shard-cm"),
                       ("RoleBinding", NS, "harden-argocd-controller-shard-cm")}


def test_controller_namespaces_needs_namespaces(tmp_path):
    with pytest.raises(Diagnostics) as exc:
        plan_for(tmp_path, stack=None, profiles=("argocd-controller-namespaces",))
    assert "namespaces" in str(exc.value.diagnostics[0].summary)


def test_a_wrong_verify_namespace_fails_the_plan(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-controller-namespaces",),
                 sets=("namespaces=[apps]", "verifyNamespace=kube-system"))
    assert {f.id for f in p.plan.failed_findings} == {"controller-writes-chosen-namespace",
                                                     "server-deletes-in-chosen-namespace"}


# -- the snapshot and the new checks -------------------------------------------------------------

def snapshot_from_install(text: str) -> list[dict]:
    """How examples/snapshot-argocd was made from install.yaml."""
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {"kubernetes.io/metadata.name": n}}}
           for n in (NS, "kube-system")]
    for d in yaml.safe_load_all(text):
        if not d:
            continue
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"):
            d["metadata"]["namespace"] = NS
        if d["kind"] == "Secret":
            for k in ("data", "stringData"):
                if d.get(k):
                    d[k] = {x: "(sensitive value)" for x in d[k]}
        out.append(d)
    return out


def test_snapshot_matches_install():
    snap = REPO / "examples" / "snapshot-argocd" / "argocd-install.yaml"
    assert [d for d in yaml.safe_load_all(snap.read_text()) if d] == snapshot_from_install(INSTALL.read_text())


def _deployment(name: str, env: list[dict] | None = None, volumes: list[dict] | None = None, sa: str | None = None) -> dict:
    spec = {"containers": [{"name": name, "env": env or []}], "volumes": volumes or []}
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": spec}}}


def test_check_tls_min_version_at_least():
    fn = CHECKS["tlsMinVersionAtLeast"]
    assert fn([], {"version": "1.2", "atLeast": "1.2"})[0]
    assert fn([], {"version": "1.3"})[0]
    assert not fn([], {"version": "1.1", "atLeast": "1.2"})[0]
    assert not fn([], {"version": "TLS1.2"})[0]
    assert not fn([], {"version": "1.4"})[0]


def test_check_config_map_keys_consumed():
    fn = CHECKS["configMapKeysConsumed"]
    ref = {"name": "ARGOCD_TLS_MIN_VERSION", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "server.tls.minversion"}}}
    w = {"namespace": NS, "configMap": "cm",
         "consumers": [{"labels": {"app.kubernetes.io/name": "argocd-server"}, "key": "server.tls.minversion"}]}
    ok, msg = fn([_deployment("argocd-server", [ref])], w)
    assert ok and "ARGOCD_TLS_MIN_VERSION" in msg
    ok, msg = fn([_deployment("argocd-server", [])], w)
    assert not ok and "does not read" in msg
    ok, msg = fn([], w)
    assert not ok and "no workload" in msg


def test_check_config_map_values_not():
    fn = CHECKS["configMapValuesNot"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": NS},
          "data": {"server.insecure": "True", "other": "true"}}
    w = {"namespace": NS, "configMap": "cm", "forbid": {"server.insecure": "true", "reposerver.disable.tls": "true"}}
    ok, msg = fn([cm], w)
    assert not ok and "server.insecure=True" in msg
    clean = copy.deepcopy(cm)
    clean["data"] = {"server.insecure": "false"}
    assert fn([clean], w)[0]
    assert not fn([], w)[0]


def test_check_no_projected_token_volume():
    fn = CHECKS["noProjectedTokenVolume"]
    w = {"namespace": NS, "labels": {"app.kubernetes.io/name": "argocd-repo-server"}, "serviceAccount": "argocd-repo-server"}
    assert fn([_deployment("argocd-repo-server", sa="argocd-repo-server")], w)[0]
    token = {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    ok, msg = fn([_deployment("argocd-repo-server", volumes=[token], sa="argocd-repo-server")], w)
    assert not ok and "kube-api-access" in msg
    ok, msg = fn([_deployment("argocd-repo-server")], w)
    assert not ok and "runs as service account default" in msg
    assert not fn([], w)[0]


# -- argocd-network: what the shipped policies and the switches really close ---------------------

SHIPPED_METRICS = {"application-controller": "8082", "applicationset-controller": "8080", "dex-server": "5558",
                   "notifications-controller": "9001", "repo-server": "8084", "server": "8083"}


def test_network_metrics_only_from_the_metrics_namespace(planned):
    objs = after_state(planned)
    for component, port in SHIPPED_METRICS.items():
        assert flow(objs, "monitoring/", pod(component), port), component
        assert not flow(objs, "default/app=anything", pod(component), port), component
        # before: upstream's shipped policies admitted every namespace
        assert flow(planned.live.all(), "default/app=anything", pod(component), port), component


def test_network_closed_switches_close_the_shipped_policies_too(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-network",),
                 sets=("allowMetrics=false", "applicationSetWebhook=false"))
    assert not [f for f in p.plan.failed_findings if f.kind != "need"]
    assert not [n for n in p.plan.impact["needs"] if n["status"] == "broken"]
    objs = after_state(p)
    for component, port in SHIPPED_METRICS.items():
        assert not flow(objs, "monitoring/", pod(component), port), component
    assert not flow(objs, "ingress-nginx/app=ingress", pod("applicationset-controller"), "7000")
    # the internal rules of the shipped policies stay
    assert flow(objs, pod("server"), pod("dex-server"), "5557")
    assert flow(objs, pod("application-controller"), pod("repo-server"), "8081")


def test_network_server_ingress_from_an_in_cluster_peer(tmp_path):
    peer = "serverIngressPeer={namespace: ingress-nginx, podSelector: {app.kubernetes.io/name: ingress-nginx}}"
    p = plan_for(tmp_path, stack=None, profiles=("argocd-network",), sets=(peer, "serverIngressFrom=[10.0.0.0/8]"))
    assert not [f for f in p.plan.failed_findings if f.kind != "need"]
    objs = after_state(p)
    assert flow(objs, "ingress-nginx/app.kubernetes.io/name=ingress-nginx", pod("server"), "8080")
    assert flow(objs, "10.1.2.3", pod("server"), "8080")
    assert not flow(objs, "ingress-nginx/app.kubernetes.io/name=other", pod("server"), "8080")
    assert not flow(objs, "default/app=anything", pod("server"), "8080")
    assert not flow(objs, "192.0.2.1", pod("server"), "8080")


def ha_snapshot(tmp_path) -> str:
    """The example snapshot turned into Argo CD's HA layout: tests/fixtures/layouts/argo-cd-ha.yaml's
    objects replace those of the same kind and name, and argocd-redis (Deployment, ServiceAccount,
    Role, RoleBinding, Service; not the password Secret) is gone, as in manifests/ha/install.yaml."""
    ha = [d for d in yaml.safe_load_all((REPO / "tests/fixtures/layouts/argo-cd-ha.yaml").read_text()) if d]
    for d in ha:
        d["metadata"]["namespace"] = NS
    replaced = {(d["kind"], d["metadata"]["name"]) for d in ha}
    docs = [d for f in sorted(Path(SNAPSHOT).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    docs = [d for d in docs if (d["kind"], d["metadata"]["name"]) not in replaced
            and (d["metadata"]["name"] != "argocd-redis" or d["kind"] == "Secret")]
    out = tmp_path / "snapshot-ha"
    out.mkdir()
    (out / "install.yaml").write_text(yaml.safe_dump_all(docs + ha))
    return str(out)


def test_network_on_the_ha_layout_keeps_redis_ha_working(tmp_path):
    p = build_plan(Request(profiles=("argocd-network",), stack_file=None, sets=(), snapshot=ha_snapshot(tmp_path),
                           state_dir=str(tmp_path / "state")))
    components = {c["name"] for c in p.plan.impact["installs"][0]["components"]}
    assert {"redis-ha", "redis-ha-haproxy"} <= components and "redis" not in components
    broken = [f"{n['component']}/{n['need']}" for n in p.plan.impact["needs"] if n["status"] == "broken"]
    assert not broken, broken
    objs = after_state(p)
    haproxy, redis_ha = f"{NS}/app.kubernetes.io/name=argocd-redis-ha-haproxy", f"{NS}/app.kubernetes.io/name=argocd-redis-ha"
    for client in ("server", "application-controller", "repo-server"):
        assert flow(objs, pod(client), haproxy, "6379"), client
        assert not flow(objs, pod(client), redis_ha, "6379"), client   # only through the proxy
    for port in ("6379", "26379"):
        assert flow(objs, haproxy, redis_ha, port) and flow(objs, redis_ha, redis_ha, port)
    assert not flow(objs, pod("dex-server"), haproxy, "6379")
    assert flow(objs, haproxy, "10.96.0.1", "443")                      # its secret-init reads argocd-redis


# -- argocd-controller-namespaces: Argo CD's own namespace --------------------------------------

CONTROLLER = "system:serviceaccount:argocd:argocd-application-controller"


def test_controller_keeps_its_shard_config_map(planned):
    objs = after_state(planned)
    shard = "argocd-app-controller-shard-cm"
    assert rbac.check(objs, CONTROLLER, "create", "configmaps", NS).allowed
    assert rbac.check(objs, CONTROLLER, "update", "configmaps", NS, shard).allowed
    assert not rbac.check(objs, CONTROLLER, "update", "configmaps", NS, "argocd-cm").allowed
    # without the shard Role the restricted ClusterRole would have cut it (upstream's Role only reads)
    without = [o for o in objs if o["metadata"].get("name") != "harden-argocd-controller-shard-cm"]
    assert not rbac.check(without, CONTROLLER, "update", "configmaps", NS, shard).allowed


def test_controller_self_managed_keeps_argo_cd_syncable(tmp_path):
    p = plan_for(tmp_path, stack=None, profiles=("argocd-controller-namespaces",),
                 sets=("namespaces=[apps]", "selfManaged=true"))
    assert not [f for f in p.plan.failed_findings if f.kind != "need"]
    assert not [n for n in p.plan.impact["needs"] if n["status"] == "broken"]
    objs = after_state(p)
    assert rbac.check(objs, CONTROLLER, "patch", "deployments.apps", NS).allowed
    assert rbac.check(objs, CONTROLLER, "update", "customresourcedefinitions.apiextensions.k8s.io", None,
                      "applications.argoproj.io").allowed
    assert not rbac.check(objs, CONTROLLER, "update", "customresourcedefinitions.apiextensions.k8s.io", None,
                          "certificates.cert-manager.io").allowed
    assert not rbac.check(objs, CONTROLLER, "patch", "deployments.apps", "kube-system").allowed


def test_controller_not_self_managed_says_what_stops(tmp_path):
    # Argo CD's own Application (an app of apps deploying Argo CD into argocd) in the snapshot
    docs = [d for f in sorted(Path(SNAPSHOT).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    docs.append({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "argocd", "namespace": NS},
                 "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
                          "source": {"repoURL": "https://github.com/argoproj/argo-cd", "path": "manifests"}}})
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "install.yaml").write_text(yaml.safe_dump_all(docs))
    p = build_plan(Request(profiles=("argocd-controller-namespaces",), stack_file=None, sets=("namespaces=[apps]",),
                           snapshot=str(snap), state_dir=str(tmp_path / "state")))
    assert not rbac.check(after_state(p), CONTROLLER, "patch", "deployments.apps", NS).allowed
    finding = {f.id: f for f in p.plan.findings if f.profile == "argocd-controller-namespaces"}["self-management"]
    assert not finding.passed and finding.severity is Severity.WARNING
    assert "Application argocd/argocd deploys into Argo CD's namespace argocd" in finding.message
    # without such an Application the check passes and still names the consequence
    p = plan_for(tmp_path / "none", stack=None, profiles=("argocd-controller-namespaces",), sets=("namespaces=[apps]",))
    finding = {f.id: f for f in p.plan.findings if f.profile == "argocd-controller-namespaces"}["self-management"]
    assert finding.passed and "would stop syncing unless selfManaged" in finding.message


def _with_applications(tmp_path, *apps: dict) -> str:
    docs = [d for f in sorted(Path(SNAPSHOT).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    snap = tmp_path / "snapshot-apps"
    snap.mkdir()
    (snap / "install.yaml").write_text(yaml.safe_dump_all([*docs, *apps]))
    return str(snap)


def _application(name: str, dest: dict, resources: list[dict] | None = None) -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name, "namespace": NS},
            "spec": {"project": "default", "destination": dest, "source": {"repoURL": "file:///git", "path": "."}},
            **({"status": {"resources": resources}} if resources is not None else {})}


IN_CLUSTER = "https://kubernetes.default.svc"


def _findings(p) -> dict:
    return {f.id: f for f in p.plan.findings if f.profile == "argocd-controller-namespaces"}


def test_applications_in_chosen_namespaces_keep_syncing_the_others_are_named(tmp_path):
    snap = _with_applications(
        tmp_path,
        _application("web", {"server": IN_CLUSTER, "namespace": "apps"},
                     [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "apps", "name": "web"},
                      {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress", "namespace": "apps", "name": "web"}]),
        _application("other", {"name": "in-cluster", "namespace": "team-b"}),
        _application("crds", {"server": IN_CLUSTER, "namespace": "apps"},
                     [{"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition", "name": "x.y.z"}]),
        _application("remote", {"server": "https://prod.example:6443", "namespace": "kube-system"}, []))
    p = build_plan(Request(profiles=("argocd-controller-namespaces",), stack_file=None, sets=("namespaces=[apps]",),
                           snapshot=snap, state_dir=str(tmp_path / "state")))
    f = _findings(p)
    assert f["application-syncs"].passed, f["application-syncs"].message
    assert f["application-syncs"].message.startswith("2 synced kind(s)")
    outside = f["applications-outside"]
    assert not outside.passed and outside.severity is Severity.WARNING
    # the unsynced Application by its destination, the CRD as cluster-scoped; the remote cluster is not ours
    assert "argocd/other (in team-b)" in outside.message
    assert "argocd/crds (CustomResourceDefinition x.y.z (cluster-scoped))" in outside.message
    assert "remote" not in outside.message and "argocd/web" not in outside.message


def test_a_role_without_create_in_a_chosen_namespace_fails_the_plan(tmp_path):
    snap = _with_applications(tmp_path, _application(
        "web", {"server": IN_CLUSTER, "namespace": "apps"},
        [{"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "apps", "name": "web"},
         {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy", "namespace": "apps", "name": "web"}]))
    broken = REPO / "tests" / "integration" / "profiles" / "argocd-controller-namespaces-no-create.yaml"
    p = build_plan(Request(profiles=(str(broken),), stack_file=None, sets=("namespaces=[apps]",),
                           snapshot=snap, state_dir=str(tmp_path / "state")))
    f = {x.id: x for x in p.plan.findings if x.profile == "argocd-controller-namespaces-no-create"}["application-syncs"]
    assert not f.passed and f.severity is Severity.ERROR
    assert "argocd/web (ConfigMap: create configmaps in apps)" in f.message
    assert "create networking.k8s.io/networkpolicies in apps" in f.message
    assert "patch" not in f.message  # the broken Role keeps every other verb
    assert f in p.plan.failed_findings


def test_argo_cds_own_crds_are_not_named_when_it_manages_itself(tmp_path):
    crd = {"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition"}
    snap = _with_applications(tmp_path, _application(
        "argocd", {"server": IN_CLUSTER, "namespace": NS},
        [{**crd, "name": "applications.argoproj.io"}, {**crd, "name": "certificates.cert-manager.io"},
         {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": NS, "name": "argocd-server"}]))
    p = build_plan(Request(profiles=("argocd-controller-namespaces",), stack_file=None,
                           sets=("namespaces=[guestbook]", "selfManaged=true"), snapshot=snap,
                           state_dir=str(tmp_path / "state")))
    f = _findings(p)
    assert f["application-syncs"].passed, f["application-syncs"].message  # its namespace is kept
    # the CRD the profile keeps patch on is not named; another cluster-scoped one is
    assert "applications.argoproj.io" not in f["applications-outside"].message
    assert "certificates.cert-manager.io (cluster-scoped)" in f["applications-outside"].message


@pytest.mark.parametrize(("kind", "resource"), [("ConfigMap", "configmaps"), ("Ingress", "ingresses"),
                                                ("Endpoints", "endpoints"),
                                                ("NetworkPolicy", "networkpolicies"), ("Deployment", "deployments")])
def test_kind_to_resource_follows_the_kubernetes_guess(kind, resource):
    from harden.checks import _resource_of
    assert _resource_of(kind) == resource


def test_the_example_stack_on_the_ha_layout(tmp_path):
    p = build_plan(Request(profiles=(), stack_file=STACK, sets=(), snapshot=ha_snapshot(tmp_path),
                           state_dir=str(tmp_path / "state")))
    failed = [f"{f.profile}/{f.id}: {f.message}" for f in p.plan.failed_findings if f.kind != "need"]
    assert not failed, failed
    broken = [f"{n['component']}/{n['need']}" for n in p.plan.impact["needs"] if n["status"] == "broken"]
    assert not broken, broken
    # two-replica server and repo-server: nothing rolls for the default TLS minimum there either
    for name in ("argocd-server", "argocd-repo-server"):
        c = changes(p).get(key("Deployment", name))
        assert c is None or not any("harden.dev/tls" in f.path for f in c.fields), name


def test_a_namespace_missing_from_the_snapshot_is_a_warning_naming_it(tmp_path):
    # examples/snapshot-argocd holds guestbook and team-a, not `apps`: the snapshot may just not
    # hold it, so the plan warns (against a cluster it refuses: tests/integration/test_engine.py).
    p = plan_for(tmp_path, stack=None, profiles=("argocd-controller-namespaces",), sets=("namespaces=[apps, guestbook]",))
    f = {x.id: x for x in p.plan.findings}
    assert not f["namespace-apps"].passed and f["namespace-apps"].severity is Severity.WARNING
    assert "namespace 'apps' is not in the snapshot" in f["namespace-apps"].message
    assert "Role.rbac.authorization.k8s.io apps/harden-argocd-application-controller" in f["namespace-apps"].message
    assert "namespace-guestbook" not in f
