"""Every component need catches a change that breaks it.

For each need in harden/needs/*.yaml: an upstream install (the vendored manifests) in which the
need holds, with whatever it depends on switched on (SSO, persistence, strict TLS, a token-less
executor); then a deliberately breaking change of the need's kind (the component's roles emptied,
a default-deny policy, the referenced object deleted, the probe flipped); the need must come out
`broken`, and `kept` when nothing changed. Plain data, no cluster.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harden.graph import find_installs, select_install
from harden.impact import needs
from harden.model import Live, ResourceKey
from harden.needs import component_specs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace", "PriorityClass"}

API_SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "kubernetes"}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}],
             "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}


def _load(path: Path, namespace: str) -> list[dict[str, Any]]:
    out = []
    for d in yaml.safe_load_all(path.read_text()):
        if not d:
            continue
        if d["kind"] not in CLUSTER_SCOPED:
            d["metadata"].setdefault("namespace", namespace)
        for s in d.get("subjects") or []:
            if s.get("kind") == "ServiceAccount":
                s.setdefault("namespace", namespace)
        out.append(d)
    return out


def _secret(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}


def _get(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def _args(workload: dict, container: str) -> list[str]:
    c = next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container)
    return c.setdefault("args", [])


def workflows() -> list[dict[str, Any]]:
    """quick-start-postgres with SSO (and its RBAC), persistence, and token-less workflow pods."""
    objs = _load(FIXTURES / "argo-workflows/quick-start-postgres.yaml", "argo") + [copy.deepcopy(API_SLICE)]
    _args(_get(objs, "Deployment", "argo-server"), "argo-server").extend(["--auth-mode", "sso"])
    cm = _get(objs, "ConfigMap", "workflow-controller-configmap")
    cm["data"]["sso"] = yaml.safe_dump({"rbac": {"enabled": True}})
    cm["data"]["workflowDefaults"] = yaml.safe_dump({"spec": {
        "serviceAccountName": "wf", "automountServiceAccountToken": False, "executor": {"serviceAccountName": "ex"}}})
    objs += [_secret("sso", "argo"), _secret("ex.service-account-token", "argo"),
             _secret("wf.service-account-token", "argo")]
    rules = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
             {"apiGroups": ["argoproj.io"], "resources": ["workflowtasksets", "workflowartifactgctasks"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["argoproj.io"], "resources": ["workflowtasksets/status", "workflowartifactgctasks/status"],
              "verbs": ["patch"]}]
    objs += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "wf-pods", "namespace": "argo"}, "rules": rules},
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "wf-pods", "namespace": "argo"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wf-pods"},
              "subjects": [{"kind": "ServiceAccount", "name": n, "namespace": "argo"} for n in ("wf", "ex")]}]
    return objs


def argocd(ha: bool = False) -> list[dict[str, Any]]:
    """install.yaml (or its HA layout) with strict TLS on, and the Secrets the components read."""
    objs = _load(FIXTURES / "argo-cd/install.yaml", "argocd") + [copy.deepcopy(API_SLICE)]
    if ha:
        extra = _load(FIXTURES / "layouts/argo-cd-ha.yaml", "argocd")
        keys = {ResourceKey.of(o) for o in extra}
        objs = [o for o in objs if ResourceKey.of(o) not in keys and o["metadata"]["name"] != "argocd-redis"] + extra
    params = _get(objs, "ConfigMap", "argocd-cmd-params-cm")
    params["data"] = {**(params.get("data") or {}), "controller.repo.server.strict.tls": "true",
                      "server.repo.server.strict.tls": "true", "applicationsetcontroller.repo.server.strict.tls": "true",
                      "server.dex.server.strict.tls": "true"}
    objs += [_secret(n, "argocd") for n in ("argocd-redis", "argocd-secret", "argocd-repo-server-tls",
                                             "argocd-dex-server-tls", "argocd-notifications-secret")
             if not any(o["kind"] == "Secret" and o["metadata"]["name"] == n for o in objs)]
    return objs


LAYOUTS = {"argo-workflows": [("argo", workflows)],
           "argo-cd": [("argocd", argocd), ("argocd", lambda: argocd(ha=True))]}


def _evaluate(product: str, namespace: str, before: list[dict], after: list[dict]) -> list[needs.NeedResult]:
    live = Live({ResourceKey.of(o): o for o in before})
    install = select_install(find_installs(live, component_specs()), product, namespace)
    specs = [s for s in component_specs() if s.product == product]
    return needs.evaluate([(install, specs)], before, after, (), {
        "database": {"namespace": namespace, "podSelector": {"app": "postgres"}},
        "repository": {"namespace": namespace, "podSelector": {"app": "minio"}},
        "prometheusNamespace": "monitoring", "git": {"cidr": "0.0.0.0/0"}})


def _cases():
    for spec in component_specs():
        for need in spec.needs:
            yield pytest.param(spec.product, spec.name, need, id=f"{spec.product}/{spec.name}/{need['id']}")


def _break(need: dict, component: str, install, before: list[dict], result: needs.NeedResult) -> list[dict]:
    after = copy.deepcopy(before)
    comp = install.component(component)
    if "permission" in need:
        sa = comp.service_account if comp else re.search(r"serviceaccount:[^:]+:(\S+)", result.message).group(1)
        bound = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in after
                 if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
                 and any(s.get("name") == sa for s in b.get("subjects") or [])}
        for o in after:
            if (o["kind"], o["metadata"]["name"]) in bound:
                o["rules"] = []
                o.pop("aggregationRule", None)
    elif "flow" in need:
        ns = comp.namespace if comp else install.namespace
        after.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                      "metadata": {"name": "deny-all", "namespace": ns},
                      "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
    elif "object" in need:
        kind, ns, name = re.match(r"(\w+) (?:(\S+)/)?(\S+) exists", result.message).groups()
        after = [o for o in after if not (o["kind"] == kind and o["metadata"]["name"] == name)]
    elif "probe" in need:
        workload = next(o for o in after if ResourceKey.of(o) == comp.workload)
        for c in workload["spec"]["template"]["spec"]["containers"]:
            probe = (c.get("readinessProbe") or {}).get("httpGet")
            if probe is not None:
                probe["scheme"] = "HTTP" if str(probe.get("scheme", "HTTP")).upper() == "HTTPS" else "HTTPS"
    return after


@pytest.mark.parametrize("product, component, need", list(_cases()))
def test_each_need_holds_upstream_and_breaks_when_its_dependency_goes(product, component, need):
    for namespace, layout in LAYOUTS[product]:
        before = layout()
        live = Live({ResourceKey.of(o): o for o in before})
        install = select_install(find_installs(live, component_specs()), product, namespace)
        found = [r for r in _evaluate(product, namespace, before, before)
                 if r.component == component and r.need == need["id"]]
        decided = [r for r in found if r.status is not needs.NeedStatus.UNKNOWN]
        if not decided:
            continue  # not part of this layout (redis-ha outside HA, the plain redis in HA)
        assert all(r.status is needs.NeedStatus.KEPT for r in decided), [r.message for r in decided]
        after = _break(need, component, install, before, decided[0])
        broken = [r for r in _evaluate(product, namespace, before, after)
                  if r.component == component and r.need == need["id"]]
        assert broken and all(r.status is needs.NeedStatus.BROKEN for r in broken), [r.message for r in broken]
        return
    pytest.fail(f"{product}/{component}/{need['id']} is decided on no layout the tests know")


def test_a_hand_written_workflow_defaults_of_the_wrong_shape_is_no_crash():
    objs = workflows()
    _get(objs, "ConfigMap", "workflow-controller-configmap")["data"]["workflowDefaults"] = "spec: 5\n"
    results = _evaluate("argo-workflows", "argo", objs, objs)
    assert results and all(r.status is not needs.NeedStatus.BROKEN for r in results)
