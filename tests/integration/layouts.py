"""Independent checks of component needs on a live install, for tests/integration/test_layouts.py.

harden's own evaluator (harden/impact/needs.py) predicts whether each need in harden/needs/*.yaml
holds. These helpers answer the same question another way, from what the API server says:

* a component is found from the live Deployments/StatefulSets by the labels the need file lists,
  and its service account is read from the live pod template, never from harden's graph;
* `permission` needs are asked of the API server's authorizer by SubjectAccessReview;
* `flow` needs are evaluated by the reachability model (harden.impact.netpol, a pure library)
  over the objects read back from the API server, not over harden's predicted state;
* `object` needs are GETs of the named object;
* `probe` needs compare the live container's TLS flag with its readiness probe's scheme.

Only the need *specs* (what to check, and its `when`) are shared with harden: they are the data
under test's contract, and the check would be meaningless against a different list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubeutil import REPO

from harden.impact import netpol

NEEDS_DIR = REPO / "harden" / "needs"
STACKS = Path(__file__).resolve().parent / "stacks"

# kubernetes/kubernetes cluster/addons/dns/coredns/coredns.yaml.base: the DNS pods are labelled
# k8s-app: kube-dns in kube-system.
DNS = netpol.PodEndpoint("kube-system", (("k8s-app", "kube-dns"),))

# argoproj/argo-workflows workflow/common/common.go (ConfigMapName): the controller's ConfigMap
# when --configmap is not given.
DEFAULT_WF_CONFIGMAP = "workflow-controller-configmap"

# argoproj/argo-cd manifests/install.yaml: each component reads its *.repo.server.strict.tls and
# server.dex.server.strict.tls keys from argocd-cmd-params-cm (env valueFrom configMapKeyRef).
_ARGOCD_PARAM_PREFIX = {"application-controller": "controller", "server": "server",
                        "applicationset-controller": "applicationsetcontroller"}

_STRIP_META = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")
# kube-controller-manager bumps this on every template change, hardened or restored.
_REVISION = "deployment.kubernetes.io/revision"


def to_dict(api_client: client.ApiClient, obj: Any) -> dict:
    return api_client.sanitize_for_serialization(obj)


def product_spec(product: str) -> list[dict]:
    return yaml.safe_load((NEEDS_DIR / f"{product}.yaml").read_text())["components"]


def stack_profiles(stack: Path) -> list[dict]:
    return yaml.safe_load(stack.read_text())["profiles"]


# -- the live install -------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """One live component: its workload as the API server returns it."""

    name: str
    namespace: str
    workload: dict
    service_account: str
    pod_labels: tuple[tuple[str, str], ...]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def args(self) -> list[str]:
        spec = self.workload["spec"]["template"]["spec"]
        return [str(a) for c in spec.get("containers") or [] for a in (c.get("command") or []) + (c.get("args") or [])]


def flag_values(args: Iterable[str], name: str) -> list[str]:
    args = list(args)
    out = []
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            out.append(a.split("=", 1)[1])
        elif a == name and i + 1 < len(args) and not args[i + 1].startswith("-"):
            out.append(args[i + 1])
        elif a == name:
            out.append("true")
    return out


def live_workloads(api_client: client.ApiClient, namespace: str) -> list[dict]:
    apps = client.AppsV1Api(api_client)
    out = []
    for kind, items in (("Deployment", apps.list_namespaced_deployment(namespace).items),
                        ("StatefulSet", apps.list_namespaced_stateful_set(namespace).items)):
        for item in items:
            d = to_dict(api_client, item)
            d["kind"] = kind
            out.append(d)
    return out


def find_components(api_client: client.ApiClient, product: str, namespace: str,
                    release: str | None = None) -> dict[str, Live]:
    workloads = live_workloads(api_client, namespace)
    found: dict[str, Live] = {}
    for spec in product_spec(product):
        wl = spec.get("workload")
        if not wl:
            continue
        hits = []
        for w in workloads:
            # Upstream labels the pod template only; the chart labels both.
            labels = {**(w["spec"]["template"]["metadata"].get("labels") or {}), **(w["metadata"].get("labels") or {})}
            if w["kind"] != wl["kind"]:
                continue
            if release and labels.get("app.kubernetes.io/instance") not in (None, release):
                continue
            if any(all(labels.get(k) == v for k, v in m["labels"].items()) for m in wl["match"]):
                hits.append(w)
        if len(hits) > 1:
            raise AssertionError(f"{spec['name']}: several workloads in {namespace}: "
                                 f"{[h['metadata']['name'] for h in hits]}")
        if hits:
            w = hits[0]
            tpl = w["spec"]["template"]
            found[spec["name"]] = Live(spec["name"], namespace, w,
                                       tpl["spec"].get("serviceAccountName") or "default",
                                       tuple(sorted((tpl["metadata"].get("labels") or {}).items())))
    return found


@dataclass
class Install:
    """What the checks need to know of one install, all read live."""

    product: str
    namespace: str
    cluster: bool                      # cluster install: `managed` permissions are cluster-wide
    components: dict[str, Live]
    config: dict[str, Any] = field(default_factory=dict)   # the controller ConfigMap's data, parsed
    cmd_params: dict[str, str] = field(default_factory=dict)

    def component_args(self, name: str) -> list[str]:
        comp = self.components.get(name)
        return comp.args if comp else []

    @property
    def configmap_name(self) -> str:
        values = flag_values(self.component_args("workflow-controller"), "--configmap")
        return values[-1] if values else DEFAULT_WF_CONFIGMAP

    @property
    def workflow_defaults(self) -> dict:
        spec = (self.config.get("workflowDefaults") or {})
        return (spec.get("spec") or {}) if isinstance(spec, dict) else {}

    @property
    def workflow_service_account(self) -> str:
        # argoproj/argo-workflows workflow/controller/operator.go: a workflow without
        # serviceAccountName runs its pods as the namespace's `default` account.
        return str(self.workflow_defaults.get("serviceAccountName") or "default")

    @property
    def executor_service_account(self) -> str:
        return str((self.workflow_defaults.get("executor") or {}).get("serviceAccountName")
                   or self.workflow_service_account)


def read_install(api_client: client.ApiClient, product: str, namespace: str, *, cluster: bool,
                 release: str | None = None) -> Install:
    comps = find_components(api_client, product, namespace, release)
    inst = Install(product, namespace, cluster, comps)
    core = client.CoreV1Api(api_client)
    if product == "argo-workflows":
        try:
            data = core.read_namespaced_config_map(inst.configmap_name, namespace).data or {}
        except ApiException as e:
            if e.status != 404:
                raise
            data = {}
        # argoproj/argo-workflows config/config.go: each key of the ConfigMap is a YAML document.
        inst.config = {k: yaml.safe_load(v) for k, v in data.items()}
    else:
        try:
            inst.cmd_params = core.read_namespaced_config_map("argocd-cmd-params-cm", namespace).data or {}
        except ApiException as e:
            if e.status != 404:
                raise
    return inst


# -- `when` ------------------------------------------------------------------------------------


def applies(when: str | None, inst: Install, comp: str) -> bool:
    if not when:
        return True
    server_args = inst.component_args("argo-server")
    if when == "persistence":
        return bool(inst.config.get("persistence"))
    if when == "automountDisabled":
        return inst.workflow_defaults.get("automountServiceAccountToken") is False
    if when == "executorServiceAccountSet":
        return bool((inst.workflow_defaults.get("executor") or {}).get("serviceAccountName"))
    if when == "ssoAuthMode":
        # argoproj/argo-workflows cmd/argo/commands/server.go: --auth-mode is repeatable.
        return "sso" in flag_values(server_args, "--auth-mode")
    if when == "ssoRbac":
        sso = inst.config.get("sso") or {}
        return "sso" in flag_values(server_args, "--auth-mode") and bool((sso.get("rbac") or {}).get("enabled"))
    if when in ("repoServerStrictTLS", "dexServerStrictTLS"):
        flag, key = (("--repo-server-strict-tls", "repo.server.strict.tls") if when == "repoServerStrictTLS"
                     else ("--dex-server-strict-tls", "dex.server.strict.tls"))
        if "true" in flag_values(inst.component_args(comp), flag):
            return True
        prefix = _ARGOCD_PARAM_PREFIX.get(comp)
        return bool(prefix) and str(inst.cmd_params.get(f"{prefix}.{key}", "")).lower() == "true"
    if when.startswith("flag:"):
        name, _, value = when[5:].partition("=")
        return any(value in flag_values(c.args, name) for c in inst.components.values())
    raise AssertionError(f"the layout checks do not know the condition {when!r}; teach layouts.applies")


# -- subjects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    component: str
    namespace: str
    service_account: str
    labels: tuple[tuple[str, str], ...]
    live: Live | None

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def subjects(inst: Install) -> list[tuple[dict, Subject]]:
    """(component spec, subject) for every component present: workloads, and the pods a present
    controller creates (run, here, in the install namespace as the workflow service account)."""
    out = []
    for spec in product_spec(inst.product):
        if spec["name"] in inst.components:
            live = inst.components[spec["name"]]
            out.append((spec, Subject(spec["name"], inst.namespace, live.service_account, live.pod_labels, live)))
        elif spec.get("pods") and spec["pods"].get("createdBy") in inst.components:
            sa = (inst.executor_service_account if spec["pods"].get("serviceAccount") == "executor"
                  else inst.workflow_service_account)
            labels = tuple(sorted((str(k), str(v)) for k, v in (spec["pods"].get("labels") or {}).items()))
            out.append((spec, Subject(spec["name"], inst.namespace, sa, labels, None)))
    return out


# -- permission needs: SubjectAccessReview ---------------------------------------------------------


def parse_resource(text: str) -> tuple[str, str, str | None]:
    """`workflowtasksets.argoproj.io/status` -> (workflowtasksets, argoproj.io, status)."""
    res, _, sub = text.partition("/")
    name, _, group = res.partition(".")
    return name, group, sub or None


def sar(api_client: client.ApiClient, user: str, verb: str, resource: str, namespace: str | None,
        groups: Iterable[str] = ()) -> bool:
    """May `user` (in `groups`, and the groups the API server adds) do this? Asked of the authorizer."""
    name, group, sub = parse_resource(resource)
    all_groups = [*groups, "system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        all_groups += ["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}"]
    attrs = client.V1ResourceAttributes(verb=verb, resource=name, group=group, subresource=sub, namespace=namespace)
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=all_groups, resource_attributes=attrs))
    return bool(client.AuthorizationV1Api(api_client).create_subject_access_review(review).status.allowed)


# -- flow needs: reachability over live objects --------------------------------------------------


def live_objects(api_client: client.ApiClient) -> list[dict]:
    """Everything the reachability model reads, straight from the API server, all namespaces."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    net, disc = client.NetworkingV1Api(api_client), client.DiscoveryV1Api(api_client)
    out: list[dict] = []
    for kind, items in (("NetworkPolicy", net.list_network_policy_for_all_namespaces().items),
                        ("Namespace", core.list_namespace().items),
                        ("Deployment", apps.list_deployment_for_all_namespaces().items),
                        ("StatefulSet", apps.list_stateful_set_for_all_namespaces().items),
                        ("DaemonSet", apps.list_daemon_set_for_all_namespaces().items)):
        for item in items:
            d = to_dict(api_client, item)
            d["kind"] = kind
            d.setdefault("apiVersion", "networking.k8s.io/v1" if kind == "NetworkPolicy" else "v1")
            out.append(d)
    slices = disc.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=kubernetes")
    for s in slices.items:
        d = to_dict(api_client, s)
        d["kind"] = "EndpointSlice"
        out.append(d)
    return out


