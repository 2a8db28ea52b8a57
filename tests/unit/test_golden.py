"""diff against what the real API server stored: a freshly applied object diffs empty, and a
change another actor makes to a field harden declares does not (golden pairs, golden_pairs.py)."""

from __future__ import annotations

import pytest
from golden_pairs import Pair, all_pairs, pair

from harden.diff import diff_fields as diff_with
from harden.mergekeys import BUILTIN


def diff_fields(desired, live):
    return diff_with(desired, live, BUILTIN)

PAIRS = all_pairs()
KINDS = {p.config["kind"] for p in PAIRS}


def test_pairs_cover_every_kind_harden_writes():
    assert {"NetworkPolicy", "Role", "ClusterRole", "RoleBinding", "ServiceAccount", "ConfigMap", "Deployment"} <= KINDS
    subjects = {s["kind"] for p in PAIRS if p.config["kind"] == "RoleBinding" for s in p.config["subjects"]}
    assert {"ServiceAccount", "User", "Group"} <= subjects


@pytest.mark.parametrize("pair", PAIRS, ids=[p.id for p in PAIRS])
def test_freshly_applied_object_diffs_empty(pair: Pair):
    assert diff_fields(pair.config, pair.live) == []


def _changed_by_someone_else(pair: Pair) -> dict:
    """The live object after another actor changed something harden declares (and would put back)."""
    config, live = pair.config, pair.live
    kind = config["kind"]
    if kind == "NetworkPolicy":
        spec = live["spec"]
        if "ingress" in config["spec"]:
            # opens the pods to anyone (the server omits an empty list: a default deny has none)
            spec.setdefault("ingress", []).append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
        elif "egress" in config["spec"]:
            spec.setdefault("egress", []).append({})  # any destination, any port
        else:
            spec["policyTypes"] = spec["policyTypes"][:1]  # default-deny loses a direction
    elif kind in ("Role", "ClusterRole"):
        verbs = live["rules"][0]["verbs"]
        live["rules"][0]["verbs"] = ["get"] if verbs == ["*"] else [*verbs, "escalate"]
    elif kind == "RoleBinding":
        live["subjects"].append({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"})
    elif kind == "ServiceAccount" and "automountServiceAccountToken" in config:
        live["automountServiceAccountToken"] = not config["automountServiceAccountToken"]
    elif kind == "ServiceAccount":
        live["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone-else"
    elif kind == "Secret":  # a token Secret: whose token it is
        live["metadata"]["annotations"]["kubernetes.io/service-account.name"] = "someone-else"
    elif kind == "ConfigMap":
        key = sorted(config["data"])[0]
        live["data"][key] = "changed: by hand\n"
    elif kind == "Deployment":
        template, live_template = config["spec"]["template"], live["spec"]["template"]
        if "containers" in template.get("spec", {}):
            name = template["spec"]["containers"][0]["name"]
            next(c for c in live_template["spec"]["containers"] if c["name"] == name)["args"].append("--insecure")
        else:
            live_template["metadata"]["annotations"].clear()  # the marker that rolled the pods is gone
    else:
        raise AssertionError(f"no change defined for {kind}; add one")
    return live


@pytest.mark.parametrize("pair", PAIRS, ids=[p.id for p in PAIRS])
def test_change_by_someone_else_to_a_declared_field_is_drift(pair: Pair):
    assert diff_fields(pair.config, _changed_by_someone_else(pair)) != []


def test_ingress_rule_added_to_default_deny_is_drift():
    # default-deny declares `ingress: []`: a rule added by hand (opening every pod) is drift.
    deny = pair("argo-quick-start", "NetworkPolicy", "argo", "harden-default-deny")
    deny.live["spec"]["ingress"] = [{}]  # every source, every port
    assert diff_fields(deny.config, deny.live) != []
