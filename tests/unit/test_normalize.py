"""normalize: the server's defaults and omissions, per kind from the registry, copy-on-write."""

from __future__ import annotations

import copy

import pytest
from deployments import live_deploy

from harden.normalize import NORMALIZERS, drop_empty, normalize, normalizes


def test_networkpolicy_port_protocol_defaults_to_tcp_and_empty_rule_fields_go():
    np = {"kind": "NetworkPolicy", "spec": {"podSelector": {}, "ingress": [
        {"ports": [{"port": 9090}, {"port": 53, "protocol": "UDP"}], "from": []}]}}
    assert normalize(np)["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9090},
                                                           {"protocol": "UDP", "port": 53}]}]


@pytest.mark.parametrize("spec, types", [
    ({"ingress": []}, ["Ingress"]),
    ({"egress": []}, ["Ingress", "Egress"]),
    ({"egress": [], "policyTypes": ["Egress"]}, ["Egress"]),
    ({"policyTypes": []}, ["Ingress"]),
])
def test_networkpolicy_policy_types_default(spec, types):
    out = normalize({"kind": "NetworkPolicy", "spec": spec})
    assert out["spec"]["policyTypes"] == types
    assert out["spec"]["podSelector"] == {}


def test_role_rules_drop_null_lists():
    role = {"kind": "ClusterRole", "rules": [{"apiGroups": None, "resources": ["pods"], "verbs": ["get"],
                                              "resourceNames": None}]}
    assert normalize(role)["rules"] == [{"resources": ["pods"], "verbs": ["get"]}]


def test_binding_subject_api_group_defaults_by_kind():
    rb = {"kind": "RoleBinding", "subjects": [{"kind": "ServiceAccount", "name": "s"}, {"kind": "Group", "name": "g"},
                                              {"kind": "User", "name": "u", "apiGroup": "x"}]}
    assert [s["apiGroup"] for s in normalize(rb)["subjects"]] == ["", "rbac.authorization.k8s.io", "x"]


def test_empty_omitempty_fields_are_dropped_at_any_depth():
    obj = {"kind": "Deployment", "metadata": {"labels": {}, "annotations": None, "name": "d"},
           "spec": {"selector": {"matchLabels": {}, "matchExpressions": []},
                    "template": {"metadata": {"labels": {"app": "a"}}}},
           "other": {"labels": {}}}
    assert normalize(obj) == {"kind": "Deployment", "metadata": {"name": "d"},
                              "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "a"}}}},
                              "other": {}}


def test_normalizers_are_looked_up_by_kind(monkeypatch):
    monkeypatch.setitem(NORMALIZERS, "Widget", [])
    normalizes("Widget")(lambda obj: {**obj, "spec": {"size": obj["spec"].get("size", 1)}})
    assert normalize({"kind": "Widget", "spec": {}}) == {"kind": "Widget", "spec": {"size": 1}}
    assert normalize({"kind": "Gadget", "spec": {}}) == {"kind": "Gadget", "spec": {}}


@pytest.mark.parametrize("obj", [
    live_deploy(),
    {"kind": "NetworkPolicy", "metadata": {"labels": {}}, "spec": {"ingress": [{"ports": [{"port": 1}], "from": None}]}},
    {"kind": "Role", "rules": [{"apiGroups": None, "verbs": ["get"]}]},
    {"kind": "RoleBinding", "subjects": [{"kind": "Group", "name": "g"}]},
])
def test_normalize_never_changes_its_input(obj):
    before = copy.deepcopy(obj)
    normalize(obj)
    assert obj == before


def test_normalize_copies_only_what_it_changes(monkeypatch):
    """Copy-on-write: deepcopy cost 10% of a 10,000-object plan; untouched parts are shared."""
    monkeypatch.setattr(copy, "deepcopy", lambda *a, **k: pytest.fail("normalize must not deepcopy"))
    deploy = live_deploy()
    assert normalize(deploy) is deploy
    deploy["metadata"]["labels"] = {}
    out = normalize(deploy)
    assert out is not deploy and "labels" not in out["metadata"]
    assert out["spec"] is deploy["spec"]
    np = {"kind": "NetworkPolicy", "metadata": {"name": "n"}, "spec": {"podSelector": {"matchLabels": {"a": "b"}}}}
    out = normalize(np)
    assert out["metadata"] is np["metadata"] and out["spec"]["podSelector"] is np["spec"]["podSelector"]


def test_drop_empty_returns_the_same_list_when_nothing_inside_changes():
    value = [{"a": 1}, [{"labels": {"x": "y"}}]]
    assert drop_empty(value) is value
    assert drop_empty([{"labels": {}}]) == [{}]