def api_server(objects: list[dict]) -> tuple[list[netpol.CidrEndpoint], str]:
    # kubernetes/kubernetes pkg/controlplane/reconcilers: the API server keeps the `kubernetes`
    # Service's EndpointSlice in `default` pointed at its own addresses.
    for s in objects:
        if s["kind"] == "EndpointSlice":
            addrs = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
            port = (s.get("ports") or [{}])[0]
            return ([netpol.CidrEndpoint(ipaddress.ip_network(a)) for a in addrs],
                    f"{port.get('port', 443)}/{port.get('protocol') or 'TCP'}")
    return [], ""


def stack_parameter(profiles: list[dict], name: str) -> tuple[Any, Any]:
    """(value, port) of a profile parameter naming a peer: NAME itself, or NAMENamespace (+ NAMELabels)."""
    for p in profiles:
        w = p.get("with") or {}
        if w.get(name):
            return w[name], w.get("port") or w.get(f"{name}Port")
        if w.get(f"{name}Namespace"):
            return {"namespace": w[f"{name}Namespace"], "podSelector": w.get(f"{name}Labels") or {}}, None
    return None, None


def peer_endpoint(value: Any, default_ns: str) -> netpol.Endpoint | None:
    if isinstance(value, dict) and "cidr" in value:
        return netpol.CidrEndpoint(ipaddress.ip_network(value["cidr"], strict=False))
    if isinstance(value, dict):
        labels = tuple(sorted((str(k), str(v)) for k, v in (value.get("podSelector") or {}).items()))
        return netpol.PodEndpoint(value.get("namespace") or default_ns, labels)
    return None


