"""diff: normalization for server defaults, list strategies, ownership from managedFields."""

from __future__ import annotations

import copy

import pytest

from golden_pairs import pair

from harden.diff import (
    conflicts,
    diff_fields,
    merge_partial,
    path_text,
    restore_shape,
    split_path,
)
from harden.model import FieldChange

# A policy that leaves the protocol of its port, its policyTypes and an empty matchLabels to the
# server (tests/golden/server-defaults.yaml), and what the real API server stored for it.
NETPOL = pair("server-defaults", "NetworkPolicy", "argo", "harden-golden-ingress-defaults").config


def server_defaulted(desired):
    """The recorded live object for `desired` (a fresh copy each call)."""
    assert desired == NETPOL, "the recorded live object belongs to NETPOL only"
    return pair("server-defaults", "NetworkPolicy", "argo", "harden-golden-ingress-defaults").live


def test_server_defaulted_networkpolicy_diffs_empty():
    assert "policyTypes" not in NETPOL["spec"] and "protocol" not in NETPOL["spec"]["ingress"][0]["ports"][0]
    live = server_defaulted(NETPOL)
    assert live["spec"]["policyTypes"] == ["Ingress"]
    assert live["spec"]["ingress"][0]["ports"] == [{"port": 9090, "protocol": "TCP"}]
    assert live["spec"]["ingress"][0]["from"][0]["podSelector"] == {}  # empty matchLabels dropped
    assert diff_fields(NETPOL, live) == []


def test_egress_only_policy_defaults_policy_types_to_both():
    egress = pair("server-defaults", "NetworkPolicy", "argo", "harden-golden-egress-defaults")
    assert "policyTypes" not in egress.config["spec"]
    assert egress.live["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert egress.live["spec"]["egress"][0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert diff_fields(egress.config, egress.live) == []


def test_extra_ingress_rule_from_someone_else_is_drift():
    live = server_defaulted(NETPOL)
    live["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    changes = diff_fields(NETPOL, live)
    assert changes, "an appended ingress rule widens access and must show"
    assert all(c.path.startswith("spec.ingress[1]") for c in changes)
    assert any(c.before == "0.0.0.0/0" and c.after is None for c in changes)


def test_changed_port_is_drift_with_before_and_after():
    live = server_defaulted(NETPOL)
    live["spec"]["ingress"][0]["ports"][0]["port"] = 8080
    assert diff_fields(NETPOL, live) == [FieldChange("spec.ingress[0].ports[0].port", 8080, 9090)]


def test_label_removed_by_someone_else_is_drift():
    live = server_defaulted(NETPOL)
    del live["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert diff_fields(NETPOL, live) == [
        FieldChange('metadata.labels["app.kubernetes.io/managed-by"]', None, "harden")]


def test_fields_harden_does_not_declare_are_ignored():
    live = server_defaulted(NETPOL)
    live["metadata"]["labels"]["team"] = "x"
    live["metadata"]["annotations"] = {"note": "y"}
    live["status"] = {"anything": True}
    assert diff_fields(NETPOL, live) == []


def test_new_object_lists_every_field():
    changes = diff_fields(NETPOL, None)
    paths = {c.path for c in changes}
    assert "spec.podSelector.matchLabels.app" in paths
    assert all(c.before is None for c in changes)
    assert not any(p.startswith(("metadata.name", "metadata.namespace", "apiVersion", "kind")) for p in paths)


# -- list strategies -------------------------------------------------------------------------------

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argo-server", "namespace": "argo"},
          "spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["server", "--secure=true"]}]}}}}


def live_deploy(args=("server", "--secure=true")):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "argo-server", "namespace": "argo", "resourceVersion": "9"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy", "args": ["--foo"]},
                {"name": "argo-server", "image": "argo", "args": list(args)}]}}}}


def test_keyed_list_compares_by_key_not_position():
    # argo-server is the second container live and the only one desired: same entry, no diff.
    assert diff_fields(DEPLOY, live_deploy()) == []


def test_keyed_list_drift_inside_the_named_entry():
    changes = diff_fields(DEPLOY, live_deploy(("server", "--secure=false")))
    assert [(c.before, c.after) for c in changes] == [("--secure=false", "--secure=true")]


def test_keyed_list_drift_path_names_the_live_entry():
    """The path of a change inside a keyed list must identify the entry it is about (by key, or by
    its live index), or the plan shows and conflicts() checks the wrong container."""
    changes = diff_fields(DEPLOY, live_deploy(("server", "--secure=false")))
    path = split_path(changes[0].path)
    entry = path[4]
    assert entry in (("name", "argo-server"), 1), changes[0].path


def test_atomic_list_compares_whole():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "a"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    live = copy.deepcopy(role)
    live["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    changes = diff_fields(role, live)
    assert changes and all(c.path.startswith("rules[1]") and c.after is None for c in changes)
    # Reordered rules are a different atomic list.
    live2 = copy.deepcopy(role)
    live2["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get"]}]  # widened
    changes2 = diff_fields(role, live2)
    assert any(c.before == "list" and c.after is None for c in changes2), changes2


def test_rolebinding_subject_api_group_default():
    rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "a"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
          "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "a"},
                       {"kind": "Group", "name": "g"}]}
    live = copy.deepcopy(rb)
    live["subjects"][0]["apiGroup"] = ""
    live["subjects"][1]["apiGroup"] = "rbac.authorization.k8s.io"
    assert diff_fields(rb, live) == []


# -- ConfigMap YAML values -------------------------------------------------------------------------

def cm(text, **extra):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "argo"},
            "data": {"workflowDefaults": text, **extra}}


