"""ownership: conflicts and dropped fields, read from managedFields (fieldsV1)."""

from __future__ import annotations

import json
from types import MappingProxyType

from deployments import DEPLOY, live_deploy

from harden.diff import diff_fields
from harden.mergekeys import ATOMIC_ONLY, BUILTIN, MergeKeys
from harden.model import FieldChange
from harden.ownership import conflicts, dropped_fields


def conflicts_(live, changes, keys=BUILTIN):
    return conflicts(live, changes, keys)


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
    got = conflicts_(role_with_managers(), [FieldChange("rules[0].verbs[1]", "create", None)])
    assert [(c.path, c.manager, c.operation) for c in got] == [("rules", "kubectl-client-side-apply", "Update")]


def test_harden_own_manager_is_never_a_conflict():
    live = role_with_managers()
    live["metadata"]["managedFields"] = [m for m in live["metadata"]["managedFields"] if m["manager"] == "harden"]
    assert conflicts_(live, [FieldChange("rules[0].verbs[1]", "create", None)]) == []


def test_field_owned_by_nobody_else_is_no_conflict():
    live = role_with_managers()
    assert conflicts_(live, [FieldChange("metadata.labels.team", None, "x")]) == []
    assert conflicts_(None, [FieldChange("rules", None, [])]) == []


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
    got = conflicts_(deploy_with_managers(), [FieldChange(path, None, None)])
    assert [(c.path, c.manager) for c in got] == [(path, "helm")]


def test_conflict_on_other_container_is_not_reported():
    got = conflicts_(deploy_with_managers(), [FieldChange("spec.template.spec.containers[name=sidecar].image", None, None)])
    assert [c.manager for c in got] == ["istio"]


def test_conflict_by_live_index_in_keyed_list_uses_the_entry_key():
    got = conflicts_(deploy_with_managers(), [FieldChange("spec.template.spec.containers[1].args[0]", None, None)])
    assert [c.manager for c in got] == ["helm"]


def test_conflicts_from_diff_of_second_container_name_the_right_manager():
    live = deploy_with_managers()
    live["spec"]["template"]["spec"]["containers"][1]["args"] = ["server", "--secure=false"]
    got = conflicts_(live, diff_fields(DEPLOY, live, BUILTIN))
    assert [c.manager for c in got] == ["helm"]




def test_live_index_into_a_list_the_table_calls_atomic_conflicts_on_the_whole_list():
    """Without a merge key for containers, an index names no entry: the whole list is the unit, and
    every other manager owning any of it is named (with the key, istio's sidecar no longer counts)."""
    live = deploy_with_managers()
    live["metadata"]["managedFields"].append(
        {"manager": "kustomize", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}})
    got = conflicts_(live, [FieldChange("spec.template.spec.containers[1].args[0]", None, None)], ATOMIC_ONLY)
    assert [(c.path, c.manager) for c in got] == [("spec.template.spec.containers", m) for m in ("helm", "istio", "kustomize")]
    got = conflicts_(live, [FieldChange("spec.template.spec.containers[1].args[0]", None, None)], BUILTIN)
    assert [(c.path, c.manager) for c in got] == [("spec.template.spec.containers[1].args", m) for m in ("helm", "kustomize")]


def test_keyed_list_from_the_table_is_walked_by_its_key():
    live = {"kind": "Thing", "metadata": {"managedFields": [
        {"manager": "ops", "operation": "Update", "fieldsV1": {"f:spec": {"f:ports": {'k:{"port":80}': {"f:name": {}}}}}}]},
        "spec": {"ports": [{"port": 443, "name": "https"}, {"port": 80, "name": "http"}]}}
    by_port = MergeKeys(MappingProxyType({"ports": "port"}))
    assert [c.manager for c in conflicts_(live, [FieldChange("spec.ports[1].name", None, None)], by_port)] == ["ops"]
    assert conflicts_(live, [FieldChange("spec.ports[0].name", None, None)], by_port) == []