def reachable(model: netpol.NetworkModel, src: netpol.Endpoint, dst: netpol.Endpoint, port: Any) -> bool:
    number, protocol = netpol.parse_port(str(port))
    return model.evaluate(src, dst, number, protocol).allowed


class Network:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.objects = live_objects(api_client)
        self.model = netpol.NetworkModel.from_objects(self.objects)
        self.api, self.api_port = api_server(self.objects)

    def endpoint(self, subject: Subject) -> netpol.PodEndpoint:
        if subject.live is not None:
            w = subject.live.workload
            group = next((g for g in self.model.groups if g.namespace == subject.namespace
                          and g.name == f"{w['kind'].lower()}/{w['metadata']['name']}"), None)
            if group is not None:
                return netpol.PodEndpoint(subject.namespace, subject.labels, group.ports)
        return netpol.PodEndpoint(subject.namespace, subject.labels)

    def flow(self, f: dict, subject: Subject, inst: Install, profiles: list[dict]) -> bool | None:
        """True/False, or None when the stack names no peer for a `parameter:` end."""
        me = self.endpoint(subject)
        port = f.get("port")
        if "from" in f:
            value, pport = stack_parameter(profiles, str(f["from"]).split(":", 1)[1])
            src = peer_endpoint(value, inst.namespace)
            if src is None or not (port or pport):
                return None
            return reachable(self.model, src, me, port or pport)
        to = str(f["to"])
        if to == "apiserver":
            assert self.api, "no `kubernetes` EndpointSlice in default"
            return all(reachable(self.model, me, a, port or self.api_port) for a in self.api)
        if to == "dns":
            return reachable(self.model, me, DNS, port or "53/UDP")
        if to.startswith("component:"):
            other = inst.components.get(to.split(":", 1)[1])
            if other is None or not port:
                return None
            dst = self.endpoint(Subject(other.name, other.namespace, other.service_account, other.pod_labels, other))
            return reachable(self.model, me, dst, port)
        value, pport = stack_parameter(profiles, to.split(":", 1)[1])
        dst = peer_endpoint(value, inst.namespace)
        if dst is None or not (port or pport):
            return None
        return reachable(self.model, me, dst, port or pport)


