"""What each profile claims to secure, checked on the live cluster, for tests/integration/test_layouts.py.

One place, as data: CLAIMS maps a profile name to a function that asks the API server (or the
reachability model over the objects read back from it, tests/integration/layouts.py) whether the
profile's security claim holds on one install. Each function returns {claim: holds}; the layout
test evaluates it before apply and after, and requires every claim to hold after apply and at least
one of them not to hold before (a claim that held anyway proves nothing about the profile), unless
HELD_BEFORE names why the install already satisfies it.

The claims restate the profiles' headers and the README's profiles table in terms a reviewer would
test by hand: "argo-server cannot create workflows", "a pod in another namespace cannot reach the
controller". They use neither harden's plan nor its evaluators' predictions, only the same need
specs and the live objects.

REFUSES_ALONE names the profiles harden must refuse to apply alone (exit 1), with what the refusal
must name; every other profile must apply alone on every layout of its product, with changes to
make (plan exit 2) unless UNCHANGED says why the layout already has them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import layouts as L
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from harden.impact import netpol
from harden.load import builtin_profile_names, load_profile

# Pods of a namespace no profile names: "any other namespace" for reachability claims.
OUTSIDER = netpol.PodEndpoint("lay-outsider", (("app", "outsider"),))
# An address no profile opens (RFC 5737 TEST-NET-2): "anywhere else" for egress claims.
ELSEWHERE = netpol.CidrEndpoint(ipaddress.ip_network("198.51.100.7/32"))


@dataclass
class Ctx:
    """One install as the API server shows it now, and the profile's parameters on this layout."""

    api: client.ApiClient
    inst: L.Install
    cluster: bool
    values: dict[str, Any]            # the stack's parameters, then the profile's `with:`
    defaults: dict[str, Any]          # the profile's declared defaults
    profiles: list[dict] = field(default_factory=list)  # the stack entry, for peer parameters

    def param(self, name: str) -> Any:
        return self.values[name] if name in self.values else self.defaults.get(name)

    @cached_property
    def network(self) -> L.Network:
        return L.Network(self.api)

    def user(self, component: str) -> str:
        return self.inst.components[component].user

    def can(self, user: str, verb: str, resource: str, namespace: str | None = None,
            groups: tuple[str, ...] = ()) -> bool:
        """SubjectAccessReview in `namespace` (default: the install's)."""
        return L.sar(self.api, user, verb, resource, namespace or self.inst.namespace, groups)

    def can_anywhere(self, user: str, verb: str, resource: str) -> bool:
        """In the install's namespace, or cluster-wide for a cluster install."""
        return self.can(user, verb, resource) or (self.cluster and L.sar(self.api, user, verb, resource, None))

    def pod(self, component: str) -> netpol.PodEndpoint:
        """The pods of a component: a live workload's, or those a controller creates."""
        subject = next(s for spec, s in L.subjects(self.inst) if spec["name"] == component)
        return self.network.endpoint(subject)

    def reach(self, src: netpol.Endpoint, dst: netpol.Endpoint, port: int | str) -> bool:
        return L.reachable(self.network.model, src, dst, port)

    def peer(self, name: str) -> netpol.Endpoint:
        value, _ = L.stack_parameter(self.profiles, name)
        ep = L.peer_endpoint(value, self.inst.namespace)
        assert ep is not None, f"the stack names no peer {name!r}"
        return ep

    def config_map(self, name: str) -> dict[str, str]:
        try:
            return client.CoreV1Api(self.api).read_namespaced_config_map(name, self.inst.namespace).data or {}
        except ApiException as e:
            if e.status == 404:
                return {}
            raise


def _sa_user(ctx: Ctx, name: str, namespace: str | None = None) -> str:
    return f"system:serviceaccount:{namespace or ctx.inst.namespace}:{name}"


def _workflow_namespaces(ctx: Ctx) -> list[str]:
    """Where workflows run: the profile's `workflowNamespaces`, or the install's namespace."""
    return list(ctx.param("workflowNamespaces") or []) or [ctx.inst.namespace]


def _in(ns: str, claim: str) -> str:
    return f"{claim} (in {ns})"


Claim = Callable[[Ctx], dict[str, bool]]


