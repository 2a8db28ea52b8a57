"""plan: desired objects, patch intents, live objects and state -> a Plan (pure, plain data)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from golden_pairs import live_as_served

from harden.errors import Diagnostics
from harden.graph import find_installs, select_install
from harden.load import select
from harden.mergekeys import BUILTIN as BUILTIN_KEYS
from harden.model import Action, Change, ChangeKind, FieldChange, Phase, ResourceKey, Restore, field_manager
from harden.needs import component_specs
from harden.observe import Live
from harden.plan import make_plan, predict, record_for
from harden.render import render
from harden.state import Record, State

# The example stack's name: rendered here with the same values, its objects are the bodies the
# golden pairs recorded, so the live copies below are what the real API server stored for them.
STACK = "argo-quick-start"
NP_GROUP = "networking.k8s.io"


# The install the profiles are pointed at: argo-server and the controller as the upstream
# manifests label them, argo-server's service account bound to its ClusterRole (CLUSTER_ROLE below).
def _deployment(name, sa, containers=None):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "argo", "resourceVersion": "1"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"serviceAccountName": sa,
                                           "containers": containers or [{"name": name, "args": []}]}}}}


INSTALL = [
    _deployment("argo-server", "argo-server", [{"name": "argo-server", "args": ["server"]}]),
    _deployment("workflow-controller", "argo"),
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "argo-server-binding", "resourceVersion": "1"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "argo-server-cluster-role"},
     "subjects": [{"kind": "ServiceAccount", "name": "argo-server", "namespace": "argo"}]},
]


def rendered(profiles, sets=(), graph_of=None):
    """The profiles rendered against the install graph of `graph_of` (default: INSTALL with
    argo-server's ClusterRole and the controller's ConfigMap)."""
    sel = select(list(profiles), None, list(sets))
    live = graph_of or live_of(CLUSTER_ROLE, CONTROLLER_CM)
    installs = find_installs(live, component_specs())
    install = select_install(installs, "argo-workflows", "argo") if installs else None
    return [render(s, STACK, install) for s in sel.items]


def live_of(*objs, kind="snapshot", install=True):
    """Live objects: `objs` over the install's workloads and bindings (unless install=False)."""
    base = INSTALL if install else []
    return Live({ResourceKey.of(o): copy.deepcopy(o) for o in [*base, *objs]}, source={"kind": kind})


def server_copy(body, rv="100"):
    return live_as_served(body, rv=rv)


def only_change(plan):
    assert len(plan.changes) == 1, [(c.action, str(c.key)) for c in plan.changes]
    return plan.changes[0]


METRICS_KEY = ResourceKey(NP_GROUP, "NetworkPolicy", "argo", "harden-allow-metrics-ingress")


# -- objects ---------------------------------------------------------------------------------------

def test_create_when_absent():
    r = rendered(["metrics-ingress"])
    plan = make_plan(r, live_of(), State(STACK), STACK)
    c = only_change(plan)
    assert (c.action, c.kind, c.key, c.profile) == (Action.CREATE, ChangeKind.OBJECT, METRICS_KEY, "metrics-ingress")
    assert c.body == r[0].objects[0].body
    assert c.observed_resource_version is None
    assert FieldChange("spec.podSelector.matchLabels.app", None, "workflow-controller") in c.fields
    assert plan.counts() == {"add": 1, "change": 0, "release": 0, "destroy": 0}


def test_noop_when_in_sync_with_server_defaults():
    r = rendered(["metrics-ingress"])
    live = live_of(server_copy(r[0].objects[0].body, rv="42"))
    plan = make_plan(r, live, State(STACK), STACK)
    c = only_change(plan)
    assert c.action is Action.NOOP and c.fields == ()
    assert c.observed_resource_version == "42"
    assert not plan.has_changes
    assert plan.counts() == {"add": 0, "change": 0, "release": 0, "destroy": 0}


def test_update_on_drift_with_field_level_before_after():
    r = rendered(["metrics-ingress"])
    drifted = server_copy(r[0].objects[0].body, rv="43")
    drifted["spec"]["ingress"][0]["ports"][0]["port"] = 8080
    drifted["spec"]["podSelector"]["matchLabels"]["app"] = "other"
    plan = make_plan(r, live_of(drifted), State(STACK), STACK)
    c = only_change(plan)
    assert c.action is Action.UPDATE
    assert set(c.fields) == {FieldChange("spec.ingress[0].ports[0].port", 8080, 9090),
                             FieldChange("spec.podSelector.matchLabels.app", "other", "workflow-controller")}
    assert c.observed_resource_version == "43"
    assert c.body == r[0].objects[0].body


