"""Table-driven tests for harden.impact.rbac (RBAC authorizer semantics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harden.impact import rbac
from harden.impact.rbac import (
    ChangeDirection,
    Permission,
    PermissionChange,
    RbacIndex,
    Request,
    Subject,
    SubjectKind,
    authorize,
    check,
    diff_permissions,
    effective_permissions,
    groups_for,
    parse_resource_spec,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "argo-workflows"
RBAC_V1 = "rbac.authorization.k8s.io/v1"

# --------------------------------------------------------------------------- builders


def rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if names:
        r["resourceNames"] = names
    return r


def role(name: str, ns: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": RBAC_V1, "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": list(rules)}


def crole(name: str, *rules: dict[str, Any], labels: dict[str, str] | None = None,
          aggregate: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": RBAC_V1, "kind": "ClusterRole",
                           "metadata": {"name": name, "labels": labels or {}}}
    if rules:
        obj["rules"] = list(rules)
    if aggregate is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": aggregate}
    return obj


def sa(name: str, ns: str | None) -> dict[str, Any]:
    s = {"kind": "ServiceAccount", "name": name}
    if ns:
        s["namespace"] = ns
    return s


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def rb(name: str, ns: str, ref_kind: str, ref_name: str, *subjects: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": RBAC_V1, "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
            "subjects": list(subjects)}


def crb(name: str, ref_name: str, *subjects: dict[str, Any], ref_kind: str = "ClusterRole") -> dict[str, Any]:
    return {"apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
            "subjects": list(subjects)}


ALICE = "alice"
SA_X = "system:serviceaccount:x:bot"


def bind_alice(*rules: dict[str, Any]) -> list[dict[str, Any]]:
    """A ClusterRole with ``rules`` bound cluster-wide to alice."""
    return [crole("r", *rules), crb("b", "r", user(ALICE))]


def req(verb: str, resource: str, group: str = "", sub: str | None = None, ns: str | None = "a",
        name: str | None = None) -> Request:
    return Request(verb=verb, group=group, resource=resource, subresource=sub, namespace=ns, name=name)


# --------------------------------------------------------------------------- authorize table

AGG_SELECTOR = [{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]},
                                      {"key": "deprecated", "operator": "DoesNotExist"}]}]

CASES: list[tuple[str, list[Any], str, list[str], Request, bool]] = [
    # -- verbs / groups / resources wildcards
    ("verb-star", bind_alice(rule(["*"], [""], ["configmaps"])), ALICE, [], req("deletecollection", "configmaps"), True),
    ("verb-exact-miss", bind_alice(rule(["get"], [""], ["configmaps"])), ALICE, [], req("list", "configmaps"), False),
    ("group-star", bind_alice(rule(["get"], ["*"], ["deployments"])), ALICE, [], req("get", "deployments", "apps"), True),
    ("group-core-vs-apps", bind_alice(rule(["get"], [""], ["deployments"])), ALICE, [], req("get", "deployments", "apps"), False),
    ("resource-star-matches-subresource", bind_alice(rule(["get"], [""], ["*"])), ALICE, [], req("get", "pods", sub="log"), True),
    ("all-star", bind_alice(rule(["*"], ["*"], ["*"])), ALICE, [], req("escalate", "clusterroles", "rbac.authorization.k8s.io", ns=None), True),
    # -- subresources
    ("pods-does-not-grant-pods-log", bind_alice(rule(["get"], [""], ["pods"])), ALICE, [], req("get", "pods", sub="log"), False),
    ("pods-log-does-not-grant-pods", bind_alice(rule(["get"], [""], ["pods/log"])), ALICE, [], req("get", "pods"), False),
    ("pods-log-exact", bind_alice(rule(["get"], [""], ["pods/log"])), ALICE, [], req("get", "pods", sub="log"), True),
    ("star-scale-deployments", bind_alice(rule(["update"], ["apps"], ["*/scale"])), ALICE, [], req("update", "deployments", "apps", sub="scale"), True),
    ("star-scale-not-status", bind_alice(rule(["update"], ["apps"], ["*/scale"])), ALICE, [], req("update", "deployments", "apps", sub="status"), False),
    ("star-scale-not-parent", bind_alice(rule(["update"], ["apps"], ["*/scale"])), ALICE, [], req("update", "deployments", "apps"), False),
    # Kubernetes has no "resource/*" wildcard: it only matches the literal string.
    ("pods-slash-star-is-literal", bind_alice(rule(["get"], [""], ["pods/*"])), ALICE, [], req("get", "pods", sub="log"), False),
    # -- resourceNames
    ("names-get-listed", bind_alice(rule(["get", "list", "create"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("get", "configmaps", name="cfg"), True),
    ("names-get-other", bind_alice(rule(["get"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("get", "configmaps", name="other"), False),
    ("names-list-no-name", bind_alice(rule(["get", "list", "create"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("list", "configmaps"), False),
    ("names-watch-no-name", bind_alice(rule(["watch"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("watch", "configmaps"), False),
    ("names-create-no-name", bind_alice(rule(["get", "list", "create"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("create", "configmaps"), False),
    # The authorizer compares names only: a SubjectAccessReview naming the object is allowed.
    ("names-create-with-name-like-sar", bind_alice(rule(["create"], [""], ["configmaps"], ["cfg"])), ALICE, [], req("create", "configmaps", name="cfg"), True),
    ("no-names-any-name", bind_alice(rule(["get"], [""], ["configmaps"])), ALICE, [], req("get", "configmaps", name="whatever"), True),
    # -- binding scope
    ("rb-clusterrole-own-ns",
     [crole("r", rule(["get"], [""], ["pods"])), rb("b", "a", "ClusterRole", "r", user(ALICE))], ALICE, [], req("get", "pods", ns="a"), True),
    ("rb-clusterrole-other-ns",
     [crole("r", rule(["get"], [""], ["pods"])), rb("b", "a", "ClusterRole", "r", user(ALICE))], ALICE, [], req("get", "pods", ns="b"), False),
    ("rb-not-cluster-scope",
     [crole("r", rule(["get"], [""], ["pods"])), rb("b", "a", "ClusterRole", "r", user(ALICE))], ALICE, [], req("get", "pods", ns=None), False),
    ("rb-role-same-ns", [role("r", "a", rule(["get"], [""], ["pods"])), rb("b", "a", "Role", "r", user(ALICE))], ALICE, [], req("get", "pods", ns="a"), True),
    # A RoleBinding can only reference a Role of its own namespace.
    ("rb-role-other-ns-missing", [role("r", "z", rule(["get"], [""], ["pods"])), rb("b", "a", "Role", "r", user(ALICE))], ALICE, [], req("get", "pods", ns="a"), False),
    ("crb-any-ns", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", user(ALICE))], ALICE, [], req("get", "pods", ns="anything"), True),
    ("crb-cluster-scope", [crole("r", rule(["list"], [""], ["nodes"])), crb("b", "r", user(ALICE))], ALICE, [], req("list", "nodes", ns=None), True),
    ("crb-to-role-grants-nothing", [role("r", "a", rule(["get"], [""], ["pods"])), crb("b", "r", user(ALICE), ref_kind="Role")], ALICE, [], req("get", "pods", ns="a"), False),
    ("missing-clusterrole", [crb("b", "nope", user(ALICE))], ALICE, [], req("get", "pods"), False),
    ("missing-role", [rb("b", "a", "Role", "nope", user(ALICE))], ALICE, [], req("get", "pods"), False),
    # -- subjects
    ("user-other-name", bind_alice(rule(["get"], [""], ["pods"])), "bob", ["system:authenticated"], req("get", "pods"), False),
    ("group-member", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", group("devs"))], "bob", ["devs"], req("get", "pods"), True),
    ("group-non-member", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", group("devs"))], "bob", ["ops"], req("get", "pods"), False),
    ("group-sa-namespace",
     [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", group("system:serviceaccounts:x"))], SA_X, list(groups_for(SA_X)), req("get", "pods"), True),
    ("group-sa-other-namespace",
     [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", group("system:serviceaccounts:y"))], SA_X, list(groups_for(SA_X)), req("get", "pods"), False),
    ("sa-subject", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", sa("bot", "x"))], SA_X, [], req("get", "pods"), True),
    ("sa-subject-other-ns", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", sa("bot", "y"))], SA_X, [], req("get", "pods"), False),
    ("sa-rb-defaults-ns", [crole("r", rule(["get"], [""], ["pods"])), rb("b", "x", "ClusterRole", "r", sa("bot", None))], SA_X, [], req("get", "pods", ns="x"), True),
    ("sa-crb-without-ns-matches-nobody", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", sa("bot", None))], SA_X, [], req("get", "pods"), False),
    ("user-subject-with-sa-name", [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", user(SA_X))], SA_X, [], req("get", "pods"), True),
    # -- aggregation (predicted state: the controller has not filled rules yet)
    ("aggregation-match-expressions",
     [crole("agg", aggregate=AGG_SELECTOR), crole("part", rule(["get"], [""], ["secrets"]), labels={"tier": "gold"}),
      crb("b", "agg", user(ALICE))], ALICE, [], req("get", "secrets"), True),
    ("aggregation-notin-excluded",
     [crole("agg", aggregate=AGG_SELECTOR), crole("part", rule(["get"], [""], ["secrets"]), labels={"tier": "bronze"}),
      crb("b", "agg", user(ALICE))], ALICE, [], req("get", "secrets"), False),
    ("aggregation-doesnotexist-excluded",
     [crole("agg", aggregate=AGG_SELECTOR),
      crole("part", rule(["get"], [""], ["secrets"]), labels={"tier": "gold", "deprecated": "true"}),
      crb("b", "agg", user(ALICE))], ALICE, [], req("get", "secrets"), False),
    ("aggregation-keeps-existing-rules",
     [crole("agg", rule(["list"], [""], ["pods"]), aggregate=AGG_SELECTOR), crb("b", "agg", user(ALICE))], ALICE, [], req("list", "pods"), True),
    ("aggregation-transitive",
     [crole("top", aggregate=[{"matchLabels": {"level": "mid"}}]),
      crole("mid", labels={"level": "mid"}, aggregate=[{"matchLabels": {"level": "leaf"}}]),
      crole("leaf", rule(["get"], [""], ["events"]), labels={"level": "leaf"}),
      crb("b", "top", user(ALICE))], ALICE, [], req("get", "events"), True),
    # -- non-RBAC / non-resource
    ("non-rbac-objects-ignored",
     [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, None, *bind_alice(rule(["get"], [""], ["pods"]))],
     ALICE, [], req("get", "pods"), True),
    ("non-resource-url-rule-ignored-for-resources",
     [crole("r", {"verbs": ["get"], "nonResourceURLs": ["*"]}), crb("b", "r", user(ALICE))], ALICE, [], req("get", "pods"), False),
]


@pytest.mark.parametrize(("objects", "username", "groups", "request_", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_authorize(objects: list[dict[str, Any]], username: str, groups: list[str], request_: Request, expected: bool) -> None:
    decision = authorize(objects, username, groups, request_)
    assert decision.allowed is expected, decision.text
    assert bool(decision.reasons) is expected


def test_authorize_reasons_name_binding_role_and_rule() -> None:
    objects = [crole("r", rule(["list"], [""], ["pods"]), rule(["get"], [""], ["pods"])),
               rb("b", "a", "ClusterRole", "r", user(ALICE))]
    decision = authorize(objects, ALICE, [], req("get", "pods", ns="a"))
    assert decision.allowed
    (grant,) = decision.reasons
    assert (grant.binding_kind, grant.binding_name, grant.binding_namespace) == ("RoleBinding", "b", "a")
    assert (grant.role_kind, grant.role_name, grant.rule_index) == ("ClusterRole", "r", 1)
    assert grant.rule.verbs == ("get",)
    assert "RoleBinding/a/b -> ClusterRole/r rule #1" in decision.text
    assert decision.to_dict()["reasons"][0]["ruleIndex"] == 1


def test_aggregation_can_be_disabled_for_live_state_without_controller() -> None:
    objects = [crole("agg", aggregate=AGG_SELECTOR), crole("part", rule(["get"], [""], ["secrets"]), labels={"tier": "gold"}),
               crb("b", "agg", user(ALICE))]
    assert not authorize(objects, ALICE, [], req("get", "secrets"), resolve_aggregation=False).allowed


def test_aggregation_cycle_terminates() -> None:
    objects = [crole("a", rule(["get"], [""], ["pods"]), labels={"k": "a"}, aggregate=[{"matchLabels": {"k": "b"}}]),
               crole("b", rule(["list"], [""], ["pods"]), labels={"k": "b"}, aggregate=[{"matchLabels": {"k": "a"}}]),
               crb("x", "a", user(ALICE))]
    index = RbacIndex.from_objects(objects)
    assert index.authorize(ALICE, [], req("list", "pods")).allowed
    assert index.authorize(ALICE, [], req("get", "pods")).allowed


def test_non_resource_request() -> None:
    objects = [crole("r", {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}),
               crb("b", "r", group("system:authenticated"))]
    assert check(objects, ALICE, "get", "/healthz").allowed
    assert check(objects, ALICE, "get", "/apis/apps/v1").allowed
    assert not check(objects, ALICE, "get", "/metrics").allowed
    assert not check(objects, ALICE, "post", "/healthz").allowed


# --------------------------------------------------------------------------- subjects & parsing

SUBJECT_CASES = [
    ("sa", "system:serviceaccount:argo:argo-server", Subject(SubjectKind.SERVICE_ACCOUNT, "argo-server", "argo")),
    ("group", "group:system:masters", Subject(SubjectKind.GROUP, "system:masters")),
    ("user-prefixed", "user:alice", Subject(SubjectKind.USER, "alice")),
    ("user-bare", "alice", Subject(SubjectKind.USER, "alice")),
    ("user-prefixed-sa-name", "user:system:serviceaccount:a:b", Subject(SubjectKind.SERVICE_ACCOUNT, "b", "a")),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in SUBJECT_CASES], ids=[c[0] for c in SUBJECT_CASES])
def test_subject_parse_roundtrip(text: str, expected: Subject) -> None:
    parsed = Subject.parse(text)
    assert parsed == expected
    assert Subject.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "system:serviceaccount:onlyns", "system:serviceaccount::x", "group:"],
                         ids=["empty", "sa-missing-name", "sa-empty-ns", "group-empty"])
def test_subject_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Subject.parse(text)


GROUP_CASES = [
    ("sa", Subject.parse("system:serviceaccount:argo:x"),
     ("system:serviceaccounts", "system:serviceaccounts:argo", "system:authenticated")),
    ("user", Subject.parse("alice"), ("system:authenticated",)),
    ("group", Subject.parse("group:devs"), ("devs",)),
    ("anonymous", Subject.parse("system:anonymous"), ("system:unauthenticated",)),
]


@pytest.mark.parametrize(("subject", "groups"), [c[1:] for c in GROUP_CASES], ids=[c[0] for c in GROUP_CASES])
def test_subject_groups(subject: Subject, groups: tuple[str, ...]) -> None:
    assert subject.groups() == groups


SPEC_CASES = [
    ("core", "pods", ("pods", "", None)),
    ("core-sub", "pods/log", ("pods", "", "log")),
    ("apps", "deployments.apps", ("deployments", "apps", None)),
    ("apps-sub", "deployments.apps/scale", ("deployments", "apps", "scale")),
    ("dotted-group", "workflows.argoproj.io", ("workflows", "argoproj.io", None)),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_parse_resource_spec(spec: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_resource_spec(spec) == expected


def test_check_uses_implied_service_account_groups() -> None:
    objects = [crole("r", rule(["get"], ["apps"], ["deployments/scale"])), crb("b", "r", group("system:serviceaccounts:x"))]
    assert check(objects, SA_X, "get", "deployments.apps/scale", "x").allowed
    assert not check(objects, SA_X, "get", "deployments.apps", "x").allowed
    assert not check(objects, "alice", "get", "deployments.apps/scale", "x").allowed
    assert check(objects, "alice", "get", "deployments.apps/scale", "x", groups=["system:serviceaccounts:x"]).allowed


# --------------------------------------------------------------------------- effective permissions & diff


def test_effective_permissions_keeps_wildcards_and_scopes() -> None:
    objects = [
        crole("r", rule(["get", "*"], [""], ["pods/log"])),
        role("names", "a", rule(["get"], [""], ["configmaps"], ["cfg"])),
        rb("b1", "a", "ClusterRole", "r", sa("bot", None)),
        rb("b2", "a", "Role", "names", sa("bot", None)),
        crb("b3", "r", group("system:serviceaccounts")),
        crb("b4", "missing", sa("bot", "a")),
    ]
    perms = effective_permissions(objects)
    bot = Subject(SubjectKind.SERVICE_ACCOUNT, "bot", "a")
    assert perms[bot] == frozenset({
        Permission("get", "", "pods/log", "a"), Permission("*", "", "pods/log", "a"),
        Permission("get", "", "configmaps", "a", "cfg"),
        # via its implied group system:serviceaccounts
        Permission("get", "", "pods/log", "*"), Permission("*", "", "pods/log", "*"),
    })
    assert perms[Subject(SubjectKind.GROUP, "system:serviceaccounts")] == frozenset({
        Permission("get", "", "pods/log", "*"), Permission("*", "", "pods/log", "*"),
    })


def _argo_server_objects(verbs: list[str]) -> list[dict[str, Any]]:
    return [
        role("argo-server-role", "argo",
             rule(verbs, ["argoproj.io"], ["workflows"]),
             rule(["get", "list", "watch"], [""], ["pods", "pods/log"])),
        rb("argo-server-binding", "argo", "Role", "argo-server-role", sa("argo-server", "argo")),
    ]


def test_diff_argo_server_read_only() -> None:
    before = _argo_server_objects(["create", "get", "list", "watch", "update", "patch", "delete"])
    after = _argo_server_objects(["get", "list", "watch"])
    changes = diff_permissions(before, after)
    assert [c.text for c in changes] == [
        "system:serviceaccount:argo:argo-server loses create, update, patch, delete on argoproj.io/workflows in argo",
    ]
    (change,) = changes
    assert change.direction is ChangeDirection.LOSES
    assert change.verbs == ("create", "update", "patch", "delete")
    assert change.to_dict()["direction"] == "loses"
    assert change.to_dict()["subject"] == "system:serviceaccount:argo:argo-server"


DIFF_CASES = [
    ("gain-core-cluster-wide",
     [], [crole("r", rule(["get"], [""], ["secrets"])), crb("b", "r", user(ALICE))],
     ["alice gains get on secrets cluster-wide"]),
    ("covered-by-wildcard-is-no-loss",
     [crole("r", rule(["get"], [""], ["pods"])), crole("all", rule(["*"], ["*"], ["*"])),
      rb("b", "a", "ClusterRole", "r", user(ALICE)), crb("c", "all", user(ALICE))],
     [crole("all", rule(["*"], ["*"], ["*"])), crb("c", "all", user(ALICE))],
     []),
    ("narrow-to-namespace",
     [crole("r", rule(["get"], [""], ["pods"])), crb("b", "r", user(ALICE))],
     [crole("r", rule(["get"], [""], ["pods"])), rb("b", "a", "ClusterRole", "r", user(ALICE))],
     ["alice loses get on pods cluster-wide"]),
    ("resource-name-restriction",
     [crole("r", rule(["get"], [""], ["secrets"])), crb("b", "r", user(ALICE))],
     [crole("r", rule(["get"], [""], ["secrets"], ["tls"])), crb("b", "r", user(ALICE))],
     ["alice loses get on secrets cluster-wide"]),
    ("group-gains",
     [], [crole("r", rule(["list", "get"], ["apps"], ["deployments"])), rb("b", "a", "ClusterRole", "r", group("devs"))],
     ["group:devs gains get, list on apps/deployments in a"]),
]


@pytest.mark.parametrize(("before", "after", "texts"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES])
def test_diff_permissions(before: list[dict[str, Any]], after: list[dict[str, Any]], texts: list[str]) -> None:
    assert [c.text for c in diff_permissions(before, after)] == texts


def test_permission_change_named_resource_text() -> None:
    change = PermissionChange(Subject.parse("bob"), ChangeDirection.GAINS, ("get",), "", "secrets", "a", "tls")
    assert change.text == "bob gains get on secrets named 'tls' in a"


# --------------------------------------------------------------------------- real fixture


def _load_fixture(name: str) -> list[dict[str, Any]]:
    path = FIXTURES / name
    objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "PriorityClass", "CustomResourceDefinition", "Namespace"):
            obj.setdefault("metadata", {})["namespace"] = "argo"
    return objects


QUICKSTART_CASES = [
    ("server-deletes-workflows", "system:serviceaccount:argo:argo-server", "delete", "workflows.argoproj.io", "argo", True),
    ("server-reads-pod-logs-anywhere", "system:serviceaccount:argo:argo-server", "get", "pods/log", "kube-system", True),
    ("server-cannot-list-secrets", "system:serviceaccount:argo:argo-server", "list", "secrets", "argo", False),
    ("default-sa-no-pod-logs", "system:serviceaccount:argo:default", "get", "pods/log", "argo", False),
    ("default-sa-patches-pods", "system:serviceaccount:argo:default", "patch", "pods", "argo", True),
    ("default-sa-only-in-argo", "system:serviceaccount:other:default", "patch", "pods", "other", False),
    ("controller-leases", "system:serviceaccount:argo:argo", "create", "leases.coordination.k8s.io", "argo", True),
]


@pytest.mark.parametrize(("subject", "verb", "spec", "ns", "expected"), [c[1:] for c in QUICKSTART_CASES],
                         ids=[c[0] for c in QUICKSTART_CASES])
def test_quick_start_postgres(subject: str, verb: str, spec: str, ns: str, expected: bool) -> None:
    index = RbacIndex.from_objects(_load_fixture("quick-start-postgres.yaml"))
    assert check(index, subject, verb, spec, ns).allowed is expected


def test_module_has_no_forbidden_imports() -> None:
    source = Path(rbac.__file__).read_text()
    for mod in ("kubernetes", "typer", "rich"):
        assert f"import {mod}" not in source and f"from {mod}" not in source


COVER_CASES = [
    ("verb-star", Permission("*", "", "pods", "a"), Permission("get", "", "pods", "a"), True),
    ("group-star", Permission("get", "*", "pods", "a"), Permission("get", "", "pods", "a"), True),
    ("resource-star-sub", Permission("get", "", "*", "a"), Permission("get", "", "pods/log", "a"), True),
    ("star-slash-sub", Permission("get", "", "*/log", "a"), Permission("get", "", "pods/log", "a"), True),
    ("star-slash-sub-not-parent", Permission("get", "", "*/log", "a"), Permission("get", "", "pods", "a"), False),
    ("cluster-covers-ns", Permission("get", "", "pods", "*"), Permission("get", "", "pods", "a"), True),
    ("ns-not-cluster", Permission("get", "", "pods", "a"), Permission("get", "", "pods", "*"), False),
    ("any-name-covers-name", Permission("get", "", "pods", "a"), Permission("get", "", "pods", "a", "x"), True),
    ("name-not-any", Permission("get", "", "pods", "a", "x"), Permission("get", "", "pods", "a"), False),
    ("url-prefix", Permission("get", "", "/apis/*", "*"), Permission("get", "", "/apis/apps", "*"), True),
    ("resource-star-not-url", Permission("get", "*", "*", "*"), Permission("get", "", "/healthz", "*"), False),
]


@pytest.mark.parametrize(("holder", "wanted", "expected"), [c[1:] for c in COVER_CASES], ids=[c[0] for c in COVER_CASES])
def test_permission_covers_agrees_with_generalizations(holder: Permission, wanted: Permission, expected: bool) -> None:
    assert holder.covers(wanted) is expected
    assert (not rbac._uncovered(frozenset({wanted.key}), frozenset({holder.key}))) is expected


def test_non_resource_url_multiple_trailing_stars_like_go_trimright() -> None:
    objects = [crole("r", {"verbs": ["get"], "nonResourceURLs": ["/api**"]}), crb("b", "r", user(ALICE))]
    assert check(objects, ALICE, "get", "/api/v1").allowed
    assert not check(objects, ALICE, "get", "/ap").allowed


def test_aggregation_with_invalid_selector_keeps_stored_rules() -> None:
    objects = [crole("agg", rule(["get"], [""], ["pods"]), aggregate=[{"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}]),
               crole("part", rule(["list"], [""], ["pods"]), labels={"k": "2"}),
               crb("b", "agg", user(ALICE))]
    assert check(objects, ALICE, "get", "pods", "a").allowed
    assert not check(objects, ALICE, "list", "pods", "a").allowed


def test_effective_permissions_agree_with_authorize_on_random_queries() -> None:
    """Self-consistency: a subject's effective permissions cover a request iff authorize() allows it."""
    import random

    rng = random.Random(7)
    verbs, groups_, resources = ["get", "list", "create", "*"], ["", "apps", "*"], ["pods", "pods/log", "*", "*/scale", "deployments"]
    namespaces, names = ["a", "b"], ["x", "y"]

    def random_rule() -> dict[str, Any]:
        return rule(rng.sample(verbs, 2), rng.sample(groups_, 1), rng.sample(resources, 2),
                    rng.sample(names, 1) if rng.random() < 0.3 else None)

    objects: list[dict[str, Any]] = []
    for i in range(12):
        objects.append(crole(f"c{i}", random_rule(), random_rule()))
        objects.append(role(f"r{i}", rng.choice(namespaces), random_rule()))
    subjects = [sa("s1", "a"), sa("s2", "b"), user("u1"), group("g1"), group("system:serviceaccounts:a")]
    for i in range(20):
        subj = rng.choice(subjects)
        if rng.random() < 0.4:
            objects.append(crb(f"crb{i}", f"c{rng.randrange(12)}", subj))
        else:
            ns = rng.choice(namespaces)
            ref_kind, ref = rng.choice([("ClusterRole", f"c{rng.randrange(12)}"), ("Role", f"r{rng.randrange(12)}")])
            objects.append(rb(f"rb{i}", ns, ref_kind, ref, subj))

    index = RbacIndex.from_objects(objects)
    perms = effective_permissions(index)
    checked = 0
    for subj_text in ["system:serviceaccount:a:s1", "system:serviceaccount:b:s2", "u1", "group:g1"]:
        subj = Subject.parse(subj_text)
        held = perms.get(subj, frozenset())
        for _ in range(150):
            verb = rng.choice(["get", "list", "create", "delete"])
            group_ = rng.choice(["", "apps"])
            res, _, sub = rng.choice(["pods", "pods/log", "deployments", "deployments/scale"]).partition("/")
            ns = rng.choice([*namespaces, None])
            name = rng.choice([*names, None])
            request = Request(verb, group_, res, sub or None, ns, name)
            wanted = Permission(verb, group_, request.combined_resource, ns or "*", name)
            allowed = index.authorize(subj.username, subj.groups(), request).allowed
            assert allowed is any(p.covers(wanted) for p in held), (subj_text, request)
            checked += allowed
    assert checked > 20  # the random setup must actually grant things