# -- Argo Workflows ------------------------------------------------------------------------------


def read_only_server(ctx: Ctx) -> dict[str, bool]:
    server = ctx.user("argo-server")
    return {"argo-server cannot create workflows": not ctx.can_anywhere(server, "create", "workflows.argoproj.io"),
            "argo-server cannot delete pods": not ctx.can_anywhere(server, "delete", "pods"),
            "argo-server cannot exec into pods": not ctx.can_anywhere(server, "create", "pods/exec"),
            "argo-server still lists workflows": ctx.can(server, "list", "workflows.argoproj.io")}


def namespace_isolation(ctx: Ctx) -> dict[str, bool]:
    controller, pod = ctx.pod("workflow-controller"), ctx.pod("workflow-pod")
    out = {"another namespace cannot reach the controller's metrics": not ctx.reach(OUTSIDER, controller, 9090),
           "the controller cannot reach the internet on 443": not ctx.reach(controller, ELSEWHERE, 443),
           "argo-server is reachable on 2746": ctx.reach(OUTSIDER, ctx.pod("argo-server"), 2746)}
    for ns in _workflow_namespaces(ctx):
        workflow = netpol.PodEndpoint(ns, pod.labels)
        out |= {_in(ns, "another namespace cannot reach workflow pods"): not ctx.reach(OUTSIDER, workflow, 8080),
                _in(ns, "workflow pods cannot reach another namespace"): not ctx.reach(workflow, OUTSIDER, 8080),
                _in(ns, "workflow pods cannot reach the internet on 443"): not ctx.reach(workflow, ELSEWHERE, 443)}
    return out


def metrics_ingress(ctx: Ctx) -> dict[str, bool]:
    controller, port = ctx.pod("workflow-controller"), ctx.param("metricsPort")
    prometheus = netpol.PodEndpoint(ctx.param("prometheusNamespace"), tuple(sorted(
        (ctx.param("prometheusLabels") or {}).items())))
    return {"Prometheus scrapes the controller": ctx.reach(prometheus, controller, port),
            "another namespace cannot scrape the controller": not ctx.reach(OUTSIDER, controller, port)}


def _egress_to(ctx: Ctx, peer: str) -> dict[str, bool]:
    dst, port = ctx.peer(peer), ctx.param("port")
    out = {}
    for comp in ("workflow-controller", "argo-server"):
        src = ctx.pod(comp)
        out[f"{comp} reaches the {peer}"] = ctx.reach(src, dst, port)
        out[f"{comp} reaches nothing else on {port}"] = not ctx.reach(src, ELSEWHERE, port)
    return out


def db_egress(ctx: Ctx) -> dict[str, bool]:
    return _egress_to(ctx, "database")


def artifact_egress(ctx: Ctx) -> dict[str, bool]:
    out = _egress_to(ctx, "repository")
    workflow = ctx.pod("workflow-pod")
    out["workflow pods reach the repository"] = ctx.reach(workflow, ctx.peer("repository"), ctx.param("port"))
    return out


def server_auth_tls(ctx: Ctx) -> dict[str, bool]:
    # argoproj/argo-workflows cmd/argo/commands/server.go: --auth-mode is repeatable; `server`
    # mode serves every request with the server's own service account.
    modes = L.flag_values(ctx.inst.component_args("argo-server"), "--auth-mode")
    return {"argo-server does not run in server auth mode": "server" not in modes,
            "argo-server runs in client auth mode": "client" in modes}


def workflow_pod_defaults(ctx: Ctx) -> dict[str, bool]:
    executor = ctx.inst.executor_service_account
    return {"workflow pods mount no token by default": ctx.inst.workflow_defaults.get("automountServiceAccountToken")
            is False,
            "workflow pods run as non-root": (ctx.inst.workflow_defaults.get("securityContext") or {})
            .get("runAsNonRoot") is True,
            "the executor has its own service account": executor == ctx.param("executorServiceAccount"),
            **{claim: holds for ns in _workflow_namespaces(ctx) for claim, holds in {
                _in(ns, "the executor's token Secret exists"):
                    L.object_exists(ctx.api, "Secret", f"{executor}.service-account-token", ns),
                _in(ns, "the executor writes task results"):
                    ctx.can(_sa_user(ctx, executor, ns), "create", "workflowtaskresults.argoproj.io", ns)}.items()}}


