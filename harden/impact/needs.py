"""needs: does every component of an install still get what it needs, on the state after apply?

The needs are data (harden/needs/*.yaml, each fact citing its upstream source). This module
evaluates them with the same evaluators `harden can-i` and `harden reach` use, on the state before
and the state a plan would produce:

- kept:    held before and holds after;
- broken:  held before and not after: the plan would break the install, and fails;
- unmet:   did not hold before either: reported, not blamed on the plan;
- unknown: cannot be decided from what was observed (e.g. no API server address in a snapshot).

A need is evaluated for the component as the graph found it: its real service account, its real
pod labels, the ConfigMap its args name. Nothing is looked up by a guessed name.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..graph import Component, ComponentSpec, Install, flag_values, resolve_name
from ..model import Action, Change, Obj, ResourceKey
from . import netpol, rbac
from .selectors import selector_matches

# CoreDNS / kube-dns pods: label k8s-app=kube-dns in kube-system
# (kubernetes/kubernetes cluster/addons/dns/coredns/coredns.yaml.base: Deployment coredns,
# template labels k8s-app: kube-dns; Service kube-dns selector k8s-app: kube-dns).
DNS = netpol.PodEndpoint("kube-system", (("k8s-app", "kube-dns"),))
# The API server's address is the `kubernetes` Service's EndpointSlice in `default`
# (kubernetes/kubernetes pkg/controlplane/reconcilers: the apiserver maintains it itself).
API_SLICE_LABEL = "kubernetes.io/service-name"


class NeedStatus(str, enum.Enum):
    KEPT = "kept"
    BROKEN = "broken"
    UNMET = "unmet"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class NeedResult:
    install: str
    component: str
    need: str
    kind: str          # permission | flow | object | probe
    status: NeedStatus
    message: str
    why: str = ""
    source: str = ""
    broken_by: tuple[str, ...] = ()  # changes that break it (addresses)

    def to_dict(self) -> dict[str, Any]:
        return {"install": self.install, "component": self.component, "need": self.need, "kind": self.kind,
                "status": self.status.value, "message": self.message, "why": self.why, "source": self.source,
                "brokenBy": list(self.broken_by)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NeedResult:
        return cls(d["install"], d["component"], d["need"], d["kind"], NeedStatus(d["status"]), d["message"],
                   d.get("why", ""), d.get("source", ""), tuple(d.get("brokenBy", ())))


class State:
    """One state (before or after) with its evaluators built once (the security impact reuses them)."""

    def __init__(self, objects: Sequence[Obj]) -> None:
        self.objects = objects
        self.by_key = {ResourceKey.of(o): o for o in objects}
        # (kind, namespace, name) of every object: an `object` need is one lookup, not a scan, per
        # subject (workflow pods are a subject in every workflow namespace).
        self.names = {(k.kind, k.namespace, k.name) for k in self.by_key}
        self.rbac = rbac.RbacIndex.from_objects(objects)
        self.net = netpol.NetworkModel.from_objects(objects)
        self._api_server: tuple[list[netpol.CidrEndpoint], list[tuple[int, str]]] | None = None

    def api_server(self) -> tuple[list[netpol.CidrEndpoint], list[tuple[int, str]]]:
        """The API server's addresses and ports, found once per state (asked once per subject)."""
        if self._api_server is None:
            self._api_server = self._find_api_server()
        return self._api_server

    def _find_api_server(self) -> tuple[list[netpol.CidrEndpoint], list[tuple[int, str]]]:
        for key, obj in self.by_key.items():
            if key.kind == "EndpointSlice" and key.namespace == "default" and \
                    ((obj.get("metadata") or {}).get("labels") or {}).get(API_SLICE_LABEL) == "kubernetes":
                addrs = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
                ports = [(int(p["port"]), str(p.get("protocol") or "TCP")) for p in obj.get("ports") or []
                         if p.get("port")]
                nets = []
                for a in addrs:
                    try:
                        nets.append(netpol.CidrEndpoint(ipaddress.ip_network(a)))
                    except ValueError:
                        continue
                return nets, ports
        return [], []


