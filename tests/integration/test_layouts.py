"""Every profile right on every layout, checked independently of harden's own evaluators.

For each install layout the layout's stack (tests/integration/stacks/) is applied with the CLI,
and then every need of every component (harden/needs/*.yaml) is checked from the API server
itself (tests/integration/layouts.py): permissions by SubjectAccessReview as the service account
the live pod template names, flows by the reachability model over the live objects, referenced
objects by GET. A need that held before apply must hold after it; the re-plan is empty; destroy
puts every object back field for field. Each profile is also applied alone on the quick-start
layout, and the two Argo Workflows installs (quick-start in argo, Helm release wf in wfhelm) are
checked not to touch each other.

Layouts share one cluster with the other modules: the upstream cluster installs name their
ClusterRoles and bind them to fixed namespaces (argo, argocd), so there is one cluster install
per product and it lives in that namespace; the namespace-install, the Helm release
(release-prefixed ClusterRoles) and the bad-input namespaces live in their own. The Argo CD HA
layout replaces argocd-redis in argocd after the plain Argo CD layout was destroyed, and puts
install.yaml back at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import layouts as L
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubeutil import load_docs, require_fixture, run_harden


@dataclass(frozen=True)
class Layout:
    id: str
    product: str
    namespace: str
    cluster: bool
    stack: Path
    release: str | None = None
    extra_namespaces: tuple[str, ...] = ()


QUICK_START = Layout("quick-start", "argo-workflows", "argo", True, L.STACKS / "quick-start.yaml")
NAMESPACED = Layout("namespace-install", "argo-workflows", "lay-wfns", False, L.STACKS / "namespace-install.yaml")
HELM = Layout("helm", "argo-workflows", "wfhelm", True, L.STACKS / "helm.yaml", release="wf")
APP_NAMESPACES = ("lay-guestbook", "lay-team-a")  # the Argo CD stacks' `namespaces`
ARGOCD = Layout("argocd", "argo-cd", "argocd", True, L.STACKS / "argocd.yaml", extra_namespaces=APP_NAMESPACES)
ARGOCD_HA = Layout("argocd-ha", "argo-cd", "argocd", True, L.STACKS / "argocd-ha.yaml",
                   extra_namespaces=APP_NAMESPACES)


@dataclass
class Outcome:
    """What one apply/re-plan/destroy cycle did, recorded once and asserted by several tests."""

    layout: Layout
    plan_rc: int = -1
    plan_out: str = ""
    apply_rc: int = -1
    apply_out: str = ""
    replan_rc: int = -1
    replan_out: str = ""
    destroy_rc: int = -1
    destroy_out: str = ""
    needs_before: dict[str, bool] = field(default_factory=dict)
    needs_after: dict[str, bool] = field(default_factory=dict)
    restored: list[str] = field(default_factory=list)          # differences after destroy
    others_touched: list[str] = field(default_factory=list)    # what changed in the other installs
    labelled: list[str] = field(default_factory=list)          # objects carrying the stack label after a refusal


def _ensure_namespace(kube, name: str) -> None:
    try:
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as e:
        if e.status != 409:
            raise


# A fixed set of questions to ask of another install's service accounts: the answers must not move.
_PROBE_VERBS = ("get", "list", "create", "patch", "delete")
_PROBE_RESOURCES = ("pods", "secrets", "configmaps", "workflows.argoproj.io", "deployments.apps",
                    "serviceaccounts", "leases.coordination.k8s.io")


def _access(kube, inst: L.Install) -> dict[str, bool]:
    out = {}
    for _, subject in L.subjects(inst):
        for verb in _PROBE_VERBS:
            for res in _PROBE_RESOURCES:
                for ns in (inst.namespace, None):
                    out[f"{subject.user} {verb} {res} {ns or '*'}"] = L.sar(kube.api_client, subject.user, verb, res, ns)
    return out


def _untouched(before: dict[str, dict], after: dict[str, dict], namespace: str) -> list[str]:
    """Objects another install had that changed, and new objects in its namespace."""
    out = [f"{k}: changed or gone" for k, v in before.items() if after.get(k) != v]
    out += [f"{k}: new" for k in after if k not in before and k.split("/")[1] == namespace]
    return out


def _labelled(kube, stack_name: str) -> list[str]:
    sel = f"harden.dev/stack={stack_name}"
    rbac, net = client.RbacAuthorizationV1Api(kube.api_client), client.NetworkingV1Api(kube.api_client)
    items = (rbac.list_cluster_role(label_selector=sel).items + rbac.list_role_for_all_namespaces(label_selector=sel).items
             + rbac.list_role_binding_for_all_namespaces(label_selector=sel).items
             + net.list_network_policy_for_all_namespaces(label_selector=sel).items
             + kube.core.list_service_account_for_all_namespaces(label_selector=sel).items)
    return [i.metadata.name for i in items]


def cycle(kube, layout: Layout, stack: Path, state: Path, others: tuple[Layout, ...] = ()) -> Outcome:
    """plan, apply, check needs, re-plan, destroy; the other installs are watched throughout."""
    out = Outcome(layout)
    common = ["-f", str(stack), "--kubeconfig", kube.kubeconfig, "--state-dir", str(state)]
    namespaces = (layout.namespace, *layout.extra_namespaces)
    profiles = L.stack_profiles(stack)
    inst = L.read_install(kube.api_client, layout.product, layout.namespace, cluster=layout.cluster,
                          release=layout.release)
    assert inst.components, f"no {layout.product} install found in {layout.namespace}"
    original = L.snapshot(kube.api_client, namespaces)
    watched = []
    for o in others:
        oi = L.read_install(kube.api_client, o.product, o.namespace, cluster=o.cluster, release=o.release)
        watched.append((o, oi, _access(kube, oi), L.install_snapshot(kube.api_client, o.namespace)))
    out.needs_before = L.check_needs(kube.api_client, inst, profiles)

    r = run_harden("plan", *common, "--detailed-exitcode")
    out.plan_rc, out.plan_out = r.returncode, r.stdout + r.stderr
    if r.returncode == 1:
        out.labelled = _labelled(kube, yaml.safe_load(stack.read_text())["metadata"]["name"])
        out.restored = L.differences(original, L.snapshot(kube.api_client, namespaces))
        return out
    try:
        r = run_harden("apply", *common, "--auto-approve")
        out.apply_rc, out.apply_out = r.returncode, r.stdout + r.stderr
        # The live install after apply: args and ConfigMaps may have changed (conditions follow them).
        after = L.read_install(kube.api_client, layout.product, layout.namespace, cluster=layout.cluster,
                               release=layout.release)
        out.needs_after = L.check_needs(kube.api_client, after, profiles)
        for o, oi, access, snap in watched:
            now = _access(kube, oi)
            out.others_touched += [f"{o.id}: SubjectAccessReview {k}: {v} -> {now[k]}"
                                   for k, v in access.items() if now[k] != v]
            out.others_touched += [f"{o.id}: {d}" for d in
                                   _untouched(snap, L.install_snapshot(kube.api_client, o.namespace), o.namespace)]
        r = run_harden("plan", *common, "--detailed-exitcode")
        out.replan_rc, out.replan_out = r.returncode, r.stdout + r.stderr
    finally:
        r = run_harden("destroy", *common, "--auto-approve")
        out.destroy_rc, out.destroy_out = r.returncode, r.stdout + r.stderr
    out.restored = L.differences(original, L.snapshot(kube.api_client, namespaces))
    return out


# -- layouts ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_slice(kube):
    """The `kubernetes` EndpointSlice a real API server keeps in `default` (kubernetes/kubernetes
    pkg/controlplane/reconcilers); the test cluster runs without that reconciler, so it is written
    here for the module's lifetime. Profiles detect the API server's address from it and the
    apiserver flow needs are decided against it. The API server listens on loopback, which an
    EndpointSlice may not name, so a documentation address (RFC 5737) stands in: no pod runs here,
    only the policies' arithmetic depends on it."""
    url = urlparse(kube.server)
    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.10"]}],
            "ports": [{"name": "https", "port": url.port or 443, "protocol": "TCP"}]}
    disc = client.DiscoveryV1Api(kube.api_client)
    existing = disc.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=kubernetes")
    if existing.items:  # a real cluster (HARDEN_KUBECONFIG) keeps its own
        yield
        return
    disc.create_namespaced_endpoint_slice("default", body)
    yield
    disc.delete_namespaced_endpoint_slice("kubernetes", "default")