def test_update_on_appended_ingress_rule():
    r = rendered(["metrics-ingress"])
    live = server_copy(r[0].objects[0].body)
    live["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    c = only_change(make_plan(r, live_of(live), State(STACK), STACK))
    assert c.action is Action.UPDATE
    assert all(f.path.startswith("spec.ingress[1]") for f in c.fields)


def test_delete_for_state_record_no_profile_wants():
    old = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "harden-old", "namespace": "argo", "resourceVersion": "7"},
           "spec": {"podSelector": {}}}
    key = ResourceKey.of(old)
    state = State(STACK, "lin", 3, {str(key): Record(str(key), "networking.k8s.io/v1", ChangeKind.OBJECT, ("old-profile",), "d")})
    plan = make_plan(rendered(["metrics-ingress"]), live_of(old), state, STACK)
    deletes = [c for c in plan.changes if c.action is Action.DELETE]
    assert [(c.key, c.profile, c.observed_resource_version) for c in deletes] == [(key, "old-profile", "7")]
    assert FieldChange("spec", {"podSelector": {}}, None) in deletes[0].fields
    assert plan.counts()["destroy"] == 1 and plan.counts()["add"] == 1
    assert (plan.lineage, plan.serial) == ("lin", 3)


def test_delete_of_state_record_already_gone_has_no_resource_version():
    key = "networking.k8s.io/NetworkPolicy/argo/harden-gone"
    state = State(STACK, "lin", 1, {key: Record(key, "networking.k8s.io/v1", ChangeKind.OBJECT, ("p",), "d")})
    plan = make_plan([], live_of(), state, STACK)
    c = only_change(plan)
    assert c.action is Action.DELETE and c.observed_resource_version is None
    assert "gone" in c.reason


def test_state_record_still_wanted_is_not_deleted():
    r = rendered(["metrics-ingress"])
    key = str(METRICS_KEY)
    state = State(STACK, "lin", 1, {key: Record(key, "networking.k8s.io/v1", ChangeKind.OBJECT, ("metrics-ingress",), "d")})
    plan = make_plan(r, live_of(server_copy(r[0].objects[0].body)), state, STACK)
    assert [c.action for c in plan.changes] == [Action.NOOP]


CLUSTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "argo-server-cluster-role", "resourceVersion": "11", "managedFields": [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:rules": {}}}]},
    "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get", "list", "watch", "delete"]},
              {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get"]}],
}
ROLE_KEY = ResourceKey("rbac.authorization.k8s.io", "ClusterRole", "", "argo-server-cluster-role")
CONTROLLER_CM = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "workflow-controller-configmap", "namespace": "argo", "resourceVersion": "9"},
                 "data": {}}


def test_release_for_patch_record_no_longer_wanted_restores_recorded_body():
    # harden had reduced the role; the record says what it was before and who owned it.
    reduced = copy.deepcopy(CLUSTER_ROLE)
    reduced["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get"]}]
    restore_body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": "argo-server-cluster-role"}, "rules": CLUSTER_ROLE["rules"]}
    rec = Record(str(ROLE_KEY), "rbac.authorization.k8s.io/v1", ChangeKind.PATCH, ("read-only-server",), "d", ("rules",),
                 Restore(restore_body, "kubectl-client-side-apply"))
    state = State(STACK, "lin", 2, {str(ROLE_KEY): rec})
    plan = make_plan([], live_of(reduced), state, STACK)
    c = only_change(plan)
    assert (c.action, c.kind, c.profile) == (Action.RELEASE, ChangeKind.PATCH, "read-only-server")
    assert c.body == {**restore_body, "metadata": {**restore_body["metadata"],
                                                   "annotations": {"harden.dev/original": None}}}
    assert c.restore == Restore(restore_body, "kubectl-client-side-apply")
    assert c.field_paths == ("rules",)
    assert c.observed_resource_version == "11"
    # Releasing puts back exactly what the reduction took away: pods/exec, delete and create.
    rules = [f for f in c.fields if f.path.startswith("rules")]
    assert sorted(f.after for f in rules) == ["create", "delete", "pods/exec"]
    assert all(f.before is None for f in rules)
    assert plan.counts()["release"] == 1
    # predict() puts the recorded rules back.
    after = {ResourceKey.of(o): o for o in predict(live_of(reduced), plan)}
    assert after[ROLE_KEY]["rules"] == CLUSTER_ROLE["rules"]