def _workflow_defaults(state: State, install: Install) -> dict[str, Any]:
    """workflowDefaults of the controller's ConfigMap (YAML inside the ConfigMap), or {}."""
    ctl = next((c for c in install.components if c.config_map), None)
    obj = state.by_key.get(ctl.config_map) if ctl and ctl.config_map else None
    text = ((obj or {}).get("data") or {}).get("workflowDefaults")
    try:
        data = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _mapping(value: Any) -> dict[str, Any]:
    """A YAML value someone wrote by hand is a mapping only if it really is one."""
    return value if isinstance(value, dict) else {}


def _defaults_spec(state: State, install: Install) -> dict[str, Any]:
    """workflowDefaults.spec, or {} when the ConfigMap holds none (or something that is no mapping)."""
    return _mapping(_workflow_defaults(state, install).get("spec"))


@dataclass(frozen=True)
class _Subject:
    """Who a need is evaluated for: a found component, or pods a controller creates."""

    name: str
    namespace: str
    service_account: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[netpol.ContainerPort, ...]
    component: Component | None

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def endpoint(self) -> netpol.PodEndpoint:
        return netpol.PodEndpoint(self.namespace, self.labels, self.ports)


def _subjects(spec: ComponentSpec, install: Install, state: State,
              namespaces: Sequence[str] = ()) -> list[_Subject]:
    comp = install.component(spec.name)
    if comp is not None:
        group = next((g for g in state.net.groups if g.namespace == comp.namespace
                      and g.name == f"{comp.workload.kind.lower()}/{comp.workload.name}"), None)
        return [_Subject(spec.name, comp.namespace, comp.service_account, comp.pod_labels,
                         group.ports if group else (), comp)]
    if spec.pods is None or not install.component(str(spec.pods.get("createdBy", ""))):
        return []
    spec_defaults = _defaults_spec(state, install)
    workflow_sa = str(spec_defaults.get("serviceAccountName") or "default")
    executor_sa = str((_mapping(spec_defaults.get("executor")).get("serviceAccountName")) or workflow_sa)
    sa = executor_sa if spec.pods.get("serviceAccount") == "executor" else workflow_sa
    labels = tuple(sorted((str(k), str(v)) for k, v in (spec.pods.get("labels") or {}).items()))
    # Pods a controller creates run wherever workflows run: each namespace is checked.
    return [_Subject(spec.name, ns, sa, labels, (), None) for ns in (namespaces or [install.namespace])]


def _names(install: Install, state: State, subject: _Subject) -> dict[str, str]:
    spec_defaults = _defaults_spec(state, install)
    workflow_sa = str(spec_defaults.get("serviceAccountName") or "default")
    return {"serviceAccount": subject.service_account, "workflowServiceAccount": workflow_sa,
            "executorServiceAccount": str((_mapping(spec_defaults.get("executor")).get("serviceAccountName"))
                                          or workflow_sa),
            "namespace": install.namespace}


def _config(state: State, install: Install, key: str) -> Any:
    """A key of the controller's ConfigMap in this state, parsed (its values are YAML documents)."""
    ctl = next((c for c in install.components if c.config_map), None)
    obj = state.by_key.get(ctl.config_map) if ctl and ctl.config_map else None
    text = ((obj or {}).get("data") or {}).get(key)
    try:
        return yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return None


def _args_in(state: State, comp: Component | None) -> tuple[str, ...]:
    """The component's container args as they are in this state (a plan may change them)."""
    obj = state.by_key.get(comp.workload) if comp else None
    if obj is None:
        return comp.args if comp else ()
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return tuple(str(x) for c in pod.get("containers") or [] for x in (c.get("command") or []) + (c.get("args") or []))


