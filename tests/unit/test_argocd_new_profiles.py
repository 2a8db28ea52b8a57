"""The Argo CD settings profiles (argocd-admin-disabled, argocd-rbac-default, argocd-config-management),
planned offline on examples/snapshot-argocd (the upstream install.yaml in namespace argocd) or on a
copy of it whose argocd-cm a test changes, and their checks as pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harden.checks import CHECKS
from harden.engine import Request, build_plan
from harden.errors import Diagnostics
from harden.model import Action, ResourceKey, Severity

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "examples" / "snapshot-argocd"
NS = "argocd"


def plan_for(tmp_path, profiles: tuple[str, ...], sets: tuple[str, ...] = (), snapshot: Path = SNAPSHOT):
    return build_plan(Request(profiles=profiles, stack_file=None, sets=sets, snapshot=str(snapshot),
                              state_dir=str(tmp_path / "state")))


def snapshot_with(tmp_path, config_map: str, data: dict[str, str]) -> Path:
    """A copy of the example snapshot whose ConfigMap `config_map` carries `data`."""
    docs = []
    for f in sorted(SNAPSHOT.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == config_map:
                d["data"] = {**(d.get("data") or {}), **data}
            docs.append(d)
    out = tmp_path / "snapshot"
    out.mkdir()
    (out / "install.yaml").write_text(yaml.safe_dump_all(docs))
    return out


def cm_fields(p, name: str) -> dict[str, object]:
    c = {c.key: c for c in p.plan.changes}[ResourceKey("", "ConfigMap", NS, name)]
    assert c.action is Action.UPDATE
    return {f.path: f.after for f in c.fields if "harden.dev/original" not in f.path}


def findings(p, profile: str) -> dict[str, object]:
    return {f.id: f for f in p.plan.findings if f.profile == profile and f.kind != "need"}


def no_need_broken(p) -> bool:
    return not [n for n in p.plan.impact["needs"] if n["status"] == "broken"]


# -- argocd-admin-disabled ---------------------------------------------------------------------

def test_admin_disabled_refuses_when_nobody_could_log_in(tmp_path):
    # upstream's argocd-cm has no SSO and no accounts: admin is the only way in
    p = plan_for(tmp_path, ("argocd-admin-disabled",))
    failed = {f.id: f for f in p.plan.failed_findings}
    assert failed["someone-can-log-in"].severity is Severity.ERROR
    assert "nobody could log in" in failed["someone-can-log-in"].message


def test_admin_disabled_with_sso(tmp_path):
    snap = snapshot_with(tmp_path, "argocd-cm", {"dex.config": "connectors: []\n"})
    p = plan_for(tmp_path, ("argocd-admin-disabled",), snapshot=snap)
    assert not p.plan.failed_findings, p.plan.failed_findings
    assert cm_fields(p, "argocd-cm") == {'data["admin.enabled"]': "false"}
    assert findings(p, "argocd-admin-disabled")["admin-disabled"].passed
    assert no_need_broken(p)


def test_check_login_remains():
    fn = CHECKS["loginRemains"]
    w = {"namespace": NS, "configMap": "argocd-cm"}

    def cm(data):
        return [{"kind": "ConfigMap", "metadata": {"namespace": NS, "name": "argocd-cm"}, "data": data}]

    assert fn(cm({"accounts.alice": "apiKey, login"}), w)[0]
    assert fn(cm({"oidc.config": "issuer: https://idp.example\n"}), w)[0]
    assert not fn(cm({"accounts.alice": "apiKey, login", "accounts.alice.enabled": "false"}), w)[0]
    assert not fn(cm({"accounts.ci": "apiKey"}), w)[0]                 # an API key cannot log in to the UI
    assert not fn(cm({"accounts.admin": "login", "dex.config": " "}), w)[0]
    assert not fn([], w)[0]


# -- argocd-rbac-default -----------------------------------------------------------------------

def test_rbac_default_is_read_only(tmp_path):
    p = plan_for(tmp_path, ("argocd-rbac-default",))
    assert not p.plan.failed_findings, p.plan.failed_findings
    assert cm_fields(p, "argocd-rbac-cm") == {'data["policy.default"]': "role:readonly"}
    assert no_need_broken(p)


def test_rbac_default_refuses_a_wider_role(tmp_path):
    p = plan_for(tmp_path, ("argocd-rbac-default",), sets=("defaultRole=role:admin",))
    failed = {f.id: f for f in p.plan.failed_findings}
    assert "role:admin" in failed["default-not-wider"].message
    p = plan_for(tmp_path / "none", ("argocd-rbac-default",), sets=("defaultRole=''",))
    assert not p.plan.failed_findings


def test_check_config_map_value_in():
    fn = CHECKS["configMapValueIn"]
    w = {"namespace": NS, "configMap": "argocd-rbac-cm", "key": "policy.default", "allowed": ["", "role:readonly"]}
    objs = [{"kind": "ConfigMap", "metadata": {"namespace": NS, "name": "argocd-rbac-cm"}, "data": {}}]
    assert fn(objs, w)[0]
    objs[0]["data"]["policy.default"] = "role:admin"
    assert not fn(objs, w)[0]


# -- argocd-config-management ------------------------------------------------------------------

def test_config_management_writes_only_what_it_turns_off(tmp_path):
    p = plan_for(tmp_path, ("argocd-config-management",))
    assert not [c for c in p.plan.changes if c.action is not Action.NOOP]
    p = plan_for(tmp_path / "off", ("argocd-config-management",), sets=("helm=false", "jsonnet=false"))
    assert cm_fields(p, "argocd-cm") == {'data["helm.enable"]': "false", 'data["jsonnet.enable"]': "false"}
    assert not p.plan.failed_findings and no_need_broken(p)


# -- argocd-resource-exclusions ----------------------------------------------------------------

EXCLUSIONS = 'data["resource.exclusions"]'
MINE = ("# ours: cilium churn\n- apiGroups: [cilium.io]\n  kinds: [CiliumIdentity]\n  clusters: ['*']\n"
        "- apiGroups:\n  - certificates.k8s.io\n  kinds: [CertificateSigningRequest]\n")


def exclusions_change(p):
    return {c.key: c for c in p.plan.changes}[ResourceKey("", "ConfigMap", NS, "argocd-cm")]


def test_resource_exclusions_already_in_upstreams_list_change_nothing(tmp_path):
    # upstream's argocd-cm ships both default entries (manifests/base/config/argocd-cm.yaml)
    p = plan_for(tmp_path, ("argocd-resource-exclusions",))
    assert exclusions_change(p).action is Action.NOOP


def test_resource_exclusions_append_field_by_field_and_keep_the_users_entries(tmp_path):
    snap = snapshot_with(tmp_path, "argocd-cm", {"resource.exclusions": MINE})
    p = plan_for(tmp_path, ("argocd-resource-exclusions",), snapshot=snap)
    change = exclusions_change(p)
    # only the entry that is missing shows, member by member; the CSR entry (block groups, flow kinds) is there
    assert cm_fields(p, "argocd-cm") == {
        f"{EXCLUSIONS}[2].apiGroups": ["authentication.k8s.io", "authorization.k8s.io"],
        f"{EXCLUSIONS}[2].kinds": ["SelfSubjectReview", "TokenReview", "LocalSubjectAccessReview",
                                   "SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview"]}
    written = change.body["data"]["resource.exclusions"]
    assert written.startswith(MINE)
    # destroy puts back the text as it was, comment and layout included
    assert change.restore.body["data"]["resource.exclusions"] == MINE
    assert not p.plan.failed_findings and no_need_broken(p)


def test_resource_exclusions_take_the_users_list(tmp_path):
    snap = snapshot_with(tmp_path, "argocd-cm", {"resource.exclusions": MINE})
    p = plan_for(tmp_path, ("argocd-resource-exclusions",), snapshot=snap,
                 sets=('exclusions=[{apiGroups: [""], kinds: [Secret]}, {kinds: [CiliumIdentity], apiGroups: [cilium.io], clusters: ["*"]}]',))
    assert cm_fields(p, "argocd-cm") == {f"{EXCLUSIONS}[2].apiGroups": [""], f"{EXCLUSIONS}[2].kinds": ["Secret"]}


@pytest.mark.parametrize("value, message", [
    ("- apiGroups: [unclosed\n", "does not hold valid YAML"),
    ("apiGroups: [cilium.io]\n", "holds a YAML mapping, not the list"),
])
def test_resource_exclusions_refuse_a_value_they_cannot_read(tmp_path, value, message):
    snap = snapshot_with(tmp_path, "argocd-cm", {"resource.exclusions": value})
    with pytest.raises(Diagnostics) as exc:
        plan_for(tmp_path, ("argocd-resource-exclusions",), snapshot=snap)
    [d] = exc.value.diagnostics
    assert message in d.summary and "'resource.exclusions'" in d.summary and "argocd-resource-exclusions" in d.summary
    assert d.file.endswith("argocd-resource-exclusions.yaml") and d.line


@pytest.mark.parametrize("value, message", [
    ("[{kinds: []}]", "matches every resource on every cluster"),
    ("[{apiGroups: ['*'], kinds: ['*']}]", "matches every resource on every cluster"),
    ("[{kind: [Secret]}]", "unknown key(s) ['kind']"),
    ("[{kinds: Secret}]", "kinds must be a list of strings"),
])
def test_resource_exclusions_refuse_a_bad_entry(tmp_path, value, message):
    with pytest.raises(Diagnostics) as exc:
        plan_for(tmp_path, ("argocd-resource-exclusions",), sets=(f"exclusions={value}",))
    [d] = exc.value.diagnostics
    assert "parameter 'exclusions'" in d.summary and message in d.summary, d.summary


# -- argocd-tls --------------------------------------------------------------------------------

def test_check_rollout_covers_change():
    fn = CHECKS["rolloutCoversChange"]
    assert fn([], {"value": "1.2", "default": "1.2", "rollout": False})[0]
    assert not fn([], {"value": "1.3", "default": "1.2", "rollout": False})[0]
    assert fn([], {"value": "1.3", "default": "1.2", "rollout": True})[0]