# -- object needs ---------------------------------------------------------------------------------


def object_name(template: str, inst: Install, subject: Subject) -> str:
    if template.startswith("${arg:"):
        flag, _, default = template[len("${arg:"):-1].partition("|")
        comp = subject.live
        values = flag_values(comp.args if comp else [], flag)
        return values[-1] if values else default
    return (template.replace("${executorServiceAccount}", inst.executor_service_account)
            .replace("${workflowServiceAccount}", inst.workflow_service_account)
            .replace("${serviceAccount}", subject.service_account)
            .replace("${namespace}", inst.namespace))


def object_exists(api_client: client.ApiClient, kind: str, name: str, namespace: str) -> bool:
    core = client.CoreV1Api(api_client)
    read = {"ConfigMap": core.read_namespaced_config_map, "Secret": core.read_namespaced_secret,
            "ServiceAccount": core.read_namespaced_service_account, "Service": core.read_namespaced_service}[kind]
    try:
        read(name, namespace)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


# -- probe needs -------------------------------------------------------------------------------------


def probe_matches(p: dict, live: Live) -> bool:
    """The container's readiness probe scheme agrees with the flag that switches TLS on, as the live
    Deployment has them (kubernetes/kubernetes pkg/apis/core/types.go: HTTPGetAction.Scheme defaults
    to HTTP)."""
    container = next((c for c in live.workload["spec"]["template"]["spec"]["containers"]
                      if c["name"] == p["container"]), None)
    if container is None:
        return False
    values = flag_values((container.get("command") or []) + (container.get("args") or []), p["flag"])
    on = (values[-1].lower() == "true") if values else bool(p.get("default"))
    http_get = (container.get("readinessProbe") or {}).get("httpGet")
    if http_get is None:
        return True
    return (http_get.get("scheme") or "HTTP") == (p["schemeWhenOn"] if on else p["schemeWhenOff"])


# -- all needs --------------------------------------------------------------------------------------


