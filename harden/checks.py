"""Checks: recommendations that are verified rather than written, evaluated on the live objects.

A profile names a check and passes it values (`checks: [{id, check, severity, with}]`); each check
is a pure function of (live objects, values) returning whether it passed and a message that says
what was found. Checks never change anything: they report what harden cannot or should not fix
itself (which namespace the controller manages is a deployment decision, not a field to flip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .impact.netpol import NetworkModel
from .impact.rbac import RbacIndex, Request, Subject
from .impact.selectors import selector_matches
from .model import Finding, Obj, Severity

CheckFn = Callable[[list[Obj], dict[str, Any]], tuple[bool, str]]
CHECKS: dict[str, CheckFn] = {}
# The JSON Schema of each check's `with:` values, checked when the profile is loaded, so a check
# is never run with a key missing or of the wrong type.
WITH_SCHEMAS: dict[str, dict] = {}

_STRING = {"type": "string"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}


def _with(required: dict[str, dict], optional: dict[str, dict] | None = None) -> dict:
    return {"type": "object", "additionalProperties": False, "required": sorted(required),
            "properties": {**required, **(optional or {})}}


def _is_true(w: dict[str, Any], key: str) -> bool:
    """A boolean `with:` value, given as a boolean or (from a `${parameter}`) as its text."""
    return w.get(key) is True or str(w.get(key)).lower() == "true"


def check(name: str, with_schema: dict) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = fn
        WITH_SCHEMAS[name] = with_schema
        return fn
    return register


def _flag(args: list[str], flag: str) -> str | bool | None:
    """The value of `--flag v` / `--flag=v`; True for a bare flag; None if absent (last one wins)."""
    found: str | bool | None = None
    for i, tok in enumerate(args):
        if tok == flag:
            found = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else True
        elif tok.startswith(flag + "="):
            found = tok.split("=", 1)[1]
    return found


def _deployments(objs: list[Obj], namespace: str, labels: dict[str, str]) -> list[Obj]:
    return [o for o in objs if o.get("kind") == "Deployment" and o["metadata"].get("namespace") == namespace
            and all(((o["spec"].get("template", {}).get("metadata", {}) or {}).get("labels") or {}).get(k) == v
                    for k, v in labels.items())]


def _args(dep: Obj) -> list[str]:
    containers = dep["spec"]["template"]["spec"].get("containers") or []
    return [a for c in containers for a in (c.get("command") or []) + (c.get("args") or [])]


@check("managedNamespaceSeparate", _with({"namespace": _STRING}, {"controllerLabels": _LABELS}))
def managed_namespace_separate(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """The namespace whose workflows the controller runs must not be the controller's own."""
    ns = w["namespace"]
    deps = _deployments(objs, ns, w.get("controllerLabels") or {"app": "workflow-controller"})
    if not deps:
        return False, f"no workflow-controller Deployment found in {ns}; cannot verify the managed namespace"
    args = _args(deps[0])
    if _flag(args, "--namespaced") in (None, "false"):
        return False, (f"workflow-controller in {ns} is a cluster-scoped install: it runs workflows in every namespace, "
                       f"including its own ({ns}); restrict who may create workflows in {ns}")
    managed = _flag(args, "--managed-namespace")
    managed = managed if isinstance(managed, str) else ns
    if managed == ns:
        return False, (f"workflow-controller manages its own namespace {ns}: users who can create workflows there "
                       f"can modify the controller; set --managed-namespace to another namespace")
    return True, f"workflow-controller in {ns} manages namespace {managed}"


@check("deploymentArgs", _with({"namespace": _STRING, "flag": _STRING},
                            {"labels": _LABELS, "name": _STRING, "forbid": _STRING, "require": _STRING}))
