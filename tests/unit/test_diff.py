"""diff: desired vs live after normalization, list strategies from the merge-key table."""

from __future__ import annotations

import copy
from types import MappingProxyType

from deployments import DEPLOY, live_deploy
from golden_pairs import pair

from harden.diff import diff_fields as diff_with
from harden.fieldpath import split_path
from harden.mergekeys import ATOMIC_ONLY, BUILTIN, MergeKeys
from harden.model import FieldChange


def diff_fields(desired, live):
    return diff_with(desired, live, BUILTIN)

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


# -- the merge-key table is data the caller passes ---------------------------------------------------

def test_without_a_key_for_containers_the_list_compares_whole():
    """The table, not a global, decides: with every list atomic the live sidecar is an extra entry."""
    changes = diff_with(DEPLOY, live_deploy(), ATOMIC_ONLY)
    assert changes and any(c.path.startswith("spec.template.spec.containers[") and c.after is None for c in changes)
    assert diff_with(DEPLOY, live_deploy(), BUILTIN) == []


def test_set_typed_list_from_the_table_ignores_order():
    desired = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"tags": ["a", "b"]}}
    live = {**copy.deepcopy(desired), "spec": {"tags": ["b", "a"]}}
    assert diff_with(desired, live, BUILTIN) != []
    as_set = MergeKeys(MappingProxyType(dict(BUILTIN.keyed)), frozenset({"tags"}))
    assert diff_with(desired, live, as_set) == []
    live["spec"]["tags"] = ["b", "c"]
    assert [(c.before, c.after) for c in diff_with(desired, live, as_set)] == [(None, "a"), ("c", None)]


def test_diff_does_not_change_its_inputs():
    desired = copy.deepcopy(NETPOL)
    live = server_defaulted(NETPOL)
    live["spec"].pop("policyTypes")
    snapshot = copy.deepcopy((desired, live))
    diff_fields(desired, live)
    diff_fields(desired, None)
    assert (desired, live) == snapshot