@pytest.fixture(scope="module")
def workflows(kube, api_slice):
    """The three Argo Workflows installs, side by side for the whole module."""
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), QUICK_START.namespace)
    kube.apply_manifests(require_fixture("argo-workflows/namespace-install.yaml"), NAMESPACED.namespace)
    kube.apply_manifests(require_fixture("layouts/argo-workflows-helm.yaml"), HELM.namespace)
    yield


@pytest.fixture(scope="module")
def outcomes(kube, workflows, tmp_path_factory):
    """Outcomes are computed on first use and kept: each layout is applied once per module."""
    done: dict[str, Outcome] = {}

    def get(layout: Layout, others: tuple[Layout, ...] = ()) -> Outcome:
        if layout.id not in done:
            done[layout.id] = cycle(kube, layout, layout.stack, tmp_path_factory.mktemp(layout.id), others)
        return done[layout.id]

    return get


@pytest.fixture(scope="module")
def argocd(kube, api_slice):
    kube.apply_manifests(require_fixture("argo-cd/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-cd/install.yaml"), ARGOCD.namespace)
    for ns in APP_NAMESPACES:  # the profile's Roles land there; it does not own the namespaces
        _ensure_namespace(kube, ns)
    yield


def _to_ha(kube) -> list[dict]:
    """Replace install.yaml's argocd-redis with the HA objects; return the HA-only objects."""
    install = load_docs(require_fixture("argo-cd/install.yaml"))
    ha = load_docs(require_fixture("layouts/argo-cd-ha.yaml"))
    ha_names = {(o["kind"], o["metadata"]["name"]) for o in ha}
    for obj in install:
        name = obj["metadata"]["name"]
        if name in ("argocd-redis", "argocd-redis-network-policy") and (obj["kind"], name) not in ha_names:
            res = kube.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                res.delete(name=name, namespace=ARGOCD.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise
    kube.apply_manifests(ha, ARGOCD_HA.namespace)
    install_names = {(o["kind"], o["metadata"]["name"]) for o in install}
    return [o for o in ha if (o["kind"], o["metadata"]["name"]) not in install_names]


@pytest.fixture(scope="module")
def argocd_outcomes(kube, argocd, tmp_path_factory):
    done: dict[str, Outcome] = {}

    def get(layout: Layout) -> Outcome:
        if "argocd" not in done:
            done["argocd"] = cycle(kube, ARGOCD, ARGOCD.stack, tmp_path_factory.mktemp("argocd"))
        if layout.id == "argocd-ha" and "argocd-ha" not in done:
            ha_only = _to_ha(kube)
            try:
                done["argocd-ha"] = cycle(kube, ARGOCD_HA, ARGOCD_HA.stack, tmp_path_factory.mktemp("argocd-ha"))
            finally:  # later modules expect the plain install in argocd
                for obj in ha_only:
                    res = kube.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                    try:
                        res.delete(name=obj["metadata"]["name"], namespace=ARGOCD.namespace)
                    except ApiException as e:
                        if e.status != 404:
                            raise
                kube.apply_manifests(require_fixture("argo-cd/install.yaml"), ARGOCD.namespace)
        return done[layout.id]

    return get


WF_LAYOUTS = [QUICK_START, NAMESPACED, HELM]
ALL_LAYOUTS = [*WF_LAYOUTS, ARGOCD, ARGOCD_HA]
# The install each Argo Workflows layout is watched against while it is applied (two installs,
# one cluster: a cluster install in argo, the Helm release in wfhelm).
OTHERS = {"quick-start": (HELM,), "helm": (QUICK_START,), "namespace-install": (QUICK_START, HELM)}


@pytest.fixture
def outcome(request, outcomes, argocd_outcomes) -> Outcome:
    layout: Layout = request.param
    if layout.product == "argo-cd":
        return argocd_outcomes(layout)
    return outcomes(layout, OTHERS.get(layout.id, ()))


# Profiles wrong on a layout (harden refuses the stack there, exit 1, so nothing after the plan
# can run). Other engineers are fixing the profiles; the marks are strict so a fix shows up.
PROFILE_DEFECTS: dict[str, str] = {}  # no layout left on which a profile breaks a need


def _params(layouts):
    return [pytest.param(x, id=x.id, marks=[pytest.mark.xfail(strict=True, reason=PROFILE_DEFECTS[x.id])]
                         if x.id in PROFILE_DEFECTS else []) for x in layouts]


layout_param = pytest.mark.parametrize("outcome", _params(ALL_LAYOUTS), indirect=True)


@layout_param
def test_stack_applies(outcome):
    assert outcome.plan_rc == 2, outcome.plan_out
    assert outcome.apply_rc == 0, outcome.apply_out


@layout_param
def test_every_need_that_held_still_holds(outcome):
    assert outcome.apply_rc == 0, outcome.plan_out + outcome.apply_out
    assert outcome.needs_before, "no need was checked: the layout's components were not found"
    assert set(outcome.needs_after) >= {k for k, v in outcome.needs_before.items() if v}
    assert not L.broken(outcome.needs_before, outcome.needs_after)


@layout_param
def test_replan_is_empty(outcome):
    assert outcome.replan_rc == 0, outcome.replan_out


@layout_param
def test_destroy_restores_the_install(outcome):
    assert outcome.destroy_rc == 0, outcome.destroy_out
    assert not outcome.restored, outcome.restored


@pytest.mark.parametrize("outcome", _params(WF_LAYOUTS), indirect=True)
def test_other_installs_untouched(outcome):
    assert outcome.apply_rc == 0, outcome.apply_out
    assert not outcome.others_touched, outcome.others_touched


# -- each profile alone on the quick-start layout -------------------------------------------------


QUICK_START_PROFILES = L.stack_profiles(QUICK_START.stack)


@pytest.fixture(scope="module")
def alone(kube, outcomes, tmp_path_factory):
    outcomes(QUICK_START, OTHERS["quick-start"])  # the full stack first, on the untouched install
    done: dict[str, Outcome] = {}

    def get(entry: dict) -> Outcome:
        name = entry["profile"]
        if name not in done:
            d = tmp_path_factory.mktemp(f"alone-{name}")
            doc = yaml.safe_load(QUICK_START.stack.read_text())
            doc["metadata"]["name"] = f"layouts-alone-{name}"
            doc["profiles"] = [entry]
            stack = d / "stack.yaml"
            stack.write_text(yaml.safe_dump(doc))
            done[name] = cycle(kube, QUICK_START, stack, d / "state")
        return done[name]

    return get


# Alone, these isolate the controller's and server's egress with no DNS or API server rule, and
# harden rightly refuses them; but the refusal names no profile that would keep those needs.
ALONE_DEFECTS: dict[str, str] = {}  # every profile alone plans, or is refused naming what it needs


@pytest.mark.parametrize("entry", [
    pytest.param(p, id=p["profile"], marks=[pytest.mark.xfail(strict=True, reason=ALONE_DEFECTS[p["profile"]])]
                 if p["profile"] in ALONE_DEFECTS else []) for p in QUICK_START_PROFILES])
def test_profile_alone(alone, entry):
    o = alone(entry)
    if o.plan_rc == 1:
        # A refusal is right when it names the broken need and the profile that would keep it.
        others = [p["profile"] for p in QUICK_START_PROFILES if p["profile"] != entry["profile"]]
        assert any(re.search(rf"\b{re.escape(p)}\b", o.plan_out) for p in others), o.plan_out
        assert "Traceback" not in o.plan_out
        assert not o.labelled and not o.restored, (o.labelled, o.restored)
        return
    assert o.plan_rc == 2, o.plan_out
    assert o.apply_rc == 0, o.apply_out
    assert not L.broken(o.needs_before, o.needs_after)
    assert o.replan_rc == 0, o.replan_out
    assert o.destroy_rc == 0, o.destroy_out
    assert not o.restored, o.restored


# -- bad input -------------------------------------------------------------------------------------


def test_namespace_without_install_is_refused(kube, workflows, tmp_path):
    ns = kube.create_namespace("lay-empty")
    try:
        r = run_harden("plan", "-p", "read-only-server", "--set", f"namespace={ns}", "--kubeconfig", kube.kubeconfig,
                       "--state-dir", str(tmp_path))
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert ns in out and "Traceback" not in out, out
    finally:
        kube.delete_namespace(ns)


def test_two_argo_servers_in_one_namespace_are_refused(kube, workflows, tmp_path):
    ns = kube.create_namespace("lay-ambiguous")
    try:
        docs = load_docs(require_fixture("argo-workflows/namespace-install.yaml"))
        kube.apply_manifests(docs, ns)
        server = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "argo-server")
        twin = yaml.safe_load(yaml.safe_dump(server))
        twin["metadata"]["name"] = "argo-server-twin"
        kube.apply_manifests([twin], ns)
        r = run_harden("plan", "-p", "read-only-server", "--set", f"namespace={ns}", "--kubeconfig", kube.kubeconfig,
                       "--state-dir", str(tmp_path))
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "argo-server-twin" in out and re.search(r"\bargo-server\b(?!-)", out), out
        assert "Traceback" not in out
    finally:
        kube.delete_namespace(ns)