# Conditions a need may carry (`when:`), each read from the state being evaluated.
def _condition(when: str | None, install: Install, state: State, subject: _Subject | None = None) -> bool | None:
    if not when:
        return True
    spec_defaults = _defaults_spec(state, install)
    if when == "automountDisabled":
        return spec_defaults.get("automountServiceAccountToken") is False
    if when == "executorServiceAccountSet":
        return bool(_mapping(spec_defaults.get("executor")).get("serviceAccountName"))
    if when == "persistence":
        # argoproj/argo-workflows config/config.go: the `persistence` key of the controller ConfigMap.
        return bool(_config(state, install, "persistence"))
    server = install.component("argo-server")
    if when == "ssoAuthMode":
        # argoproj/argo-workflows cmd/argo/commands/server.go: --auth-mode is repeatable; `sso` enables SSO.
        return "sso" in flag_values(_args_in(state, server), "--auth-mode")
    if when == "ssoRbac":
        sso = _config(state, install, "sso")
        return "sso" in flag_values(_args_in(state, server), "--auth-mode") and \
            isinstance(sso, dict) and bool((sso.get("rbac") or {}).get("enabled"))
    if when in ("repoServerStrictTLS", "dexServerStrictTLS"):
        return _strict_tls(when, install, state, subject)
    if when.startswith("flag:"):
        name, _, value = when[5:].partition("=")
        return any(value in flag_values(_args_in(state, c), name) for c in install.components)
    return None


# Argo CD reads a component's flags from argocd-cmd-params-cm through env vars, keyed by component
# (argoproj/argo-cd manifests/install.yaml: env ARGOCD_*_REPO_SERVER_STRICT_TLS valueFrom
# configMapKeyRef argocd-cmd-params-cm, keys controller.repo.server.strict.tls,
# server.repo.server.strict.tls, applicationsetcontroller.repo.server.strict.tls,
# server.dex.server.strict.tls).
_PARAM_PREFIX = {"application-controller": "controller", "server": "server",
                 "applicationset-controller": "applicationsetcontroller"}


def _strict_tls(when: str, install: Install, state: State, subject: _Subject | None) -> bool:
    comp = subject.component if subject else None
    if comp is None:
        return False
    flag, key = (("--repo-server-strict-tls", "repo.server.strict.tls") if when == "repoServerStrictTLS"
                 else ("--dex-server-strict-tls", "dex.server.strict.tls"))
    if flag in _args_in(state, comp) or f"{flag}=true" in _args_in(state, comp):
        return True
    params = state.by_key.get(ResourceKey("", "ConfigMap", install.namespace, "argocd-cmd-params-cm")) or {}
    prefix = _PARAM_PREFIX.get(comp.name)
    return bool(prefix) and str((params.get("data") or {}).get(f"{prefix}.{key}") or "").lower() == "true"


def _managed_namespace(install: Install, subject: _Subject, before: State) -> str | None:
    """Where a `managed`-scope permission is checked: cluster-wide (None) when the component is bound
    cluster-wide before the plan (a cluster install), else its own namespace (a namespaced install)."""
    comp = subject.component
    if comp is not None and any(k.kind == "ClusterRoleBinding" for k in comp.bindings):
        return None
    ctl = next((c for c in install.components if c.flag("--namespaced")), None)
    if ctl is not None:
        return install.namespace
    if comp is None:
        return subject.namespace
    return install.namespace


def _parameter(parameters: Mapping[str, Any], name: str) -> Any:
    """A destination or source a profile parameter names: `NAME` itself (a peer), or the pair
    `NAMENamespace` + `NAMELabels` (as metrics-ingress names Prometheus)."""
    if parameters.get(name):
        return parameters[name]
    if parameters.get(f"{name}Namespace"):
        return {"namespace": parameters[f"{name}Namespace"], "podSelector": parameters.get(f"{name}Labels") or {}}
    return None