def test_release_of_patch_on_vanished_object_sends_nothing():
    rec = Record(str(ROLE_KEY), "rbac.authorization.k8s.io/v1", ChangeKind.PATCH, ("read-only-server",), "d", ("rules",),
                 Restore({"rules": []}, "m"))
    c = only_change(make_plan([], live_of(), State(STACK, "l", 1, {str(ROLE_KEY): rec}), STACK))
    assert c.action is Action.RELEASE and c.body is None and c.fields == ()


# -- orphans ---------------------------------------------------------------------------------------

def labelled(name, stack=STACK, managed="harden", profile="metrics-ingress"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "argo", "resourceVersion": "5",
                         "labels": {"app.kubernetes.io/managed-by": managed, "harden.dev/profile": profile,
                                    "harden.dev/stack": stack}},
            "spec": {"podSelector": {}}}


def test_orphan_labelled_with_this_stack_is_deleted():
    plan = make_plan([], live_of(labelled("harden-orphan")), State(STACK), STACK)
    c = only_change(plan)
    assert c.action is Action.DELETE and c.key.name == "harden-orphan"
    assert c.profile == "metrics-ingress" and c.observed_resource_version == "5"


def test_objects_of_other_stacks_or_not_managed_are_left_alone():
    live = live_of(labelled("other-stack", stack="prod"), labelled("not-ours", managed="helm"))
    assert make_plan([], live, State(STACK), STACK).changes == ()


def test_orphan_known_to_state_is_deleted_once():
    obj = labelled("harden-orphan")
    key = str(ResourceKey.of(obj))
    state = State(STACK, "l", 1, {key: Record(key, "networking.k8s.io/v1", ChangeKind.OBJECT, ("metrics-ingress",), "d")})
    plan = make_plan([], live_of(obj), state, STACK)
    assert [c.action for c in plan.changes] == [Action.DELETE]


# -- targets and patches ---------------------------------------------------------------------------

def test_missing_required_target_is_an_error_naming_profile_and_candidates():
    with pytest.raises(Diagnostics) as ei:
        make_plan(rendered(["server-auth-tls"]), live_of(install=False), State(STACK), STACK,
                  profile_files={"server-auth-tls": "profiles/server-auth-tls.yaml"})
    (d,) = ei.value.diagnostics
    assert "server-auth-tls" in d.summary
    assert "Deployment argo/argo-server" in d.summary and "install graph" in d.summary
    assert d.file == "profiles/server-auth-tls.yaml"
    assert d.hint


def test_roles_are_the_ones_bound_to_the_component_not_ones_named_like_them():
    # A Role called argo-server-role that nothing binds to argo-server is not argo-server's role.
    decoy = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "argo-server-role", "namespace": "argo", "resourceVersion": "1"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]}
    live = live_of(decoy, CLUSTER_ROLE)
    plan = make_plan(rendered(["read-only-server"], graph_of=live), live, State(STACK), STACK)
    assert [c.key for c in plan.actionable] == [ROLE_KEY]
    report = {t.target: t for t in plan.targets}
    assert report["serverRoles"].key == str(ROLE_KEY)
    assert "install graph" in (report["serverRoles"].chosen or "")


