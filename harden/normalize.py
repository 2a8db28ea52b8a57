"""normalize: what the API server fills in or leaves out, applied before comparing. Pure.

A freshly applied object must diff empty, but the server does not hand back what it was sent: it
defaults fields (a NetworkPolicy port's `protocol: TCP`), drops empty ones (`matchLabels: {}`), and
drops nulls. Both sides of a comparison are normalized the same way, so only real differences remain.

Normalizers are a registry keyed by kind (`@normalizes("NetworkPolicy")`), as gitops-engine's
pluggable normalizers are: adding what the server does to one more kind is one function here, and
the diff never learns about kinds. The generic normalizer (empty fields the server omits) runs first
for every kind.

Normalization is copy-on-write: a normalizer returns its input unchanged when it has nothing to do,
and otherwise builds new mappings and lists only along the way to what it changes. Inputs are never
mutated, and a large plan does not pay for copying every object it compares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import Obj

Normalizer = Callable[[Obj], Obj]

NORMALIZERS: dict[str, list[Normalizer]] = {}


def normalizes(*kinds: str) -> Callable[[Normalizer], Normalizer]:
    """Register a normalizer for objects of these kinds."""
    def register(fn: Normalizer) -> Normalizer:
        for kind in kinds:
            NORMALIZERS.setdefault(kind, []).append(fn)
        return fn
    return register


def normalize(obj: Obj) -> Obj:
    """Apply the server's defaults (and omissions) that matter for comparison; `obj` is not changed."""
    obj = drop_empty(obj)
    for fn in NORMALIZERS.get(obj.get("kind", ""), ()):
        obj = fn(obj)
    return obj


# The server omits these when empty (`omitempty` on LabelSelector.matchLabels/matchExpressions and
# ObjectMeta.labels/annotations in k8s.io/apimachinery pkg/apis/meta/v1/types.go), so `matchLabels: {}`
# reads back absent.
OMITTED_WHEN_EMPTY = {"matchLabels", "matchExpressions", "labels", "annotations"}


def drop_empty(value: Any) -> Any:
    """The generic normalizer: fields in OMITTED_WHEN_EMPTY that are empty are dropped, at any depth."""
    if isinstance(value, dict):
        out: dict[str, Any] | None = None
        for k, v in value.items():
            if k in OMITTED_WHEN_EMPTY and v in ({}, [], None):
                out = out if out is not None else dict(value)
                del out[k]
                continue
            new = drop_empty(v)
            if new is not v:
                out = out if out is not None else dict(value)
                out[k] = new
        return value if out is None else out
    if isinstance(value, list):
        items = [drop_empty(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _netpol_rules(rules: list[Any] | None) -> list[Any] | None:
    # NetworkPolicyPort.protocol defaults to TCP (k8s.io/api networking/v1/types.go), and a rule's
    # empty `ports`/`from`/`to` read back absent.
    if rules is None:
        return None
    out = []
    for rule in rules:
        rule = dict(rule)
        if rule.get("ports"):
            rule["ports"] = [{"protocol": "TCP", **p} for p in rule["ports"]]
        out.append({k: v for k, v in rule.items() if v not in (None, [])})
    return out


@normalizes("NetworkPolicy")
def _network_policy(obj: Obj) -> Obj:
    # policyTypes defaults to Ingress, plus Egress when the spec has egress rules (NetworkPolicySpec
    # .policyTypes in k8s.io/api networking/v1/types.go); podSelector is required and reads back `{}`.
    spec = dict(obj.get("spec") or {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if "egress" in spec else [])
    for direction in ("ingress", "egress"):
        if direction in spec:
            spec[direction] = _netpol_rules(spec[direction])
        elif direction.capitalize() in spec["policyTypes"]:
            # An isolating direction with no rules allows nothing; the server omits the empty list.
            # Said explicitly, a rule someone adds later (`ingress: [{}]`, every source) is drift.
            spec[direction] = []
    spec.setdefault("podSelector", {})
    return {**obj, "spec": spec}


_RULE_LISTS = ("apiGroups", "resources", "resourceNames", "nonResourceURLs")


@normalizes("Role", "ClusterRole")
def _role(obj: Obj) -> Obj:
    # A rule's null lists are omitted by the server (`omitempty` on PolicyRule's fields in
    # k8s.io/api rbac/v1/types.go).
    rules = obj.get("rules")
    if not rules or not any(isinstance(r, dict) and any(k in r and r[k] is None for k in _RULE_LISTS)
                            for r in rules):
        return obj
    return {**obj, "rules": [{k: v for k, v in r.items() if not (k in _RULE_LISTS and v is None)}
                             if isinstance(r, dict) else r for r in rules]}


@normalizes("RoleBinding", "ClusterRoleBinding")
def _binding(obj: Obj) -> Obj:
    # Subject.apiGroup defaults to "" for ServiceAccount and rbac.authorization.k8s.io for User and
    # Group (SetDefaults_Subject in kubernetes pkg/apis/rbac/v1/defaults.go).
    subjects = obj.get("subjects")
    if not subjects or all("apiGroup" in s for s in subjects):
        return obj
    def group(s: dict[str, Any]) -> str:
        return "" if s.get("kind") == "ServiceAccount" else "rbac.authorization.k8s.io"

    return {**obj, "subjects": [s if "apiGroup" in s else {**s, "apiGroup": group(s)} for s in subjects]}