def _flow_target(need: Mapping[str, Any], install: Install, state: State,
                 parameters: Mapping[str, Any]) -> tuple[list[netpol.Endpoint], str | None, str]:
    """(destinations, port text or None, why-unknown)."""
    to = str(need.get("to", ""))
    port = need.get("port")
    if to == "dns":
        return [DNS], str(port or "53/UDP"), ""
    if to == "apiserver":
        nets, ports = state.api_server()
        if not nets:
            return [], None, "the API server's address is not in the observed state (no `kubernetes` EndpointSlice)"
        p = ports[0] if ports else (443, "TCP")
        return list(nets), str(port or f"{p[0]}/{p[1]}"), ""
    if to.startswith("component:"):
        other = install.component(to.split(":", 1)[1])
        if other is None:
            return [], None, f"{to.split(':', 1)[1]} is not part of this install"
        group = next((g for g in state.net.groups if g.namespace == other.namespace
                      and g.name == f"{other.workload.kind.lower()}/{other.workload.name}"), None)
        other_ports = group.ports if group else ()
        return [netpol.PodEndpoint(other.namespace, other.pod_labels, other_ports)], str(port) if port else None, ""
    if to.startswith("parameter:"):
        value = _parameter(parameters, to.split(":", 1)[1])
        if not value:
            return [], None, f"no selected profile names the {to.split(':', 1)[1]}"
        if isinstance(value, dict) and "cidr" in value:
            return [netpol.CidrEndpoint(ipaddress.ip_network(value["cidr"], strict=False))], \
                str(port or parameters.get(f"{to.split(':', 1)[1]}Port") or "") or None, ""
        if isinstance(value, dict) and "podSelector" in value:
            ns = value.get("namespace") or install.namespace
            labels = tuple(sorted((str(k), str(v)) for k, v in (value.get("podSelector") or {}).items()))
            return [netpol.PodEndpoint(ns, labels)], str(port) if port else None, ""
        return [], None, f"cannot read the {to.split(':', 1)[1]} parameter as a destination"
    return [], None, f"unknown flow destination {to!r}"


def _holds(need: Mapping[str, Any], install: Install, subject: _Subject, state: State, before: State,
           parameters: Mapping[str, Any]) -> tuple[bool | None, str]:
    """(True/False, message) or (None, why it cannot be decided)."""
    sub: Mapping[str, Any] = next((need[k] for k in ("permission", "flow", "object", "probe") if k in need), {})
    applies = _condition(sub.get("when") or need.get("when"), install, state, subject)
    if applies is None:
        return None, f"unknown condition {sub.get('when') or need.get('when')!r}"
    if not applies:
        return True, f"not needed here ({sub.get('when') or need.get('when')} does not hold)"
    if "permission" in need:
        p = need["permission"]
        scope = p.get("scope", "own")
        ns = None if scope == "cluster" else (
            _managed_namespace(install, subject, before) if scope == "managed" else subject.namespace)
        decision = rbac.check(state.rbac, subject.subject, p["verb"], p["resource"], ns, p.get("resourceName"))
        where = f" in {ns}" if ns else " cluster-wide"
        may = "may" if decision.allowed else "may not"
        return decision.allowed, f"{subject.subject} {may} {p['verb']} {p['resource']}{where}"
    if "flow" in need and "from" in need["flow"]:
        return _ingress(need["flow"], install, subject, state, parameters)
    if "flow" in need:
        f = need["flow"]
        dsts, port, unknown = _flow_target(f, install, state, parameters)
        if not dsts:
            return None, unknown
        text_port = port or "any port"
        for dst in dsts:
            try:
                if port is None:
                    decision_ok = any(state.net.evaluate(subject.endpoint, dst, p, proto).allowed
                                      for p, proto in _ports_of(dst, state))
                    reason = ""
                else:
                    number, proto = netpol.parse_port(port)
                    d = state.net.evaluate(subject.endpoint, dst, number, proto)
                    decision_ok, reason = d.allowed, d.reason
            except ValueError as exc:
                return None, str(exc)
            dst_key = dst.key
            if not decision_ok:
                return False, f"{subject.name} cannot reach {f.get('to')} ({dst_key}) on {text_port}" + (
                    f": {reason}" if reason else "")
        return True, f"{subject.name} reaches {f.get('to')} on {text_port}"
    if "object" in need:
        o = need["object"]
        comp = subject.component
        names = _names(install, state, subject)
        name = resolve_name(str(o["name"]), comp, names) if comp else _resolve_plain(str(o["name"]), names)
        ns = "" if o.get("namespace") == "cluster" else subject.namespace
        exists = (o["kind"], ns, name) in state.names
        return exists, f"{o['kind']} {ns + '/' if ns else ''}{name} {'exists' if exists else 'does not exist'}"
    if "probe" in need:
        return _probe(need["probe"], subject, state)
    return None, "need of an unknown kind"