def workflow_service_account(ctx: Ctx) -> dict[str, bool]:
    sa = ctx.inst.workflow_service_account
    out = {"workflows run as the dedicated service account": sa == ctx.param("workflowServiceAccount")}
    for ns in _workflow_namespaces(ctx):
        user = _sa_user(ctx, sa, ns)
        out |= {_in(ns, "it exists"): L.object_exists(ctx.api, "ServiceAccount", sa, ns),
                _in(ns, "it writes task results"): ctx.can(user, "create", "workflowtaskresults.argoproj.io", ns),
                _in(ns, "it cannot read Secrets"): not ctx.can(user, "get", "secrets", ns)}
    return out


def workflow_restrictions(ctx: Ctx) -> dict[str, bool]:
    restrictions = ctx.inst.config.get("workflowRestrictions") or {}
    return {"templateReferencing is enforced": restrictions.get("templateReferencing") == ctx.param("mode")}


def _group_claims(ctx: Ctx, may: tuple[str, ...], may_not: tuple[str, ...]) -> dict[str, bool]:
    group = ctx.param("group")
    assert group, "the stack binds no group: give the profile `group` in the layout's stack"
    user = f"lay-member-of-{group}"
    out = {f"group {group} may {v} workflows": ctx.can(user, v, "workflows.argoproj.io", groups=(group,))
           for v in may}
    out |= {f"group {group} may not {v} workflows": not ctx.can(user, v, "workflows.argoproj.io", groups=(group,))
            for v in may_not}
    out[f"group {group} may not read Secrets"] = not ctx.can(user, "get", "secrets", groups=(group,))
    return out


def ui_read_only_role(ctx: Ctx) -> dict[str, bool]:
    return _group_claims(ctx, ("get", "list"), ("create", "delete"))


def workflow_submitter_role(ctx: Ctx) -> dict[str, bool]:
    return _group_claims(ctx, ("create", "list"), ("delete", "update"))


def workflow_namespace_rbac(ctx: Ctx) -> dict[str, bool]:
    user = _sa_user(ctx, ctx.param("serviceAccount"))
    return {"the workflow manager creates workflows": ctx.can(user, "create", "workflows.argoproj.io"),
            "it creates cron workflows": ctx.can(user, "create", "cronworkflows.argoproj.io"),
            "it cannot read Secrets": not ctx.can(user, "get", "secrets"),
            "it cannot create pods": not ctx.can(user, "create", "pods")}


# -- Argo CD ---------------------------------------------------------------------------------------


def argocd_tls(ctx: Ctx) -> dict[str, bool]:
    params, want = ctx.config_map("argocd-cmd-params-cm"), str(ctx.param("minVersion"))
    return {f"argocd-server's TLS minimum is {want}": params.get("server.tls.minversion") == want,
            f"argocd-repo-server's TLS minimum is {want}": params.get("reposerver.tls.minversion") == want}


def argocd_repo_server_no_k8s(ctx: Ctx) -> dict[str, bool]:
    repo = ctx.inst.components["repo-server"]
    sa = client.CoreV1Api(ctx.api).read_namespaced_service_account(repo.service_account, ctx.inst.namespace)
    return {"its service account mounts no token": sa.automount_service_account_token is False,
            "its pods mount no token": repo.workload["spec"]["template"]["spec"].get("automountServiceAccountToken")
            is False,
            "it cannot read Secrets": not ctx.can_anywhere(repo.user, "get", "secrets"),
            "it cannot list pods": not ctx.can_anywhere(repo.user, "list", "pods")}


# argoproj/argo-cd manifests/install.yaml (tests/fixtures/argo-cd/install.yaml): each component's
# metrics port, from its containerPorts (notifications-controller declares none: from its Service
# argocd-notifications-controller-metrics, targetPort 9001).
ARGOCD_METRICS = {"application-controller": 8082, "applicationset-controller": 8080, "dex": 5558,
                  "notifications-controller": 9001, "repo-server": 8084, "server": 8083}
# manifests/install.yaml: argocd-applicationset-controller's `webhook` containerPort.
APPSET_WEBHOOK = 7000