def test_fields_harden_applied_and_no_longer_declares_are_listed_as_removed():
    """A profile that stops declaring a field of an object harden owns: the next apply prunes it, so
    the plan must say so, read from harden's own managedFields entry."""
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


def test_dropped_keyed_entry_reports_the_live_value_of_that_entry():
    live = live_deploy()
    live["metadata"]["managedFields"] = [{"manager": "harden-x", "operation": "Apply", "fieldsV1": {
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"sidecar"}': {"f:image": {}}}}}}}}]
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argo-server"},
               "spec": {"template": {"spec": {"containers": [{"name": "sidecar"}]}}}}
    assert [(c.path, c.before) for c in dropped_fields(desired, live, "harden-x")] == [
        ("spec.template.spec.containers[name=sidecar].image", "envoy")]
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "envoy"
    assert dropped_fields(desired, live, "harden-x") == []


def _declared_leaves_reference(fields: dict, desired: dict) -> list[str]:
    """The rule `dropped_fields` implements, spelt out slowly: list every owned leaf path, then walk
    `desired` down each one; below a value declared whole (not a mapping) the leaf is declared."""
    from harden.fieldpath import path_text, step
    from harden.ownership import _owned_leaves

    out = []
    for path in _owned_leaves(fields, []):
        node, declared = desired, True
        for p in path:
            if not (isinstance(p, tuple) or isinstance(node, dict)):
                break
            node = step(node, p)
            if node is None:
                declared = False
                break
        if path and not declared:
            out.append(path_text(path))
    return out


def _random_fields(rng, depth: int) -> dict:
    """A random fieldsV1 set over the names the random objects use: f: fields, k: entries keyed by one
    field (a string, a number or null) or by two, v: set members and i: indexes, with or without "."."""
    out: dict = {}
    if depth <= 0 or rng.random() < 0.25:
        return out
    if rng.random() < 0.3:
        out["."] = {}
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.55:
            token = f"f:{rng.choice('abcd')}"
        elif roll < 0.75:
            key = rng.choice([{"name": rng.choice("xyz")}, {"port": rng.choice([1, 2])}, {"name": None}])
            token = "k:" + json.dumps(key, separators=(",", ":"))
        elif roll < 0.85:
            token = 'k:{"name":"x","port":1}'
        else:
            token = rng.choice(['v:"m"', "v:0", "i:0", "i:1"])
        out[token] = _random_fields(rng, depth - 1)
    return out


def _random_value(rng, depth: int):
    roll = rng.random()
    if depth <= 0 or roll < 0.2:
        return rng.choice([1, "s", None, True])
    if roll < 0.6:
        return {k: _random_value(rng, depth - 1) for k in rng.sample("abcd", rng.randint(0, 4))}
    if roll < 0.85:  # a keyed list: entries named or numbered, a few with neither
        entries = [{"name": n} for n in rng.sample("xyz", rng.randint(0, 3))] + \
                  [{"port": p} for p in rng.sample([1, 2], rng.randint(0, 2))] + [{"name": None}] * rng.randint(0, 1)
        return [{**e, **{k: _random_value(rng, depth - 2) for k in rng.sample("abcd", 2)}} for e in entries]
    return rng.choice([["m", 0], [0, 1], [{"a": 1}], []])  # atomic lists and sets


def test_dropped_fields_walk_agrees_with_the_slow_rule_on_random_objects():
    """One walk down fieldsV1 and the desired object together lists exactly the leaves the slow
    rule (every owned leaf path, each walked down the desired object) calls undeclared, in order."""
    import random

    rng = random.Random(10)
    nonempty = 0
    for _ in range(3000):
        fields = _random_fields(rng, 5)
        desired = _random_value(rng, 5)
        if not isinstance(desired, dict):
            desired = {"a": desired}
        live = {"metadata": {"managedFields": [{"manager": "m", "operation": "Apply", "fieldsV1": fields}]}}
        want = _declared_leaves_reference(fields, desired)
        assert [c.path for c in dropped_fields(desired, live, "m")] == want, (fields, desired)
        nonempty += bool(want)
    assert nonempty > 300  # the cases exercise both verdicts, not only "nothing dropped"