def _ingress(f: Mapping[str, Any], install: Install, subject: _Subject, state: State,
             parameters: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Another party reaches this component (e.g. Prometheus scraping its metrics port)."""
    src_spec = str(f["from"])
    if src_spec.startswith("component:"):
        other = install.component(src_spec.split(":", 1)[1])
        if other is None:
            return None, f"{src_spec} is not part of this install"
        src: netpol.Endpoint = netpol.PodEndpoint(other.namespace, other.pod_labels)
    elif src_spec.startswith("parameter:"):
        value = _parameter(parameters, src_spec.split(":", 1)[1])
        if not isinstance(value, dict):
            return None, f"no selected profile names the {src_spec.split(':', 1)[1]}"
        if "cidr" in value:
            src = netpol.CidrEndpoint(ipaddress.ip_network(value["cidr"], strict=False))
        else:
            src = netpol.PodEndpoint(value.get("namespace") or install.namespace,
                                     tuple(sorted((value.get("podSelector") or {}).items())))
    else:
        return None, f"unknown flow source {src_spec!r}"
    try:
        number, proto = netpol.parse_port(str(f.get("port")))
        d = state.net.evaluate(src, subject.endpoint, number, proto)
    except ValueError as exc:
        return None, str(exc)
    return d.allowed, f"{src.key} {'reaches' if d.allowed else 'cannot reach'} {subject.name} on {f.get('port')}" + (
        "" if d.allowed else f": {d.reason}")


def _resolve_plain(template: str, names: Mapping[str, str]) -> str:
    for k, v in names.items():
        template = template.replace("${" + k + "}", v)
    return template


def _ports_of(dst: netpol.Endpoint, state: State) -> list[tuple[int, netpol.Protocol]]:
    if dst.ports:
        return [(p.port, p.protocol) for p in dst.ports]
    return list(state.net.candidate_ports())


def _probe(p: Mapping[str, Any], subject: _Subject, state: State) -> tuple[bool | None, str]:
    comp = subject.component
    if comp is None:
        return None, "no workload"
    obj = state.by_key.get(comp.workload)
    if obj is None:
        return False, f"{comp.workload.display()} is gone"
    containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])
    container = next((c for c in containers if c.get("name") == p.get("container")),
                     containers[0] if containers else None)
    if container is None:
        return None, "no container"
    args = [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]
    flag = str(p["flag"])
    value: str | None = None
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            value = a[len(flag) + 1:]
        elif a == flag:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else "true"
    on = (str(p.get("default", False)).lower() == "true") if value is None else value.lower() in ("true", "1")
    want = str(p.get("schemeWhenOn" if on else "schemeWhenOff") or "").upper()
    probe = container.get("readinessProbe") or {}
    http = probe.get("httpGet")
    if not http:
        return True, f"{comp.name} has no HTTP readiness probe"
    scheme = str(http.get("scheme") or "HTTP").upper()
    ok = not want or scheme == want
    return ok, (f"{comp.name} runs {flag}={'true' if on else 'false'} and its readiness probe uses {scheme}"
                + ("" if ok else f"; it must use {want}, or the pods never become Ready"))


def _culprits(need: Mapping[str, Any], before: _Subject, after: _Subject, changes: Iterable[Change],
              b: State, a: State) -> tuple[str, ...]:
    """The changes that break a need: those touching what the need depends on, for this subject."""
    def related(c: Change) -> bool:
        obj = a.by_key.get(c.key) or b.by_key.get(c.key) or {}
        if "flow" in need:
            if c.key.kind != "NetworkPolicy":
                return False
            selector = (obj.get("spec") or {}).get("podSelector") or {}
            return c.key.namespace == after.namespace and selector_matches(selector, dict(after.labels))
        if before.service_account != after.service_account and c.key.kind in ("ConfigMap", "ServiceAccount"):
            return True  # the pods run as another service account now
        if "permission" in need:
            if c.key.kind in ("RoleBinding", "ClusterRoleBinding"):
                return any(s.get("kind") == "ServiceAccount" and s.get("name") == after.service_account
                           for s in (obj.get("subjects") or []))
            if c.key.kind in ("Role", "ClusterRole"):
                roles = {ResourceKey(c.key.group, c.key.kind, c.key.namespace, c.key.name)}
                return any(k.kind in ("RoleBinding", "ClusterRoleBinding") and _role_of(o) in roles
                           and any(s.get("name") == after.service_account for s in o.get("subjects") or [])
                           for state in (a, b) for k, o in state.by_key.items())
            return False
        if "object" in need:
            return c.key.kind in ("ConfigMap", need["object"].get("kind"))
        return c.key == (after.component.workload if after.component else None)

    return tuple(f"{c.key.display()} ({', '.join(c.profiles)})" for c in changes
                 if c.action is not Action.NOOP and related(c))


def _role_of(binding: Obj) -> ResourceKey | None:
    ref = binding.get("roleRef") or {}
    ns = "" if ref.get("kind") == "ClusterRole" else (binding.get("metadata") or {}).get("namespace", "")
    return ResourceKey("rbac.authorization.k8s.io", str(ref.get("kind", "")), ns, str(ref.get("name", "")))


def evaluate(installs: Sequence[tuple[Install, Sequence[ComponentSpec]]], before: Sequence[Obj],
             after: Sequence[Obj], changes: Sequence[Change], parameters: Mapping[str, Any],
             states: tuple[State, State] | None = None) -> list[NeedResult]:
    """Every need of every component found in `installs`, before and after the plan (`states`: the
    two states already indexed, if the caller has them)."""
    b, a = states or (State(before), State(after))
    out: list[NeedResult] = []
    for install, specs in installs:
        for spec in specs:
            namespaces = [str(n) for n in parameters.get("workflowNamespaces") or []]
            # Both sides list the same namespaces; a component missing on one side yields nothing there.
            for subject, after_subject in zip(_subjects(spec, install, b, namespaces),
                                              _subjects(spec, install, a, namespaces), strict=False):
                for need in spec.needs:
                    held, _ = _holds(need, install, subject, b, b, parameters)
                    holds, message = _holds(need, install, after_subject, a, b, parameters)
                    kind = next((k for k in ("permission", "flow", "object", "probe") if k in need), "?")
                    if holds is None:
                        status = NeedStatus.UNKNOWN
                    elif holds:
                        status = NeedStatus.KEPT
                    elif held is False:
                        status = NeedStatus.UNMET
                    else:
                        status = NeedStatus.BROKEN
                    culprits = (_culprits(need, subject, after_subject, changes, b, a)
                                if status is NeedStatus.BROKEN else ())
                    out.append(NeedResult(install.name, spec.name, str(need.get("id")), kind, status, message,
                                          str(need.get("why", "")), str(need.get("source", "")), culprits))
    return out
