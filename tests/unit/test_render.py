"""render: structural substitution, labels, `when:`, and materializing patches on a live object."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from harden.load import Selected, load_profile, select
from harden.model import LABEL_MANAGED_BY, LABEL_PROFILE, LABEL_STACK, ResourceKey
from harden.render import (
    ConfigMapYamlError,
    PatchIntent,
    append_yaml_list,
    edit_args,
    materialize,
    render,
    restrict_rules,
    substitute,
)


def rendered(profiles, sets=(), stack="st"):
    sel = select(list(profiles), None, list(sets))
    return [render(s, stack) for s in sel.items]


def by_name(r):
    return {o.key.name: o for o in r.objects}


# -- substitution ----------------------------------------------------------------------------------

def test_whole_string_reference_becomes_typed_value():
    out = substitute({"port": "${p}", "sel": "${labels}", "flag": "${b}", "none": "${missing}"},
                     {"p": 5432, "labels": {"app": "x"}, "b": False})
    assert out["port"] == 5432 and isinstance(out["port"], int)
    assert out["sel"] == {"app": "x"}
    assert out["flag"] is False
    assert out["none"] is None


def test_embedded_reference_becomes_text():
    out = substitute({"name": "harden-${ns}-policy", "sel": "to ${labels}", "n": "port-${p}"},
                     {"ns": "argo", "labels": {"app": "x", "tier": "db"}, "p": 80})
    assert out == {"name": "harden-argo-policy", "sel": "to app=x,tier=db", "n": "port-80"}


def test_list_reference_is_spliced_into_enclosing_list():
    out = substitute({"to": ["${peers}", {"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                     {"peers": [{"a": 1}, {"b": 2}]})
    assert out["to"] == [{"a": 1}, {"b": 2}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]


def test_mapping_reference_in_list_is_not_spliced():
    out = substitute(["${peer}"], {"peer": {"podSelector": {}}})
    assert out == [{"podSelector": {}}]


def test_substituted_values_are_copies():
    value = {"app": "x"}
    out = substitute({"a": "${v}", "b": "${v}"}, {"v": value})
    out["a"]["app"] = "changed"
    assert value == {"app": "x"} and out["b"] == {"app": "x"}


def test_value_text_cannot_inject_yaml():
    out = substitute({"name": "x-${v}"}, {"v": "a\nkind: Secret"})
    assert out == {"name": "x-a\nkind: Secret"}


def test_cidr_list_and_port_list_render_as_networkpolicy_shapes():
    r = rendered(["namespace-isolation"], ["apiServerCIDRs=[10.0.0.1/32, 10.0.0.2/32]", "apiServerPorts=[6443]"])[0]
    api = by_name(r)["harden-allow-kube-api"].body
    assert api["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "10.0.0.2/32"}}],
                                      "ports": [{"protocol": "TCP", "port": 6443}]}]


def test_port_parameter_is_an_integer_in_the_object():
    r = rendered(["db-egress"], ["database=10.1.0.0/16", "port=3306"])[0]
    port = by_name(r)["harden-allow-db-egress-server"].body["spec"]["egress"][0]["ports"][0]["port"]
    assert port == 3306 and isinstance(port, int)


# -- labels ----------------------------------------------------------------------------------------

def test_every_object_is_labelled_with_manager_profile_and_stack():
    for r in rendered(["namespace-isolation", "metrics-ingress"], stack="prod-argo"):
        assert r.objects
        for o in r.objects:
            labels = o.body["metadata"]["labels"]
            assert labels[LABEL_MANAGED_BY] == "harden"
            assert labels[LABEL_PROFILE] == r.profile
            assert labels[LABEL_STACK] == "prod-argo"
            assert o.key == ResourceKey.of(o.body)


def test_profile_labels_are_kept_beside_harden_labels(tmp_path):
    p = tmp_path / "labelled.yaml"
    p.write_text(textwrap.dedent("""\
        apiVersion: harden.dev/v1alpha1
        kind: Profile
        metadata:
          name: labelled
          title: t
          recommendation: [{document: d, section: s}]
        objects:
          - apiVersion: v1
            kind: ConfigMap
            metadata:
              name: cm
              namespace: argo
              labels: {team: sec}
        """))
    profile = load_profile(str(p))
    r = render(Selected(profile, {}), "st")
    assert r.objects[0].body["metadata"]["labels"] == {
        "team": "sec", LABEL_MANAGED_BY: "harden", LABEL_PROFILE: "labelled", LABEL_STACK: "st"}
    assert r.objects[0].line == profile.line("objects", 0)


def test_rendering_never_changes_the_profile_even_where_objects_share_its_parts(tmp_path):
    # Parts of a template with no reference are shared by every object rendered from it; the labels
    # and the `ingress: []` render adds must land on the object, never in the profile or a sibling.
    import copy

    from harden.mergekeys import BUILTIN
    from harden.model import Live, State
    from harden.plan import make_plan

    p = tmp_path / "shared.yaml"
    p.write_text(textwrap.dedent("""\
        apiVersion: harden.dev/v1alpha1
        kind: Profile
        metadata:
          name: shared
          title: t
          recommendation: [{document: d, section: s}]
        parameters:
          - {name: namespaces, type: stringList, default: [a, b, c]}
        objects:
          - forEach: {parameter: namespaces, as: ns}
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny, namespace: "${ns}"}
            spec: {podSelector: {}, policyTypes: [Ingress]}
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: fixed, namespace: a, labels: {team: sec}}
            data: {k: v}
        """))
    profile = load_profile(str(p))
    before = copy.deepcopy(profile.data)
    first = render(Selected(profile, {"namespaces": ["a", "b", "c"]}), "st")
    again = render(Selected(profile, {"namespaces": ["a", "b", "c"]}), "other")
    assert profile.data == before
    deny = [o.body for o in first.objects if o.key.kind == "NetworkPolicy"]
    assert [d["metadata"]["namespace"] for d in deny] == ["a", "b", "c"]
    assert all(d["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []} for d in deny)
    cm = next(o.body for o in again.objects if o.key.kind == "ConfigMap")
    assert cm["metadata"]["labels"][LABEL_STACK] == "other"
    assert next(o.body for o in first.objects if o.key.kind == "ConfigMap")["metadata"]["labels"][LABEL_STACK] == "st"
    # Planning (normalization, diffing against nothing) leaves the shared parts alone too.
    make_plan([first], Live(), State("st"), "st", keys=BUILTIN)
    assert profile.data == before
    assert all(d["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []} for d in deny)


# -- when: -----------------------------------------------------------------------------------------

def test_db_egress_with_cidr_has_no_ingress_policy_in_db_namespace():
    r = rendered(["db-egress"], ["database=10.20.0.0/24"])[0]
    names = set(by_name(r))
    assert names == {"harden-allow-db-egress-controller", "harden-allow-db-egress-server"}
    assert all(o.key.namespace == "argo" for o in r.objects)
    assert by_name(r)["harden-allow-db-egress-server"].body["spec"]["egress"][0]["to"] == [
        {"ipBlock": {"cidr": "10.20.0.0/24"}}]


def test_db_egress_with_selector_opens_ingress_in_db_namespace():
    r = rendered(["db-egress"], ["database={namespace: data, podSelector: {app: pg}}"])[0]
    objs = by_name(r)
    ingress = objs["harden-allow-db-ingress-from-argo"]
    assert ingress.key.namespace == "data"
    assert ingress.body["spec"]["podSelector"] == {"matchLabels": {"app": "pg"}}
    peers = ingress.body["spec"]["ingress"][0]["from"]
    assert all(p["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "argo"}} for p in peers)
    apps = set()
    for p in peers:  # either one peer per component, or one peer with `app In (...)`
        sel = p["podSelector"]
        apps |= {sel["matchLabels"]["app"]} if "matchLabels" in sel else set(sel["matchExpressions"][0]["values"])
    assert apps == {"argo-server", "workflow-controller"}
    assert ingress.body["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert objs["harden-allow-db-egress-server"].body["spec"]["egress"][0]["to"] == [
        {"podSelector": {"matchLabels": {"app": "pg"}},
         "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}]


def test_selector_without_namespace_defaults_to_the_profile_namespace():
    r = rendered(["db-egress"], ["database={podSelector: {app: pg}}", "namespace=wf"])[0]
    assert by_name(r)["harden-allow-db-ingress-from-argo"].key.namespace == "wf"


def test_when_set_and_unset_on_optional_parameters():
    names = set(by_name(rendered(["ui-read-only-role"])[0]))
    assert names == {"ui-user-read-only"}
    names = set(by_name(rendered(["ui-read-only-role"], ["group=viewers"])[0]))
    assert names == {"ui-user-read-only", "ui-user-read-only-group"}
    r = rendered(["ui-read-only-role"], ["group=viewers"])[0]
    assert [e["id"] for e in r.expectations] == ["group-reads-workflows", "group-cannot-submit"]
    assert rendered(["ui-read-only-role"])[0].expectations == ()


def test_when_contains_tests_a_list_parameter_for_one_item():
    assert "harden-argo-server-sso" in by_name(rendered(["read-only-server"], ["authModes=[client, sso]"])[0])
    assert "harden-argo-server-sso" not in by_name(rendered(["read-only-server"], ["authModes=[client]"])[0])
    assert "harden-argo-server-sso" not in by_name(rendered(["read-only-server"])[0])


def test_peer_list_renders_each_peer():
    r = rendered(["namespace-isolation"], ["workflowEgress=[10.0.0.0/8, {namespace: apps, podSelector: {app: api}}]"])[0]
    assert by_name(r)["harden-workflows-allow-egress"].body["spec"]["egress"] == [{"to": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
        {"podSelector": {"matchLabels": {"app": "api"}}, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]}]


# -- restrict_rules --------------------------------------------------------------------------------

READ = ["get", "list", "watch"]


def test_restrict_keeps_only_allowed_verbs_in_order():
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "delete", "list"]}]
    assert restrict_rules(rules, READ) == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


def test_restrict_wildcard_verb_becomes_the_allowed_verbs():
    rules = [{"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["*"]}]
    assert restrict_rules(rules, READ)[0]["verbs"] == READ


def test_restrict_drops_listed_resources_and_rules_left_without_resources():
    rules = [{"apiGroups": [""], "resources": ["pods", "pods/exec", "pods/log"], "verbs": ["get", "create"]},
             {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]
    assert restrict_rules(rules, READ, ["pods/exec"]) == [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}]


def test_restrict_removes_duplicate_verbs():
    rules = [{"resources": ["x"], "verbs": ["watch", "get", "watch", "list", "get"]}]
    assert restrict_rules(rules, READ)[0]["verbs"] == ["watch", "get", "list"]


def test_restrict_drops_rules_left_without_verbs():
    rules = [{"resources": ["secrets"], "verbs": ["create", "delete"]},
             {"resources": ["pods"], "verbs": ["get"]}]
    assert restrict_rules(rules, READ) == [{"resources": ["pods"], "verbs": ["get"]}]


def test_restrict_does_not_mutate_input():
    rules = [{"resources": ["pods", "pods/exec"], "verbs": ["get", "create"]}]
    restrict_rules(rules, READ, ["pods/exec"])
    assert rules == [{"resources": ["pods", "pods/exec"], "verbs": ["get", "create"]}]


def test_restrict_keeps_non_resource_rules():
    rules = [{"nonResourceURLs": ["/metrics"], "verbs": ["get", "post"]}]
    assert restrict_rules(rules, READ, ["pods/exec"]) == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


# -- edit_args -------------------------------------------------------------------------------------

def test_edit_args_removes_separate_token_form():
    assert edit_args(["server", "--auth-mode", "server", "--x"], {}, ["--auth-mode"]) == ["server", "--x"]


def test_edit_args_removes_equals_form():
    assert edit_args(["server", "--auth-mode=server", "--x"], {}, ["--auth-mode"]) == ["server", "--x"]


def test_edit_args_removes_every_occurrence_and_sets_once():
    out = edit_args(["server", "--auth-mode", "server", "--auth-mode=sso", "--namespaced"],
                    {"--auth-mode": "client", "--secure": "true"}, ["--auth-mode"])
    assert out == ["server", "--namespaced", "--auth-mode=client", "--secure=true"]


def test_edit_args_bare_flag_set():
    assert edit_args(["server"], {"--namespaced": True}, []) == ["server", "--namespaced"]


def test_edit_args_setting_an_existing_bare_flag_does_not_swallow_the_next_positional():
    assert edit_args(["server", "--namespaced", "extra"], {"--namespaced": True}, []) == [
        "server", "extra", "--namespaced"]


def test_edit_args_removed_flag_followed_by_flag_keeps_the_flag():
    assert edit_args(["server", "--auth-mode", "--secure"], {}, ["--auth-mode"]) == ["server", "--secure"]


def test_edit_args_leaves_flags_with_a_common_prefix():
    assert edit_args(["--auth-mode-x=1", "--auth-mode=server"], {}, ["--auth-mode"]) == ["--auth-mode-x=1"]


def test_edit_args_is_idempotent():
    once = edit_args(["server", "--auth-mode", "server"], {"--auth-mode": "client", "--secure": "true"}, ["--auth-mode"])
    assert edit_args(once, {"--auth-mode": "client", "--secure": "true"}, ["--auth-mode"]) == once


def test_edit_args_remove_values_keeps_the_other_values_of_a_repeatable_flag():
    # argo-server with server and sso: only server goes, sso stays.
    out = edit_args(["server", "--auth-mode", "sso", "--auth-mode", "server", "--x"], {}, [],
                    {"--auth-mode": ["server"]}, {"--auth-mode": "client"})
    assert out == ["server", "--auth-mode=sso", "--x", "--auth-mode=client"]


def test_edit_args_ensure_adds_nothing_when_the_value_is_there():
    args = ["server", "--auth-mode=client", "--auth-mode=sso"]
    assert edit_args(args, {}, [], {"--auth-mode": ["server"]}, {"--auth-mode": "client"}) == args


def test_edit_args_default_is_written_only_where_the_flag_is_absent():
    assert edit_args(["server"], {}, [], defaults={"--secure": "true"}) == ["server", "--secure=true"]
    assert edit_args(["server", "--secure=false"], {}, [], defaults={"--secure": "true"}) == ["server", "--secure=false"]


def test_edit_args_value_edits_are_idempotent():
    once = edit_args(["server", "--auth-mode=server"], {}, [], {"--auth-mode": ["server"]}, {"--auth-mode": "client"})
    assert once == ["server", "--auth-mode=client"]
    assert edit_args(once, {}, [], {"--auth-mode": ["server"]}, {"--auth-mode": "client"}) == once


# -- materialize -----------------------------------------------------------------------------------

def intent(op, spec):
    return PatchIntent("p", "t", op, spec, "", 1)


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"},
      "data": {"workflowDefaults": "spec:\n  ttlStrategy:\n    secondsAfterCompletion: 5\n  securityContext:\n    fsGroup: 1\n",
               "persistence": "archive: true\n"}}


def test_materialize_configmap_yaml_merges_structurally():
    partial, paths = materialize(intent("configMapYaml", {"key": "workflowDefaults",
                                                          "merge": {"spec": {"securityContext": {"runAsNonRoot": True}}}}), CM)
    assert set(partial) == {"data"} and set(partial["data"]) == {"workflowDefaults"}
    assert yaml.safe_load(partial["data"]["workflowDefaults"]) == {
        "spec": {"ttlStrategy": {"secondsAfterCompletion": 5}, "securityContext": {"fsGroup": 1, "runAsNonRoot": True}}}
    assert paths == ["data.workflowDefaults"]
    assert CM["data"]["persistence"] == "archive: true\n"  # the live object is untouched


def test_materialize_configmap_yaml_on_missing_key_creates_it():
    partial, _ = materialize(intent("configMapYaml", {"key": "workflowRestrictions",
                                                      "merge": {"templateReferencing": "Strict"}}), CM)
    assert yaml.safe_load(partial["data"]["workflowRestrictions"]) == {"templateReferencing": "Strict"}


def test_materialize_configmap_yaml_without_data():
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "argo"}}
    partial, _ = materialize(intent("configMapYaml", {"key": "k", "merge": {"a": {"b": 1}}}), live)
    assert yaml.safe_load(partial["data"]["k"]) == {"a": {"b": 1}}


ARGOCD_CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "namespace": "argocd"},
             "data": {"resource.exclusions": "# ours: cilium churn\n- apiGroups: [cilium.io]\n  kinds: [CiliumIdentity]\n"
                                             "- apiGroups:\n  - certificates.k8s.io\n  kinds: [CertificateSigningRequest]\n"}}
CSR = {"apiGroups": ["certificates.k8s.io"], "kinds": ["CertificateSigningRequest"]}
TOKEN_REVIEW = {"apiGroups": ["authentication.k8s.io"], "kinds": ["TokenReview"]}


def test_materialize_configmap_yaml_append_keeps_the_existing_text_and_adds_what_is_missing():
    before = ARGOCD_CM["data"]["resource.exclusions"]
    partial, paths = materialize(intent("configMapYaml", {"key": "resource.exclusions", "append": [CSR, TOKEN_REVIEW]}),
                                 ARGOCD_CM)
    text = partial["data"]["resource.exclusions"]
    assert text.startswith(before)  # comment, flow style and the user's entries untouched
    assert yaml.safe_load(text) == [{"apiGroups": ["cilium.io"], "kinds": ["CiliumIdentity"]}, CSR, TOKEN_REVIEW]
    assert paths == ['data["resource.exclusions"]']
    assert ARGOCD_CM["data"]["resource.exclusions"] == before


def test_materialize_configmap_yaml_append_all_present_is_the_same_text():
    before = ARGOCD_CM["data"]["resource.exclusions"]
    partial, _ = materialize(intent("configMapYaml", {"key": "resource.exclusions", "append": [CSR]}), ARGOCD_CM)
    assert partial["data"]["resource.exclusions"] == before


def test_append_yaml_list_on_absent_empty_and_comment_only_values():
    assert yaml.safe_load(append_yaml_list("", [CSR])) == [CSR]
    assert yaml.safe_load(append_yaml_list("[]", [CSR])) == [CSR]
    kept = append_yaml_list("# nothing excluded yet\n", [CSR])
    assert kept.startswith("# nothing excluded yet\n") and yaml.safe_load(kept) == [CSR]


def test_append_yaml_list_rewrites_a_list_that_plain_appending_would_break():
    # a flow list (and an indented block list) cannot take block entries below it: written out anew
    for text in ("[{apiGroups: [cilium.io], kinds: [CiliumIdentity]}]\n", "  - apiGroups: [cilium.io]\n    kinds: [CiliumIdentity]\n"):
        assert yaml.safe_load(append_yaml_list(text, [CSR])) == [{"apiGroups": ["cilium.io"], "kinds": ["CiliumIdentity"]}, CSR]


@pytest.mark.parametrize("text, message", [
    ("- apiGroups: [unclosed\n", "does not hold valid YAML"),
    ("apiGroups: [cilium.io]\n", "holds a YAML mapping, not the list"),
    ("just text\n", "holds a YAML scalar, not the list"),
])
def test_materialize_configmap_yaml_append_refuses_what_it_cannot_read(text, message):
    live = {**ARGOCD_CM, "data": {"resource.exclusions": text}}
    spec_intent = intent("configMapYaml", {"key": "resource.exclusions", "append": [CSR]})
    with pytest.raises(ConfigMapYamlError, match=message) as exc:
        materialize(spec_intent, live)
    assert exc.value.intent is spec_intent


def test_materialize_configmap_yaml_merge_refuses_a_list():
    live = {**CM, "data": {"workflowDefaults": "- a\n- b\n"}}
    with pytest.raises(ConfigMapYamlError, match="holds a YAML list, not the mapping"):
        materialize(intent("configMapYaml", {"key": "workflowDefaults", "merge": {"spec": {}}}), live)


def test_materialize_restrict_verbs_on_live_rules():
    live = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get", "create"]}]}
    partial, paths = materialize(intent("restrictVerbs", {"verbs": READ, "dropResources": ["pods/exec"]}), live)
    assert partial == {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    assert paths == ["rules"]


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argo-server", "namespace": "argo"},
          "spec": {"template": {"spec": {"containers": [
              {"name": "sidecar", "args": ["--auth-mode", "keep"]},
              {"name": "argo-server", "args": ["server", "--auth-mode", "server"]}]}}}}


def test_materialize_container_args_targets_container_by_name():
    partial, paths = materialize(intent("containerArgs", {"container": "argo-server", "remove": ["--auth-mode"],
                                                          "set": {"--auth-mode": "client", "--secure": "true"}}), DEPLOY)
    assert partial == {"spec": {"template": {"spec": {"containers": [
        {"name": "argo-server", "args": ["server", "--auth-mode=client", "--secure=true"]}]}}}}
    assert paths == ["spec.template.spec.containers[name=argo-server].args"]


def test_materialize_container_args_unknown_container_raises_keyerror():
    with pytest.raises(KeyError):
        materialize(intent("containerArgs", {"container": "nope", "remove": ["--x"]}), DEPLOY)


def test_materialize_set_reports_leaf_paths():
    partial, paths = materialize(intent("set", {"spec": {"automountServiceAccountToken": False},
                                                "metadata": {"annotations": {"a.b/c": "x"}}}), DEPLOY)
    assert partial["spec"] == {"automountServiceAccountToken": False}
    assert set(paths) == {"spec.automountServiceAccountToken", 'metadata.annotations["a.b/c"]'}


def test_patches_render_as_intents_with_substituted_specs():
    r = rendered(["server-auth-tls"], ["container=main"])[0]
    assert [(p.target, p.op) for p in r.patches] == [("server", "containerArgs")]
    assert r.patches[0].spec["container"] == "main"
    # Before the install graph is known, a component target has no candidates (no guessed names).
    assert r.targets[0].candidates == ()