def check_needs(api_client: client.ApiClient, inst: Install, profiles: list[dict]) -> dict[str, bool]:
    """{"component/need": holds} for every need that applies and can be decided on this install."""
    network = Network(api_client)
    out: dict[str, bool] = {}
    for spec, subject in subjects(inst):
        for need in spec.get("needs") or []:
            body = next((need[k] for k in ("permission", "flow", "object", "probe") if k in need), None)
            if body is None:
                continue
            if not applies(body.get("when") or need.get("when"), inst, spec["name"]):
                continue
            key = f"{spec['name']}/{need['id']}"
            if "permission" in need:
                ns = inst.namespace if body["scope"] == "own" or not inst.cluster or subject.live is None else None
                out[key] = sar(api_client, subject.user, body["verb"], body["resource"], ns)
            elif "probe" in need:
                if subject.live is not None:
                    out[key] = probe_matches(body, subject.live)
            elif "flow" in need:
                held = network.flow(body, subject, inst, profiles)
                if held is not None:
                    out[key] = held
            else:
                name = object_name(body["name"], inst, subject)
                out[key] = object_exists(api_client, body["kind"], name, inst.namespace)
    return out


def broken(before: dict[str, bool], after: dict[str, bool]) -> list[str]:
    """Needs that held before and do not after (a need that never held is not hardening's doing)."""
    return sorted(k for k, held in before.items() if held and not after.get(k, True))


# -- snapshots for "destroy restores" ---------------------------------------------------------------


def _clean(obj: dict) -> dict:
    obj = dict(obj)
    obj.pop("status", None)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _STRIP_META}
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k != _REVISION}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    obj["metadata"] = meta
    return obj


def snapshot(api_client: client.ApiClient, namespaces: Iterable[str]) -> dict[str, dict]:
    """The objects harden may patch or create around an install, keyed kind/namespace/name:
    workloads, ConfigMaps, ServiceAccounts, Services, NetworkPolicies, RBAC of the namespaces, every
    non-system ClusterRole(Binding), and Secrets by name and type only (never their values)."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    rbac, net = client.RbacAuthorizationV1Api(api_client), client.NetworkingV1Api(api_client)
    out: dict[str, dict] = {}

    def put(kind: str, items: Iterable[Any]) -> None:
        for item in items:
            d = _clean(to_dict(api_client, item))
            out[f"{kind}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"] = d

    for ns in namespaces:
        put("Deployment", apps.list_namespaced_deployment(ns).items)
        put("StatefulSet", apps.list_namespaced_stateful_set(ns).items)
        put("ConfigMap", core.list_namespaced_config_map(ns).items)
        put("ServiceAccount", core.list_namespaced_service_account(ns).items)
        put("Service", core.list_namespaced_service(ns).items)
        put("NetworkPolicy", net.list_namespaced_network_policy(ns).items)
        put("Role", rbac.list_namespaced_role(ns).items)
        put("RoleBinding", rbac.list_namespaced_role_binding(ns).items)
        for s in core.list_namespaced_secret(ns).items:
            out[f"Secret/{ns}/{s.metadata.name}"] = {"type": s.type}
    put("ClusterRole", [r for r in rbac.list_cluster_role().items if not r.metadata.name.startswith("system:")])
    put("ClusterRoleBinding", [r for r in rbac.list_cluster_role_binding().items
                               if not r.metadata.name.startswith("system:")])
    return out


def install_snapshot(api_client: client.ApiClient, namespace: str) -> dict[str, dict]:
    """snapshot() of one install: its namespace, and of the cluster-scoped RBAC only the
    ClusterRoleBindings naming its service accounts and the ClusterRoles they grant."""
    snap = snapshot(api_client, [namespace])
    bindings = {k: v for k, v in snap.items() if k.startswith("ClusterRoleBinding/")
                and any(s.get("namespace") == namespace for s in v.get("subjects") or [])}
    roles = {f"ClusterRole//{b['roleRef']['name']}" for b in bindings.values() if b["roleRef"]["kind"] == "ClusterRole"}
    return {k: v for k, v in snap.items()
            if k.split("/")[1] == namespace or k in bindings or k in roles}


def differences(before: dict[str, dict], after: dict[str, dict], ignore_prefixes: Iterable[str] = ()) -> list[str]:
    keys = [k for k in sorted(set(before) | set(after)) if not any(k.startswith(p) for p in ignore_prefixes)]
    out = []
    for k in keys:
        if k not in after:
            out.append(f"{k}: gone")
        elif k not in before:
            out.append(f"{k}: left behind")
        elif before[k] != after[k]:
            out.append(f"{k}: changed")
    return out