def test_every_role_bound_to_the_component_is_a_target():
    template_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": "argo-server-clusterworkflowtemplate-role", "resourceVersion": "3"},
                     "rules": [{"apiGroups": ["argoproj.io"], "resources": ["clusterworkflowtemplates"],
                                "verbs": ["create", "get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "argo-server-clusterworkflowtemplate-role-binding", "resourceVersion": "1"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "argo-server-clusterworkflowtemplate-role"},
               "subjects": [{"kind": "ServiceAccount", "name": "argo-server", "namespace": "argo"}]}
    live = live_of(CLUSTER_ROLE, template_role, binding)
    plan = make_plan(rendered(["read-only-server"], graph_of=live), live, State(STACK), STACK)
    assert sorted(c.key.name for c in plan.actionable) == ["argo-server-cluster-role",
                                                            "argo-server-clusterworkflowtemplate-role"]


def test_patch_update_with_conflict_and_restore():
    plan = make_plan(rendered(["read-only-server"]), live_of(CLUSTER_ROLE), State(STACK), STACK)
    c = only_change(plan)
    assert (c.action, c.kind) == (Action.UPDATE, ChangeKind.PATCH)
    original = json.loads(c.body["metadata"]["annotations"].pop("harden.dev/original"))
    assert original["manager"] == "kubectl-client-side-apply" and original["body"]["rules"] == CLUSTER_ROLE["rules"]
    assert c.body == {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "argo-server-cluster-role", "annotations": {}},
                      "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                                {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get"]}]}
    assert [(x.path, x.manager) for x in c.conflicts] == [("rules", "kubectl-client-side-apply")]
    assert c.restore.manager == "kubectl-client-side-apply"
    assert c.restore.body["rules"] == CLUSTER_ROLE["rules"]
    assert c.field_paths == ("rules",)
    assert c.observed_resource_version == "11"


def test_patch_restore_is_kept_from_the_first_record():
    first = Restore({"rules": "as before harden"}, "helm")
    rec = Record(str(ROLE_KEY), "rbac.authorization.k8s.io/v1", ChangeKind.PATCH, ("read-only-server",), "d", ("rules",), first)
    c = only_change(make_plan(rendered(["read-only-server"]), live_of(CLUSTER_ROLE),
                              State(STACK, "l", 1, {str(ROLE_KEY): rec}), STACK))
    assert c.restore.body["rules"] == "as before harden" and c.restore.manager == "helm"
    assert record_for(c).restore == c.restore