def deployment_args(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """A Deployment's args carry (or lack) a flag value, e.g. argo-server's --auth-mode.

    `name` (from the install graph, `${graph.COMPONENT.name}`) picks the Deployment whatever its
    labels; `labels` is for profiles that have no install to point at."""
    deps = _deployments(objs, w["namespace"], w.get("labels") or {})
    if w.get("name") is not None:
        deps = [d for d in deps if d["metadata"].get("name") == w["name"]]
    if not deps:
        what = f"named {w['name']!r}" if w.get("name") is not None else f"with labels {w.get('labels') or {}}"
        return False, f"no Deployment {what} in {w['namespace'] or '(no install found)'}"
    args = _args(deps[0])
    value = _flag(args, w["flag"])
    name = deps[0]["metadata"]["name"]
    # A flag may repeat (argo-server takes several --auth-mode values): any forbidden one fails.
    every = [args[i + 1] for i, t in enumerate(args[:-1]) if t == w["flag"]] + \
            [t.split("=", 1)[1] for t in args if t.startswith(w["flag"] + "=")]
    if "forbid" in w and w["forbid"] in every:
        return False, f"{name} runs with {w['flag']} {w['forbid']} (all values: {', '.join(every)})"
    if "require" in w and value != w["require"]:
        return False, f"{name} runs with {w['flag']} {value if value is not None else '(unset)'}, want {w['require']}"
    return True, f"{name}: {w['flag']} is {value if value is not None else '(default)'}"


@check("noBindingsFor", _with({"namespace": _STRING, "serviceAccount": _STRING}))
def no_bindings_for(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """No RoleBinding or ClusterRoleBinding names this service account."""
    ns, sa = w["namespace"], w["serviceAccount"]
    found = []
    for o in objs:
        if o.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for s in o.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and s.get("name") == sa and \
                    (s.get("namespace") or o["metadata"].get("namespace")) == ns:
                found.append(f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}".replace(" /", " "))
    if found:
        return False, f"service account {ns}/{sa} is bound by {', '.join(sorted(found))}; remove those bindings"
    return True, f"service account {ns}/{sa} holds no bindings"


@check("ingressClientsKept", _with({"namespace": _STRING, "policy": _STRING, "port": {"type": ["integer", "string"]}},
                                  {"prefix": {"type": "boolean"}}))
def ingress_clients_kept(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """An ingress policy on pods that are not Argo's (an in-cluster database, MinIO) isolates them:
    every client it does not name loses access. Names the workloads that reach those pods on `port`
    without the policy and cannot with it, so the plan says who is cut off. `prefix`: every policy
    whose name starts with `policy` (one per workflow namespace) counts as the policy."""
    ns, name = w["namespace"], w["policy"]

    def is_policy(o: Obj) -> bool:
        found = str(o["metadata"].get("name", ""))
        return o.get("kind") == "NetworkPolicy" and o["metadata"].get("namespace") == ns and \
            (found.startswith(name) if w.get("prefix") else found == name)

    policy = next((o for o in objs if is_policy(o)), None)
    if policy is None:
        return True, f"no NetworkPolicy {ns}/{name}: no pods isolated"
    with_it, without = NetworkModel.from_objects(objs), NetworkModel.from_objects([o for o in objs if not is_policy(o)])
    selector = (policy.get("spec") or {}).get("podSelector") or {}
    isolated = [g for g in with_it.groups if g.namespace == ns and selector_matches(selector, g.label_map)]
    lost = sorted({src.key for dst in isolated for src in with_it.groups if src != dst
                   and without.evaluate(src, dst, w["port"], None).allowed
                   and not with_it.evaluate(src, dst, w["port"], None).allowed})
    where = ", ".join(g.key for g in isolated) or "no observed workload"
    name = f"{name}*" if w.get("prefix") else name
    if lost:
        return False, (f"NetworkPolicy {ns}/{name} admits only Argo to {where}; these lose access on port {w['port']}: "
                       f"{', '.join(lost)} (allow them in a policy of their own, or give the database/repository its own namespace)")
    return True, f"NetworkPolicy {ns}/{name} on {where} cuts off no other observed client on port {w['port']}"


def run_checks(profile: str, checks: tuple[dict, ...], objs: list[Obj], source: str | None) -> list[Finding]:
    out = []
    for c in checks:
        fn = CHECKS.get(c["check"])
        if fn is None:
            out.append(Finding(profile, c["id"], False, Severity.ERROR, f"unknown check {c['check']!r}",
                               source=source, line=c.get("line")))
            continue
        ok, message = fn(objs, c.get("with") or {})
        out.append(Finding(profile, c["id"], ok, Severity(c.get("severity", "warning")), message,
                           source=source, line=c.get("line")))
    return out


# -- Argo CD checks (profiles/argocd-*.yaml) --------------------------------------------------------

_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def _workloads(objs: list[Obj], namespace: str, labels: dict[str, str]) -> list[Obj]:
    """Deployments, StatefulSets and DaemonSets in `namespace` whose pod template carries `labels`."""
    return sorted((o for o in objs if o.get("kind") in _WORKLOAD_KINDS and o["metadata"].get("namespace") == namespace
                   and all(((((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}).get(k) == v
                           for k, v in labels.items())),
                  key=lambda o: (o["kind"], o["metadata"]["name"]))


def _pod_spec(obj: Obj) -> dict:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def _tls_version(text: Any) -> tuple[int, int] | None:
    parts = str(text).strip().split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "1" or int(parts[1]) > 3:
        return None
    return int(parts[0]), int(parts[1])


@check("tlsMinVersionAtLeast", _with({"version": {"type": ["string", "number"]}},
                                   {"atLeast": {"type": ["string", "number"]}}))
def tls_min_version_at_least(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """A TLS version parameter is one Go's crypto/tls knows ("1.0".."1.3") and is at least `atLeast`."""
    have, floor = _tls_version(w["version"]), _tls_version(w.get("atLeast", "1.2"))
    if have is None:
        return False, f"TLS version {w['version']!r} is not one of 1.0, 1.1, 1.2, 1.3"
    if floor is not None and have < floor:
        return False, f"TLS minimum {w['version']} is older than {w.get('atLeast', '1.2')}"
    return True, f"TLS minimum {w['version']} (at least {w.get('atLeast', '1.2')})"


@check("configMapKeysConsumed", _with(
    {"namespace": _STRING, "configMap": _STRING},
    {"consumers": {"type": "array", "items": _with({"key": _STRING}, {"labels": _LABELS})}}))
def config_map_keys_consumed(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """Each consumer workload reads its ConfigMap key (env valueFrom.configMapKeyRef), so setting the
    key reaches the process. `consumers`: [{labels, key}], matched on pod-template labels."""
    ns, cm = w["namespace"], w["configMap"]
    found, missing = [], []
    for c in w.get("consumers") or []:
        workloads = _workloads(objs, ns, c.get("labels") or {})
        what = ",".join(f"{k}={v}" for k, v in (c.get("labels") or {}).items())
        if not workloads:
            missing.append(f"no workload {what} in {ns}")
            continue
        for wl in workloads:
            spec = _pod_spec(wl)
            envs = [e for ct in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                    for e in ct.get("env") or []
                    if (((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name") == cm
                        and e["valueFrom"]["configMapKeyRef"].get("key") == c["key"])]
            if envs:
                found.append(f"{wl['metadata']['name']} reads {c['key']} as {envs[0]['name']}")
            else:
                missing.append(f"{wl['kind']} {wl['metadata']['name']} does not read {cm} key {c['key']}")
    if missing:
        return False, "; ".join(missing) + " (the ConfigMap setting would have no effect there)"
    return True, "; ".join(found) or "no consumers listed"


@check("configMapValuesNot", _with(
    {"namespace": _STRING, "configMap": _STRING},
    {"forbid": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}}))
def config_map_values_not(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """A ConfigMap holds none of the forbidden key=value pairs (values compared case-insensitively)."""
    ns, name = w["namespace"], w["configMap"]
    cms = [o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") == ns
           and o["metadata"].get("name") == name]
    if not cms:
        return False, f"ConfigMap {ns}/{name} not found; cannot verify"
    data = cms[0].get("data") or {}
    bad = [f"{k}={data[k]}" for k, v in (w.get("forbid") or {}).items()
           if k in data and str(data[k]).strip().lower() == str(v).strip().lower()]
    if bad:
        return False, f"ConfigMap {ns}/{name} sets {', '.join(sorted(bad))}"
    return True, f"ConfigMap {ns}/{name} sets none of {', '.join(sorted(w.get('forbid') or {}))}"


@check("noProjectedTokenVolume", _with({"namespace": _STRING}, {"labels": _LABELS, "serviceAccount": _STRING}))
def no_projected_token_volume(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """The workload gets no Kubernetes token another way than the automount (a projected
    serviceAccountToken volume), and runs as the expected service account."""
    ns, labels = w["namespace"], w.get("labels") or {}
    workloads = _workloads(objs, ns, labels)
    what = ",".join(f"{k}={v}" for k, v in labels.items())
    if not workloads:
        return False, f"no workload {what} in {ns}; cannot verify"
    problems = []
    for wl in workloads:
        spec = _pod_spec(wl)
        name = f"{wl['kind']} {wl['metadata']['name']}"
        for vol in spec.get("volumes") or []:
            sources = ((vol.get("projected") or {}).get("sources")) or []
            if any("serviceAccountToken" in (s or {}) for s in sources):
                problems.append(f"{name} mounts a service account token through volume {vol.get('name')}")
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if w.get("serviceAccount") and sa != w["serviceAccount"]:
            problems.append(f"{name} runs as service account {sa}, not {w['serviceAccount']}")
    if problems:
        return False, "; ".join(problems)
    return True, (f"{', '.join(o['metadata']['name'] for o in workloads)} mounts no projected token"
                  + (f" and runs as {w['serviceAccount']}" if w.get("serviceAccount") else ""))


def _config_map_data(objs: list[Obj], ns: str, name: str) -> dict[str, Any] | None:
    """The data of ConfigMap ns/name, or None when there is no such ConfigMap."""
    for o in objs:
        if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") == ns and o["metadata"].get("name") == name:
            return o.get("data") or {}
    return None


@check("rolloutCoversChange", _with({"value": {"type": ["string", "number"]}, "default": {"type": ["string", "number"]}},
                                    {"rollout": {"type": ["boolean", "string"]}}))
def rollout_covers_change(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """A setting the pods read only at start either keeps the component's default (nothing to restart
    for) or comes with a rollout; otherwise the pods keep the default until something restarts them."""
    value, default = str(w["value"]).strip(), str(w["default"]).strip()
    if value == default:
        return True, f"{value} is the default the pods already use; no restart needed"
    if _is_true(w, "rollout"):
        return True, f"{value} differs from the default {default}; the pods are rolled to read it"
    return False, (f"{value} differs from the default {default}, but rollout is off: the running pods keep "
                   f"{default} until they restart (set rollout: true)")


@check("loginRemains", _with({"namespace": _STRING, "configMap": _STRING}))
def login_remains(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """Someone can still log in to Argo CD without the admin account: SSO (`dex.config` or
    `oidc.config`) is configured, or a local account other than admin has the `login` capability
    and is not disabled. Keys as argoproj/argo-cd util/settings/settings.go (settingDexConfigKey,
    settingsOIDCConfigKey) and util/settings/accounts.go (parseAccounts: `accounts.NAME` holds the
    capabilities, `accounts.NAME.enabled` may switch the account off) read them."""
    ns, name = w["namespace"], w["configMap"]
    data = _config_map_data(objs, ns, name)
    if data is None:
        return False, f"ConfigMap {ns}/{name} not found; cannot verify that anyone can log in"
    ways = [k for k in ("dex.config", "oidc.config") if str(data.get(k) or "").strip()]
    for key, value in data.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] != "accounts" or parts[1] == "admin":
            continue
        caps = {c.strip() for c in str(value).split(",")}
        if "login" in caps and str(data.get(f"{key}.enabled", "true")).strip().lower() != "false":
            ways.append(key)
    if ways:
        return True, f"ConfigMap {ns}/{name}: login remains through {', '.join(sorted(ways))}"
    return False, (f"ConfigMap {ns}/{name} configures no SSO (dex.config, oidc.config) and no enabled local "
                   "account with login: with admin disabled nobody could log in")


@check("configMapValueIn", _with({"namespace": _STRING, "configMap": _STRING, "key": _STRING},
                                 {"allowed": {"type": "array", "items": _STRING}}))
def config_map_value_in(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """A ConfigMap key holds one of the allowed values (an absent key counts as empty)."""
    ns, name, key = w["namespace"], w["configMap"], w["key"]
    data = _config_map_data(objs, ns, name)
    if data is None:
        return False, f"ConfigMap {ns}/{name} not found; cannot verify {key}"
    value = str(data.get(key) or "").strip()
    allowed = [str(a) for a in w.get("allowed") or []]
    if value in allowed:
        return True, f"ConfigMap {ns}/{name}: {key} is {value or 'empty'!r}"
    return False, f"ConfigMap {ns}/{name}: {key} is {value!r}, wider than {' or '.join(repr(a) for a in allowed)}"


# -- Where Applications sync (argocd-controller-namespaces) ------------------------------------------
# An Application deploys into the cluster Argo CD runs in when its destination is the in-cluster
# server: argoproj/argo-cd common/common.go (KubernetesInternalAPIServerAddr
# "https://kubernetes.default.svc", InClusterName "in-cluster"); pkg/apis/application/v1alpha1
# types.go (ApplicationDestination server/name/namespace; ApplicationStatus.resources, each with
# group, kind, namespace, name). A sync applies each resource the way `kubectl apply` does (get,
# then create or patch) and prunes with delete: gitops-engine pkg/sync/sync_context.go through
# kube ResourceOperations ApplyResource / DeleteResource.
_IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
_IN_CLUSTER_NAME = "in-cluster"
_SYNC_VERBS = ("get", "create", "patch", "delete")
# Kinds whose resource is not the guessed plural (the API server's discovery, core/v1).
_IRREGULAR = {"Endpoints": "endpoints"}


def _resource_of(kind: str) -> str:
    """The resource (plural) of a kind, as Kubernetes guesses it when discovery is not at hand
    (k8s.io/apimachinery pkg/api/meta restmapper.go UnsafeGuessKindToResource), with the built-in
    exceptions above. A custom kind with an irregular plural is guessed wrong: a Role that lists it
    by its real plural reads as a denial (a false alarm, never a missed one, for `*` Roles)."""
    if kind in _IRREGULAR:
        return _IRREGULAR[kind]
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def _in_cluster_applications(objs: list[Obj]) -> list[Obj]:
    """Applications that deploy into this cluster (a managed cluster's argocd-manager-role is out
    of this cluster's reach)."""
    out = []
    for o in objs:
        if o.get("kind") != "Application" or not str(o.get("apiVersion", "")).startswith("argoproj.io/"):
            continue
        dest = (o.get("spec") or {}).get("destination") or {}
        if dest.get("server") == _IN_CLUSTER_SERVER or dest.get("name") == _IN_CLUSTER_NAME:
            out.append(o)
    return out


def _app_name(o: Obj) -> str:
    return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"


@dataclass(frozen=True, order=True)
class _Synced:
    """One kind an Application deploys, where: from its status, or (kind "") its destination when
    nothing has synced yet. namespace "" with a kind is a cluster-scoped resource, named `name`."""

    app: str
    group: str
    kind: str
    namespace: str
    name: str = ""

    @property
    def where(self) -> str:
        if self.namespace:
            return f"{self.kind + ' ' if self.kind else ''}in {self.namespace}"
        return f"{self.kind} {self.name} (cluster-scoped)" if self.kind else "no destination namespace"

    def request(self, verb: str) -> Request:
        resource = _resource_of(self.kind) if self.kind else "configmaps"
        return Request(verb, self.group, resource, namespace=self.namespace or None,
                       name=None if self.namespace or verb == "create" else self.name or None)


def _synced(objs: list[Obj]) -> list[_Synced]:
    out = set()
    for o in _in_cluster_applications(objs):
        resources = ((o.get("status") or {}).get("resources")) or []
        if not resources:
            dest = (o.get("spec") or {}).get("destination") or {}
            out.add(_Synced(_app_name(o), "", "", str(dest.get("namespace") or "")))
        for r in resources:
            out.add(_Synced(_app_name(o), str(r.get("group") or ""), str(r.get("kind") or ""),
                            str(r.get("namespace") or ""), str(r.get("name") or "")))
    return sorted(out)


def _chosen(w: dict[str, Any]) -> set[str]:
    chosen = {str(n) for n in w.get("namespaces") or []}
    if _is_true(w, "selfManaged"):
        chosen.add(str(w["namespace"]))
    return chosen


@check("selfManagementKept", _with({"namespace": _STRING}, {"selfManaged": {"type": ["boolean", "string"]}}))
def self_management_kept(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """Write access limited to chosen namespaces also cuts off an Application that deploys Argo CD
    itself (into its own namespace, with its CRDs): either the profile keeps that write, or no
    Application deploys there, or the plan says that Application stops."""
    ns = w["namespace"]
    if _is_true(w, "selfManaged"):
        return True, f"the controller keeps write in {ns} and on Argo CD's CRDs: Argo CD can manage itself"
    own = sorted(_app_name(o) for o in objs
                 if o.get("kind") == "Application" and o.get("apiVersion", "").startswith("argoproj.io/")
                 and ((o.get("spec") or {}).get("destination") or {}).get("namespace") == ns)
    if own:
        return False, (f"Application {', '.join(own)} deploys into Argo CD's namespace {ns} and would stop syncing "
                       "(Forbidden); set selfManaged: true if Argo CD manages itself")
    return True, (f"no Application deploys into {ns}; one that managed Argo CD itself (its namespace, its CRDs) "
                  "would stop syncing unless selfManaged is set")


_NAMESPACES = {"type": "array", "items": _STRING}
_SELF_MANAGED = {"selfManaged": {"type": ["boolean", "string"]}}


@check("applicationSyncsKept", _with({"namespace": _STRING, "namespaces": _NAMESPACES, "subject": _STRING},
                                     _SELF_MANAGED))
def application_syncs_kept(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """Every Application that deploys into a chosen namespace can still sync what it deploys there:
    the controller may get, create, patch and delete each kind in its status, in that namespace."""
    chosen = _chosen(w)
    subject = Subject.parse(str(w["subject"]))
    index = RbacIndex.from_objects(objs)
    denied: list[str] = []
    checked = [s for s in _synced(objs) if s.namespace in chosen]
    for s in checked:
        for verb in _SYNC_VERBS:
            request = s.request(verb)
            if not index.authorize(subject.username, subject.groups(), request).allowed:
                denied.append(f"{s.app} ({s.kind or 'its resources'}: {request.text})")
    if denied:
        return False, f"these Applications would stop syncing in a chosen namespace (Forbidden): {'; '.join(denied)}"
    if not checked:
        return True, "no Application deploys into a chosen namespace yet"
    return True, f"{len(checked)} synced kind(s) of Applications in chosen namespaces keep get/create/patch/delete"


@check("applicationsOutsideNamespaces", _with({"namespace": _STRING, "namespaces": _NAMESPACES},
                                              {**_SELF_MANAGED, "subject": _STRING}))
def applications_outside_namespaces(objs: list[Obj], w: dict[str, Any]) -> tuple[bool, str]:
    """Applications that deploy outside the chosen namespaces stop syncing: that is the profile's
    point, and the plan names them so nobody is surprised. A cluster-scoped resource is named unless
    the controller (`subject`) may still patch that object on the predicted RBAC (Argo CD's own
    CRDs under selfManaged)."""
    chosen = _chosen(w)
    subject = Subject.parse(str(w["subject"])) if w.get("subject") else None
    index = RbacIndex.from_objects(objs) if subject else None

    def kept(s: _Synced) -> bool:
        if s.namespace or not s.kind or subject is None or index is None:
            return False
        return index.authorize(subject.username, subject.groups(), s.request("patch")).allowed

    outside = sorted({f"{s.app} ({s.where})" for s in _synced(objs) if s.namespace not in chosen and not kept(s)})
    if outside:
        return False, f"these Applications deploy outside the chosen namespaces and will stop syncing (Forbidden): {'; '.join(outside)}"
    return True, "every Application deploys only into the chosen namespaces"