def argocd_network(ctx: Ctx) -> dict[str, bool]:
    repo = ctx.pod("repo-server")
    redis = ctx.pod("redis-ha-haproxy" if "redis-ha-haproxy" in ctx.inst.components else "redis")
    out = {"another namespace cannot reach repo-server": not ctx.reach(OUTSIDER, repo, 8081),
           "another namespace cannot reach redis": not ctx.reach(OUTSIDER, redis, 6379),
           "repo-server cannot reach the API server": not any(ctx.reach(repo, a, ctx.network.api_port)
                                                             for a in ctx.network.api),
           "repo-server cannot reach another namespace": not ctx.reach(repo, OUTSIDER, 8080),
           "argocd-server is reachable on 8080": ctx.reach(OUTSIDER, ctx.pod("server"), 8080)}
    metrics = netpol.PodEndpoint(ctx.param("metricsNamespace"), ())
    for comp, port in ARGOCD_METRICS.items():
        if comp not in ctx.inst.components:
            continue
        out[f"another namespace cannot scrape {comp} ({port})"] = not ctx.reach(OUTSIDER, ctx.pod(comp), port)
        if ctx.param("allowMetrics"):
            out[f"{ctx.param('metricsNamespace')} scrapes {comp} ({port})"] = ctx.reach(metrics, ctx.pod(comp), port)
    if not ctx.param("applicationSetWebhook"):
        out["another namespace cannot reach the ApplicationSet webhook"] = not ctx.reach(
            OUTSIDER, ctx.pod("applicationset-controller"), APPSET_WEBHOOK)
    return out


def argocd_controller_namespaces(ctx: Ctx) -> dict[str, bool]:
    controller = ctx.user("application-controller")
    chosen = list(ctx.param("namespaces") or [])
    out = {f"the controller deploys into {ns}": ctx.can(controller, "create", "deployments.apps", ns) for ns in chosen}
    out["the controller cannot write elsewhere"] = not ctx.can(controller, "create", "deployments.apps", "default")
    out["the controller still reads the cluster"] = L.sar(ctx.api, controller, "list", "deployments.apps", None)
    if ctx.param("restrictServer") is not False:
        out["argocd-server cannot delete elsewhere"] = not ctx.can(ctx.user("server"), "delete", "pods", "default")
    return out


def argocd_admin_disabled(ctx: Ctx) -> dict[str, bool]:
    cm = ctx.config_map("argocd-cm")
    return {"admin is disabled": cm.get("admin.enabled") == "false",
            "the local account still logs in": "login" in str(cm.get("accounts.lay-ops", "")).split(",")}


def argocd_rbac_default(ctx: Ctx) -> dict[str, bool]:
    return {f"policy.default is {ctx.param('defaultRole')}":
            ctx.config_map("argocd-rbac-cm").get("policy.default") == ctx.param("defaultRole")}


def argocd_config_management(ctx: Ctx) -> dict[str, bool]:
    # argoproj/argo-cd util/settings/settings.go: kustomize.enable, helm.enable, jsonnet.enable.
    cm = ctx.config_map("argocd-cm")
    off = [t for t in ("kustomize", "helm", "jsonnet") if ctx.param(t) is False]
    assert off, "the stack turns no tool off: the profile would do nothing"
    return {f"{t} is disabled": cm.get(f"{t}.enable") == "false" for t in off}


def _filter(entry: dict) -> tuple[frozenset[str], ...]:
    # argoproj/argo-cd util/settings/filtered_resource.go FilteredResource: apiGroups, kinds,
    # clusters; an omitted field matches everything, so absent and empty compare equal here.
    return tuple(frozenset(entry.get(k) or ()) for k in ("apiGroups", "kinds", "clusters"))


def argocd_resource_exclusions(ctx: Ctx) -> dict[str, bool]:
    # util/settings/settings.go reads `resource.exclusions` of argocd-cm as a YAML list.
    present = {_filter(e) for e in yaml.safe_load(ctx.config_map("argocd-cm").get("resource.exclusions") or "[]") or []}
    return {f"{'/'.join(sorted(_filter(e)[1]))} excluded": _filter(e) in present for e in ctx.param("exclusions")}