def test_field_a_profile_stops_setting_is_handed_back_in_the_same_change():
    """Dropping one of several profiles that patch one object: its field goes back to the recorded
    value (shown in the plan), the others' fields stay."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "workflow-controller-configmap", "namespace": "argo", "resourceVersion": "9"},
          "data": {"workflowDefaults": "spec:\n  serviceAccountName: harden-workflow\n",
                   "workflowRestrictions": "templateReferencing: Strict\n"}}
    key = ResourceKey.of(cm)
    recorded = {"body": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"],
                                                                            "namespace": "argo"},
                         "data": {"workflowDefaults": None, "workflowRestrictions": "templateReferencing: Secure\n"}},
                "manager": "helm"}
    recorded = Restore(recorded["body"], recorded["manager"])
    rec = Record(str(key), "v1", ChangeKind.PATCH, ("workflow-service-account", "workflow-restrictions",), "d",
                 ('data.workflowDefaults', 'data.workflowRestrictions'), recorded)
    plan = make_plan(rendered(["workflow-service-account"]), live_of(cm), State(STACK, "l", 1, {str(key): rec}), STACK)
    c = next(x for x in plan.changes if x.key == key)
    assert c.action is Action.UPDATE
    assert c.release_first["data"] == {"workflowRestrictions": "templateReferencing: Secure\n"}
    assert [(f.path, f.before, f.after) for f in c.fields if "harden.dev/original" not in f.path] == \
        [("data.workflowRestrictions.templateReferencing", "Strict", "Secure")]
    # The new restore point no longer covers the released field, and still covers the kept one.
    assert c.restore.body["data"] == {"workflowDefaults": None}
    after = {ResourceKey.of(o): o for o in predict(live_of(cm), plan)}[key]
    assert after["data"]["workflowRestrictions"] == "templateReferencing: Secure\n"


def test_patch_already_applied_is_noop():
    first = only_change(make_plan(rendered(["read-only-server"]), live_of(CLUSTER_ROLE), State(STACK), STACK))
    applied = copy.deepcopy(CLUSTER_ROLE)
    applied["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get"]}]
    applied["metadata"]["annotations"] = first.body["metadata"]["annotations"]
    c = only_change(make_plan(rendered(["read-only-server"]), live_of(applied), State(STACK), STACK))
    assert c.action is Action.NOOP and c.conflicts == ()
    # The original came back from the object itself: no state was needed to know it.
    assert c.restore == first.restore and c.restore.body["rules"] == CLUSTER_ROLE["rules"]


def test_lost_state_never_records_hardens_own_value_as_the_original():
    # harden applied the role (its manager owns rules), then state and annotation were both lost.
    applied = copy.deepcopy(CLUSTER_ROLE)
    applied["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get"]}]
    applied["metadata"]["managedFields"] = [{"manager": field_manager(STACK), "operation": "Apply",
                                             "fieldsV1": {"f:rules": {}}}]
    c = only_change(make_plan(rendered(["read-only-server"]), live_of(applied), State(STACK), STACK))
    assert "rules" not in c.field_paths and "rules" not in (c.restore.body if c.restore else {})
    assert "is unknown" in c.reason and "destroy will leave it" in c.reason


def test_destroy_with_lost_state_releases_from_the_annotation():
    first = only_change(make_plan(rendered(["read-only-server"]), live_of(CLUSTER_ROLE), State(STACK), STACK))
    applied = copy.deepcopy(CLUSTER_ROLE)
    applied["rules"] = first.body["rules"]
    applied["metadata"]["annotations"] = first.body["metadata"]["annotations"]
    plan = make_plan([], live_of(applied), State(STACK), STACK)
    c = only_change(plan)
    assert c.action is Action.RELEASE and c.body["rules"] == CLUSTER_ROLE["rules"]
    assert c.body["metadata"]["annotations"] == {"harden.dev/original": None}
    # Another stack's annotation is not this stack's to release.
    assert make_plan([], live_of(applied), State("other"), "other").changes == ()


CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "workflow-controller-configmap", "namespace": "argo", "resourceVersion": "3"},
             "data": {"workflowDefaults": "spec:\n  ttlStrategy:\n    secondsAfterCompletion: 60\n",
                      "persistence": "archive: true\n"}}


def test_two_patches_on_one_target_are_combined():
    r = rendered(["workflow-pod-defaults", "workflow-service-account", "workflow-restrictions"])
    plan = make_plan(r, live_of(CONFIGMAP), State(STACK), STACK)
    patches = [c for c in plan.changes if c.kind is ChangeKind.PATCH]
    assert len(patches) == 1
    c = patches[0]
    assert c.action is Action.UPDATE
    assert c.profile == "workflow-pod-defaults, workflow-service-account, workflow-restrictions"
    defaults = yaml.safe_load(c.body["data"]["workflowDefaults"])
    assert defaults["spec"]["ttlStrategy"] == {"secondsAfterCompletion": 60}  # kept
    assert defaults["spec"]["automountServiceAccountToken"] is False          # workflow-pod-defaults
    assert defaults["spec"]["serviceAccountName"] == "harden-workflow"        # workflow-service-account
    assert yaml.safe_load(c.body["data"]["workflowRestrictions"]) == {"templateReferencing": "Strict"}
    assert "persistence" not in c.body["data"]  # harden only sends the keys it sets
    assert set(c.field_paths) == {"data.workflowDefaults", "data.workflowRestrictions"}
    assert "data.workflowDefaults.spec.ttlStrategy.secondsAfterCompletion" not in {f.path for f in c.fields}
    # predict() applies the combined change on top of the live object.
    after = {ResourceKey.of(o): o for o in predict(live_of(CONFIGMAP), plan)}
    cm = after[ResourceKey.of(CONFIGMAP)]
    assert cm["data"]["persistence"] == "archive: true\n"
    assert yaml.safe_load(cm["data"]["workflowDefaults"]) == defaults


def test_missing_container_is_an_error():
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "argo-server", "namespace": "argo", "resourceVersion": "1"},
              "spec": {"template": {"spec": {"containers": [{"name": "main", "args": ["server"]}]}}}}
    with pytest.raises(Diagnostics) as ei:
        make_plan(rendered(["server-auth-tls"]), live_of(deploy), State(STACK), STACK)
    assert "argo-server" in ei.value.diagnostics[0].summary


def deployment_with_sidecar():
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "argo-server", "namespace": "argo", "resourceVersion": "1", "managedFields": [
                {"manager": "helm", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    'k:{"name":"argo-server"}': {".": {}, "f:args": {}, "f:name": {}}}}}}}},
                {"manager": "istio", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    'k:{"name":"istio-proxy"}': {".": {}, "f:args": {}, "f:name": {}}}}}}}}]},
            "spec": {"template": {"spec": {"containers": [
                {"name": "istio-proxy", "args": ["proxy"]},
                {"name": "argo-server", "args": ["server", "--auth-mode", "server"]}]}}}}


def test_container_args_patch_on_second_container():
    c = only_change(make_plan(rendered(["server-auth-tls"]), live_of(deployment_with_sidecar()), State(STACK), STACK))
    assert c.action is Action.UPDATE
    assert c.body["spec"]["template"]["spec"]["containers"] == [
        {"name": "argo-server", "args": ["server", "--auth-mode=client", "--secure=true"]}]
    assert c.restore.body["spec"]["template"]["spec"]["containers"] == [
        {"name": "argo-server", "args": ["server", "--auth-mode", "server"]}]
    assert c.restore.manager == "helm"


def test_container_args_conflict_names_the_owner_of_that_container():
    c = only_change(make_plan(rendered(["server-auth-tls"]), live_of(deployment_with_sidecar()), State(STACK), STACK))
    assert {x.manager for x in c.conflicts} == {"helm"}


# -- predict ---------------------------------------------------------------------------------------

def test_predict_applies_creates_updates_and_deletes():
    r = rendered(["metrics-ingress", "read-only-server"])
    orphan = labelled("harden-orphan")
    live = live_of(CLUSTER_ROLE, orphan)
    plan = make_plan(r, live, State(STACK), STACK)
    assert sorted(c.action.name for c in plan.actionable) == ["CREATE", "DELETE", "UPDATE"]
    after = {ResourceKey.of(o): o for o in predict(live, plan)}
    assert ResourceKey.of(orphan) not in after
    assert after[METRICS_KEY] == r[0].objects[0].body
    assert [rule["verbs"] for rule in after[ROLE_KEY]["rules"]] == [["get", "list", "watch"], ["get"]]
    assert after[ROLE_KEY]["metadata"]["resourceVersion"] == "11"  # an update merges into the live object
    # The live snapshot itself is untouched.
    assert live.get(ROLE_KEY)["rules"] == CLUSTER_ROLE["rules"]
    assert live.get(ResourceKey.of(orphan)) is not None


def test_record_for_object_and_patch():
    r = rendered(["metrics-ingress"])
    c = only_change(make_plan(r, live_of(), State(STACK), STACK))
    rec = record_for(c)
    assert (rec.key, rec.kind, rec.profiles, rec.restore) == (str(METRICS_KEY), ChangeKind.OBJECT, ("metrics-ingress",), None)
    other = record_for(only_change(make_plan(rendered(["metrics-ingress"], ["metricsPort=9091"]), live_of(),
                                             State(STACK), STACK)))
    assert rec.digest != other.digest


# -- stacks are isolated ---------------------------------------------------------------------------

def test_object_owned_by_another_stack_is_refused_not_taken_over():
    """Two stacks selecting the same profile would fight over one object; the plan refuses instead."""
    theirs = labelled("harden-allow-metrics-ingress", stack="prod")
    with pytest.raises(Diagnostics) as exc:
        make_plan(rendered(["metrics-ingress"]), live_of(theirs), State(STACK), STACK)
    text = exc.value.render()
    assert "belongs to stack 'prod'" in text and "metrics-ingress" in text


def test_each_stack_applies_under_its_own_field_manager():
    from harden.model import field_manager

    assert field_manager("default") == "harden"
    assert field_manager("prod") != field_manager("staging")
    # Another stack's manager is a conflict like any other owner, so the plan names it.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "argo-server-cluster-role", "resourceVersion": "7",
                         "managedFields": [{"manager": field_manager("prod"), "operation": "Apply",
                                            "fieldsV1": {"f:rules": {}}}]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]}
    plan = make_plan(rendered(["read-only-server"]), live_of(role), State(STACK), STACK)
    c = only_change(plan)
    assert [(x.path, x.manager) for x in c.conflicts] == [("rules", "harden-prod")]


def test_plan_decides_the_write_phase_of_every_change():
    # Default-deny policies are written after the allowances and removed before them; apply only
    # follows the phase the plan recorded.
    allow = "harden-allow-server-ingress"
    plan = make_plan(rendered(["namespace-isolation"]), live_of(), State(STACK), STACK)
    phases = {c.key.name: c.phase for c in plan.actionable}
    deny = [n for n, p in phases.items() if p is Phase.ISOLATE]
    assert deny and all("deny" in n for n in deny)
    assert phases[allow] is Phase.WRITE
    # Dropping the profile: the denies go first (UNISOLATE), the allowances after (REMOVE).
    applied = {str(c.key): record_for(c) for c in plan.actionable}
    live = live_of(*[{**c.body, "metadata": {**c.body["metadata"], "resourceVersion": "1"}} for c in plan.actionable])
    gone = make_plan([], live, State(STACK, "l", 1, applied), STACK)
    removal = {c.key.name: c.phase for c in gone.actionable}
    assert {removal[n] for n in deny} == {Phase.UNISOLATE}
    assert removal[allow] is Phase.REMOVE
    assert sorted(Phase, key=lambda p: p.order) == [Phase.PREPARE, Phase.WRITE, Phase.ISOLATE, Phase.UNISOLATE,
                                                    Phase.REMOVE]


def test_every_change_carries_the_profile_line_that_asked_for_it():
    plan = make_plan(rendered(["metrics-ingress", "read-only-server"]), live_of(CLUSTER_ROLE), State(STACK), STACK,
                     profile_files={"metrics-ingress": "profiles/metrics-ingress.yaml",
                                    "read-only-server": "profiles/read-only-server.yaml"})
    for c in plan.actionable:
        assert c.source.file == f"profiles/{c.profiles[0]}.yaml"
        text = Path(c.source.file).read_text().splitlines()
        assert c.source.line and 1 <= c.source.line <= len(text)


def test_re_plan_after_a_patch_writes_the_same_original():
    # The ConfigMap had no `data` at all: the original is "these keys absent", however it is read.
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "workflow-controller-configmap", "namespace": "argo", "resourceVersion": "9"}}
    first = only_change(make_plan(rendered(["workflow-restrictions"]), live_of(cm), State(STACK), STACK))
    applied = {**cm, "data": first.body["data"], "metadata": {**cm["metadata"], **first.body["metadata"]}}
    state = State(STACK, "l", 1, {str(first.key): record_for(first)})
    again = only_change(make_plan(rendered(["workflow-restrictions"]), live_of(applied), state, STACK))
    assert again.action is Action.NOOP, [(f.path, f.before, f.after) for f in again.fields]
    assert again.restore == first.restore


# -- the in-sync record: no diff for an object nobody wrote since harden found it in sync ----------

def _written(c, rv="41", uid="1f0c2a3e-0000-4000-8000-000000000041"):
    """What the API server returns for an apply of `c`: its body as stored, harden owning every field."""
    obj = server_copy(c.body, rv=rv)
    obj["metadata"]["uid"] = uid
    return obj


def test_an_apply_that_left_the_object_as_written_records_it_in_sync():
    from harden import __version__
    from harden.plan import in_sync_token, written_in_sync

    c = only_change(make_plan(rendered(["metrics-ingress"]), live_of(), State(STACK), STACK))
    written = _written(c)
    token = in_sync_token(written)
    assert token is not None and token.startswith(f"41/1f0c2a3e-0000-4000-8000-000000000041@{__version__}+")
    own = "harden"  # the manager the recording applied under
    assert [m["manager"] for m in written["metadata"]["managedFields"]] == [own]
    assert written_in_sync(c, written, "someone-else") == token  # owns nothing here: nothing to prune
    assert written_in_sync(c, written, own) == token
    # The server (a mutating webhook, a default harden does not know) rewrote a declared field:
    # the object is left to be compared field by field.
    mutated = copy.deepcopy(written)
    mutated["spec"]["ingress"][0]["ports"][0]["port"] = 1
    assert written_in_sync(c, mutated, own) is None
    # Another actor's entry in a list harden declares: the list is not held as a whole.
    appended = copy.deepcopy(written)
    appended["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]})
    assert written_in_sync(c, appended, own) is None
    # harden owns a field the body no longer declares: the next apply would prune it.
    extra = copy.deepcopy(written)
    extra["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:annotations"] = {"f:note": {}}
    assert written_in_sync(c, extra, own) is None
    assert written_in_sync(c, None, own) is None
    no_uid = copy.deepcopy(written)
    del no_uid["metadata"]["uid"]
    assert written_in_sync(c, no_uid, own) is None


def test_a_plan_trusts_the_in_sync_record_only_for_the_same_object_version_body_and_harden():
    from harden.plan import in_sync_token

    r = rendered(["metrics-ingress"])
    c = only_change(make_plan(r, live_of(), State(STACK), STACK))
    live = _written(c, rv="41")
    rec = record_for(c, in_sync_token(live))
    assert rec.in_sync == in_sync_token(live) and Record.from_dict(rec.to_dict()) == rec
    state = State(STACK, "l", 1, {str(c.key): rec})
    live["spec"]["ingress"][0]["ports"][0]["port"] = 1  # not what the server would keep at rv 41
    same = only_change(make_plan(r, live_of(live), state, STACK))
    # At resourceVersion 41 nothing was written since the object held its body: no diff is made.
    assert (same.action, same.reason, same.observed_resource_version) == (Action.NOOP, "in sync", "41")
    assert same.in_sync == rec.in_sync
    # Any write moves the resourceVersion on: then the diff decides, and finds the change.
    moved = copy.deepcopy(live)
    moved["metadata"]["resourceVersion"] = "42"
    assert only_change(make_plan(r, live_of(moved), state, STACK)).action is Action.UPDATE
    # The same number on another object (deleted and created again, or another cluster's store).
    reborn = copy.deepcopy(live)
    reborn["metadata"]["uid"] = "9d1e7a00-0000-4000-8000-000000000099"
    assert only_change(make_plan(r, live_of(reborn), state, STACK)).action is Action.UPDATE
    # Another body (the profile changed) or another harden version: the diff decides too.
    other_body = State(STACK, "l", 1, {str(c.key): Record(**{**rec.__dict__, "digest": "0" * 16})})
    assert only_change(make_plan(r, live_of(live), other_body, STACK)).action is Action.UPDATE
    other_version = State(STACK, "l", 1, {str(c.key): Record(
        **{**rec.__dict__, "in_sync": rec.in_sync.rsplit("@", 1)[0] + "@0.0.0-other"})})
    assert only_change(make_plan(r, live_of(live), other_version, STACK)).action is Action.UPDATE
    # And without the record's shortcut the verdicts agree wherever the object really is in sync;
    # the plan says what apply records of it.
    held = _written(c, rv="41")
    found = only_change(make_plan(r, live_of(held), State(STACK, "l", 1, {str(c.key): record_for(c)}), STACK))
    assert only_change(make_plan(r, live_of(held), state, STACK)) == found
    assert found.in_sync == in_sync_token(held)
    from harden.model import Change as ChangeModel
    assert ChangeModel.from_dict(found.to_dict()) == found


def test_a_no_op_is_recorded_in_sync_only_if_it_holds_under_any_merge_key_table():
    # The plan's own table keys the list by name, so another actor's entry is no change to it; a
    # table where the list is atomic (another identity's schema access, a cluster upgrade) sees one.
    from types import MappingProxyType

    from harden.mergekeys import MergeKeys
    from harden.model import SourceRef
    from harden.plan import _object_change, in_sync_token

    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "argo"},
            "imagePullSecrets": [{"name": "reg"}]}
    live = {**copy.deepcopy(body), "imagePullSecrets": [{"name": "reg"}, {"name": "someone-elses"}]}
    live["metadata"].update(resourceVersion="7", uid="u-1")
    keyed = MergeKeys(MappingProxyType({"imagePullSecrets": "name"}))
    key = ResourceKey.of(body)
    noop = _object_change(key, body, "p", live, "harden", SourceRef(), keyed)
    assert noop.action is Action.NOOP and noop.in_sync is None
    state = State(STACK, "l", 1, {str(key): record_for(noop, noop.in_sync)})
    assert _object_change(key, body, "p", live, "harden", SourceRef(), BUILTIN_KEYS,
                          state.records[str(key)]).action is Action.UPDATE
    # Held whole, the no-op is recorded, and trusted under any table.
    held = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": "7", "uid": "u-1"}}
    noop = _object_change(key, body, "p", held, "harden", SourceRef(), keyed)
    assert noop.in_sync == in_sync_token(held)


def test_secret_values_a_write_returned_are_judged_masked_as_a_plan_sees_them():
    from harden.plan import written_in_sync

    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "argo"},
            "data": {"token": "c2VjcmV0"}}
    written = {**copy.deepcopy(body), "type": "Opaque"}
    written["metadata"].update(resourceVersion="3", uid="u-3")
    c = Change(ResourceKey.of(body), "v1", Action.CREATE, ChangeKind.OBJECT, ("p",), "r", body=body)
    # A plan compares the masked value with the body's and always finds a change: no shortcut may hide that.
    assert written_in_sync(c, written, "harden") is None