def test_configmap_yaml_reformatted_same_content_is_no_diff():
    desired = cm("spec:\n  securityContext: {runAsNonRoot: true, runAsUser: 8737}\n  ttl: [1, 2]\n")
    live = cm("spec:\n  ttl:\n  - 1\n  - 2\n  securityContext:\n    runAsUser: 8737\n    runAsNonRoot: true\n",
              other="kept: yes\n")
    assert diff_fields(desired, live) == []


def test_configmap_yaml_changed_value_is_a_field_change():
    desired = cm("spec:\n  securityContext:\n    runAsUser: 8737\n")
    live = cm("spec:\n  securityContext:\n    runAsUser: 0\n")
    assert diff_fields(desired, live) == [FieldChange("data.workflowDefaults.spec.securityContext.runAsUser", 0, 8737)]


# -- conflicts from managedFields ------------------------------------------------------------------

def role_with_managers():
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "argo-server-cluster-role", "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "rbac.authorization.k8s.io/v1",
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:x": {}}}, "f:rules": {}}},
                {"manager": "harden", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:rules": {}}},
            ]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "create"]}]}


def test_conflict_on_rules_names_the_other_manager():
    got = conflicts(role_with_managers(), [FieldChange("rules[0].verbs[1]", "create", None)])
    assert [(c.path, c.manager, c.operation) for c in got] == [("rules", "kubectl-client-side-apply", "Update")]


def test_harden_own_manager_is_never_a_conflict():
    live = role_with_managers()
    live["metadata"]["managedFields"] = [m for m in live["metadata"]["managedFields"] if m["manager"] == "harden"]
    assert conflicts(live, [FieldChange("rules[0].verbs[1]", "create", None)]) == []


def test_field_owned_by_nobody_else_is_no_conflict():
    live = role_with_managers()
    assert conflicts(live, [FieldChange("metadata.labels.team", None, "x")]) == []
    assert conflicts(None, [FieldChange("rules", None, [])]) == []


def deploy_with_managers():
    live = live_deploy()
    live["metadata"]["managedFields"] = [
        {"manager": "helm", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"argo-server"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}}}}},
        {"manager": "istio", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"sidecar"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}}}}},
        {"manager": "harden", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"argo-server"}': {"f:args": {}}}}}}}},
    ]
    return live


def test_conflict_on_container_args_by_name():
    path = "spec.template.spec.containers[name=argo-server].args"
    got = conflicts(deploy_with_managers(), [FieldChange(path, None, None)])
    assert [(c.path, c.manager) for c in got] == [(path, "helm")]


def test_conflict_on_other_container_is_not_reported():
    got = conflicts(deploy_with_managers(), [FieldChange("spec.template.spec.containers[name=sidecar].image", None, None)])
    assert [c.manager for c in got] == ["istio"]


def test_conflict_by_live_index_in_keyed_list_uses_the_entry_key():
    got = conflicts(deploy_with_managers(), [FieldChange("spec.template.spec.containers[1].args[0]", None, None)])
    assert [c.manager for c in got] == ["helm"]


def test_conflicts_from_diff_of_second_container_name_the_right_manager():
    live = deploy_with_managers()
    live["spec"]["template"]["spec"]["containers"][1]["args"] = ["server", "--secure=false"]
    got = conflicts(live, diff_fields(DEPLOY, live))
    assert [c.manager for c in got] == ["helm"]


# -- paths and merges ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    ["spec", "ingress", 0, "ports", 1, "port"],
    ["metadata", "labels", "app.kubernetes.io/managed-by"],
    ["data", "server.tls.minversion"],
    ["spec", "template", "spec", "containers", ("name", "argo-server"), "args"],
    ["data", 'we"ird key'],
])
def test_path_text_round_trips(path):
    assert split_path(path_text(path)) == path


def test_merge_partial_merges_keyed_lists_and_replaces_atomic_ones():
    base = live_deploy()
    partial = {"spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["new"]}]}}}}
    merged = merge_partial(base, partial)
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "argo-server"]
    assert containers[1] == {"name": "argo-server", "image": "argo", "args": ["new"]}
    assert merged["spec"]["replicas"] == 1
    assert base["spec"]["template"]["spec"]["containers"][1]["args"] == ["server", "--secure=true"]
    assert merge_partial({"rules": [1, 2, 3]}, {"rules": [4]}) == {"rules": [4]}


def test_restore_shape_captures_previous_values_and_absence():
    live = live_deploy(("server", "--auth-mode=server"))
    partial = {"spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["x"]}]}}},
               "metadata": {"annotations": {"new": "v"}}}
    assert restore_shape(live, partial) == {
        "spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["server", "--auth-mode=server"]}]}}},
        "metadata": {"annotations": None}}


def test_fields_harden_applied_and_no_longer_declares_are_listed_as_removed():
    """A profile that stops declaring a field of an object harden owns: the next apply prunes it, so
    the plan must say so, read from harden's own managedFields entry."""
    from harden.diff import dropped_fields

    live = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "argo", "labels": {"a": "1"},
                         "managedFields": [
                             {"manager": "harden-x", "operation": "Apply", "fieldsV1": {
                                 "f:metadata": {"f:labels": {"f:a": {}}},
                                 "f:spec": {"f:podSelector": {}, "f:egress": {}, "f:policyTypes": {}}}},
                             {"manager": "someone", "operation": "Update", "fieldsV1": {"f:spec": {"f:ingress": {}}}}]},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53}]}],
                     "ingress": [{}]}}
    desired = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "p", "namespace": "argo", "labels": {"a": "1"}},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    changes = dropped_fields(desired, live, "harden-x")
    assert [(c.path, c.before, c.after) for c in changes] == [("spec.egress", [{"ports": [{"port": 53}]}], None)]
    assert dropped_fields(live, live, "harden-x") == []  # declaring everything drops nothing
    assert dropped_fields(desired, live, "harden-other") == []  # another stack's fields are not ours