CLAIMS: dict[str, Claim] = {
    "read-only-server": read_only_server,
    "namespace-isolation": namespace_isolation,
    "metrics-ingress": metrics_ingress,
    "db-egress": db_egress,
    "artifact-egress": artifact_egress,
    "server-auth-tls": server_auth_tls,
    "workflow-pod-defaults": workflow_pod_defaults,
    "workflow-service-account": workflow_service_account,
    "workflow-restrictions": workflow_restrictions,
    "ui-read-only-role": ui_read_only_role,
    "workflow-submitter-role": workflow_submitter_role,
    "workflow-namespace-rbac": workflow_namespace_rbac,
    "argocd-tls": argocd_tls,
    "argocd-repo-server-no-k8s": argocd_repo_server_no_k8s,
    "argocd-network": argocd_network,
    "argocd-controller-namespaces": argocd_controller_namespaces,
    "argocd-admin-disabled": argocd_admin_disabled,
    "argocd-rbac-default": argocd_rbac_default,
    "argocd-config-management": argocd_config_management,
    "argocd-resource-exclusions": argocd_resource_exclusions,
}

# Claims an install already meets before the profile (the profile then pins them, and a later
# change shows as drift): (profile, layout id) -> why.
HELD_BEFORE: dict[tuple[str, str], str] = {
    ("server-auth-tls", "helm"): "the chart runs argo-server with --auth-mode=client (server.authModes)",
}

# Profiles with nothing to change on a layout (plan exit 0): (profile, layout id) -> why. The claim
# must hold all the same.
UNCHANGED: dict[tuple[str, str], str] = {
    ("server-auth-tls", "helm"): "client mode already; the chart's explicit --secure=false is left as found, "
                                 "with a warning, because its readiness probe is HTTP",
}

# Profiles harden must refuse alone, on every layout of their product: name -> what the refusal names.
# The allow-profiles open egress on policies that select argo-server and the controller; alone,
# those policies isolate the pods' egress with no DNS or API server rule, and harden refuses them,
# naming the profile that keeps both (harden/engine.py need_findings).
REFUSES_ALONE: dict[str, str] = {
    "db-egress": r"db-egress/requires-namespace-isolation",
    "artifact-egress": r"artifact-egress/requires-namespace-isolation",
    # The upstream install configures neither SSO nor a local account: disabling admin would lock
    # everyone out, and the profile's check says so.
    "argocd-admin-disabled": r"argocd-admin-disabled/someone-can-log-in.*no SSO",
}


# What an operator sets up before a profile can apply on the upstream install, which lacks it:
# profile -> {ConfigMap in the install's namespace: {key: value}}. The layout test adds these keys
# (under a field manager of its own) for that profile's "prepared" run, and takes them out after.
# argocd-admin-disabled needs another way in: a local account with the login capability
# (argoproj/argo-cd util/settings/accounts.go parseAccounts: `accounts.NAME` holds its
# capabilities, "apiKey" and/or "login").
PREPARED: dict[str, dict[str, dict[str, str]]] = {
    "argocd-admin-disabled": {"argocd-cm": {"accounts.lay-ops": "login"}},
}


def product_profiles(product: str) -> list[str]:
    """Every built-in profile of a product (profiles/*.yaml), so a new one is tested as it lands."""
    return [n for n in builtin_profile_names() if load_profile(n).data["metadata"].get("product") == product]


def evaluate(api: client.ApiClient, stack: Path, inst: L.Install, cluster: bool) -> dict[str, bool]:
    """{"profile: claim": holds} for every profile of a stack file, with the stack's values."""
    doc = yaml.safe_load(stack.read_text())
    out: dict[str, bool] = {}
    for entry in doc["profiles"]:
        name = entry["profile"]
        check = CLAIMS.get(name)
        if check is None:
            out[f"{name}: has a claim check in tests/integration/claims.py (CLAIMS)"] = False
            continue
        defaults = {k: d.get("default") for k, d in load_profile(name).parameters.items()}
        values = {**(doc.get("parameters") or {}), **(entry.get("with") or {})}
        out |= {f"{name}: {k}": v for k, v in check(Ctx(api, inst, cluster, values, defaults, [entry])).items()}
    return out
