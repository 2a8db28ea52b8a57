"""The component-needs data (harden/needs/*.yaml) has the shape the evaluator reads, and its facts
hold on the installs the tests carry.

Shape: every need has an id, a why, a source and exactly one of permission/flow/object/probe; ids
are unique per component; every reference names a component that exists. Facts: every workload
match finds exactly one workload in the fixture of its layout (upstream manifests, the Helm chart's
layout, Argo CD's HA layout), no workload is claimed by two components, named ports exist on the
component they name, and a probe rule agrees with the installs upstream and the chart ship.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from harden.checks import _flag
from harden.impact.rbac import parse_resource_spec
from harden.impact.selectors import selector_matches

REPO = Path(__file__).resolve().parents[2]
NEEDS = REPO / "harden" / "needs"
FIXTURES = REPO / "tests" / "fixtures"

# The install each layout's label sets are checked against.
LAYOUT_FIXTURES: dict[str, dict[str, Path]] = {
    "argo-workflows": {
        "upstream": FIXTURES / "argo-workflows" / "quick-start-postgres.yaml",
        "helm": FIXTURES / "layouts" / "argo-workflows-helm.yaml",
    },
    "argo-cd": {
        "upstream": FIXTURES / "argo-cd" / "install.yaml",
        "ha": FIXTURES / "layouts" / "argo-cd-ha.yaml",
    },
}

NEED_KINDS = ("permission", "flow", "object", "probe")
WHEN = {"automountDisabled", "persistence", "ssoAuthMode", "ssoRbac", "repoServerStrictTLS", "dexServerStrictTLS"}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NUMERIC_PORT = re.compile(r"^\d{1,5}(/(TCP|UDP|SCTP))?$")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
SOURCE = re.compile(r"^(argoproj|kubernetes)/[a-z0-9-]+ \S")


# Cached: the parametrized tests read the same few files hundreds of times; nothing mutates them.
@cache
def _load(product: str) -> dict[str, Any]:
    return yaml.safe_load((NEEDS / f"{product}.yaml").read_text())


@cache
def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _workloads(path: Path, kind: str) -> list[dict[str, Any]]:
    return [d for d in _docs(path) if d["kind"] == kind]


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels") or {}


def _matching(path: Path, kind: str, labels: dict[str, str]) -> list[str]:
    return [w["metadata"]["name"] for w in _workloads(path, kind)
            if selector_matches({"matchLabels": labels}, _pod_labels(w))]


def _claims(product: str, component: dict[str, Any]) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(layout, fixture, workload) for every fixture workload one of the component's label sets finds."""
    kind = component["workload"]["kind"]
    for layout, fixture in LAYOUT_FIXTURES[product].items():
        for w in _workloads(fixture, kind):
            if any(selector_matches({"matchLabels": m["labels"]}, _pod_labels(w)) for m in component["workload"]["match"]):
                yield layout, fixture, w


def _found_workloads(product: str, component: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for _, _, w in _claims(product, component)]


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


PRODUCTS = sorted(LAYOUT_FIXTURES)
ALL_NEEDS = [(p, c["name"], n) for p in PRODUCTS for c in _load(p)["components"] for n in c["needs"]]


def _need_id(param: tuple[str, str, dict[str, Any]]) -> str:
    product, component, need = param
    return f"{product}/{component}/{need.get('id')}"


@pytest.mark.parametrize("product", PRODUCTS)
def test_file_and_component_shape(product):
    data = _load(product)
    assert set(data) == {"product", "components"}
    assert data["product"] == product
    names = [c["name"] for c in data["components"]]
    assert len(names) == len(set(names)), "component names repeat"
    for comp in data["components"]:
        assert set(comp) <= {"name", "workload", "pods", "needs"}, comp["name"]
        assert ("workload" in comp) != ("pods" in comp), f"{comp['name']}: exactly one of workload/pods"
        assert comp["needs"], f"{comp['name']} has no needs"
        ids = [n.get("id") for n in comp["needs"]]
        assert len(ids) == len(set(ids)), f"{comp['name']}: repeated ids {sorted(i for i in ids if ids.count(i) > 1)}"
        if "workload" in comp:
            wl = comp["workload"]
            assert set(wl) == {"kind", "match"} and wl["kind"] in ("Deployment", "StatefulSet")
            assert wl["match"]
            for m in wl["match"]:
                assert set(m) == {"labels", "layout", "source"}, m
                assert m["layout"] in LAYOUT_FIXTURES[product], m
                assert m["labels"] and all(isinstance(v, str) for v in m["labels"].values()), m
                assert SOURCE.match(m["source"]), m["source"]
        else:
            pods = comp["pods"]
            assert set(pods) <= {"createdBy", "serviceAccount", "labels", "source"}, pods
            creator = next((c for c in data["components"] if c["name"] == pods["createdBy"]), None)
            assert creator is not None and "workload" in creator, f"{comp['name']}: createdBy {pods['createdBy']!r}"
            assert pods["serviceAccount"] in ("workflow", "executor")
            assert all(isinstance(v, str) for v in (pods.get("labels") or {}).values())
            assert SOURCE.match(pods["source"]), pods["source"]


@pytest.mark.parametrize("param", ALL_NEEDS, ids=_need_id)
def test_need_shape(param):
    product, component, need = param
    components = {c["name"]: c for c in _load(product)["components"]}
    assert KEBAB.match(str(need.get("id"))), need.get("id")
    assert isinstance(need.get("why"), str) and need["why"].strip()
    assert isinstance(need.get("source"), str) and SOURCE.match(need["source"]), need.get("source")
    kinds = [k for k in NEED_KINDS if k in need]
    assert len(kinds) == 1, f"exactly one of {NEED_KINDS}, got {kinds}"
    assert set(need) == {"id", "why", "source", kinds[0]}
    body = need[kinds[0]]
    if "when" in body:
        assert kinds[0] != "probe" and body["when"] in WHEN, body["when"]

    if kinds[0] == "permission":
        assert set(body) <= {"verb", "resource", "scope", "when", "resourceName"}
        assert body["verb"] in VERBS
        parse_resource_spec(body["resource"])
        assert body["scope"] in ("own", "managed", "cluster")
    elif kinds[0] == "flow":
        assert set(body) <= {"to", "from", "port", "when"}
        ends = [k for k in ("to", "from") if k in body]
        assert len(ends) == 1, body
        end = body[ends[0]]
        if end.startswith("component:"):
            assert end.split(":", 1)[1] in components, f"unknown component in {end!r}"
        elif end.startswith("parameter:"):
            assert re.match(r"^[a-z][A-Za-z0-9]*$", end.split(":", 1)[1]), end
        else:
            assert ends == ["to"] and end in ("dns", "apiserver"), end
        if "port" in body:
            assert isinstance(body["port"], (str, int))
    elif kinds[0] == "object":
        assert set(body) <= {"kind", "name", "namespace", "when"} and {"kind", "name", "namespace"} <= set(body)
        assert body["namespace"] in ("own", "managed")
        for ph in PLACEHOLDER.findall(body["name"]):
            assert ph in ("serviceAccount", "executorServiceAccount") or re.match(r"^arg:--[a-z-]+(\|.+)?$", ph), ph
    else:
        assert set(body) == {"flag", "default", "container", "schemeWhenOn", "schemeWhenOff"}
        assert body["flag"].startswith("--") and isinstance(body["default"], bool)
        assert {body["schemeWhenOn"], body["schemeWhenOff"]} == {"HTTP", "HTTPS"}


@pytest.mark.parametrize("product", PRODUCTS)
def test_every_match_finds_exactly_one_workload_in_its_layout(product):
    for comp in _load(product)["components"]:
        if "workload" not in comp:
            continue
        for m in comp["workload"]["match"]:
            found = _matching(LAYOUT_FIXTURES[product][m["layout"]], comp["workload"]["kind"], m["labels"])
            assert len(found) == 1, f"{comp['name']} {m['layout']} {m['labels']}: found {found}"


@pytest.mark.parametrize("product", PRODUCTS)
def test_no_workload_is_two_components(product):
    claimed: dict[tuple[str, str], str] = {}
    for comp in _load(product)["components"]:
        if "workload" not in comp:
            continue
        for layout, _, w in _claims(product, comp):
            key = (layout, w["metadata"]["name"])
            assert key not in claimed, f"{key} is both {claimed[key]} and {comp['name']}"
            claimed[key] = comp["name"]


@pytest.mark.parametrize("product", PRODUCTS)
def test_named_ports_exist_on_the_component_they_name(product):
    components = {c["name"]: c for c in _load(product)["components"]}
    checked = 0
    for comp in components.values():
        for need in comp["needs"]:
            flow = need.get("flow")
            if not flow or "port" not in flow or NUMERIC_PORT.match(str(flow["port"])):
                continue
            end = flow.get("to") or ""
            owner = components[end.split(":", 1)[1]] if end.startswith("component:") else comp
            assert "workload" in owner, f"{comp['name']}/{need['id']}: a named port needs a workload"
            workloads = _found_workloads(product, owner)
            assert workloads, f"{owner['name']} is in no fixture"
            for w in workloads:
                names = {p.get("name") for c in _containers(w) for p in c.get("ports") or []}
                assert flow["port"] in names, f"{comp['name']}/{need['id']}: {w['metadata']['name']} has no port {flow['port']!r}"
                checked += 1
    if product == "argo-workflows":
        assert checked, "the metrics ingress names a port; it was not checked"


@pytest.mark.parametrize("product", PRODUCTS)
def test_configuration_named_by_arg_exists_in_every_layout(product):
    """`${arg:--flag|default}` resolves, in each fixture, to an object that fixture ships."""
    for comp in _load(product)["components"]:
        for need in comp["needs"]:
            obj = need.get("object")
            if not obj or "when" in obj:
                continue
            m = re.fullmatch(r"\$\{arg:(--[a-z-]+)\|([^}]+)\}", obj["name"])
            if not m:
                continue
            for _, fixture, w in _claims(product, comp):
                args = [a for c in w["spec"]["template"]["spec"]["containers"] for a in (c.get("command") or []) + (c.get("args") or [])]
                value = _flag(args, m.group(1))
                name = value if isinstance(value, str) else m.group(2)
                shipped = {(d["kind"], d["metadata"]["name"]) for d in _docs(fixture)}
                assert (obj["kind"], name) in shipped, f"{comp['name']}/{need['id']}: {obj['kind']} {name} not in {fixture.name}"


@pytest.mark.parametrize("product", PRODUCTS)
def test_probe_rules_hold_on_the_shipped_installs(product):
    """Upstream and the chart ship working installs, so each probe rule must agree with them."""
    seen = 0
    for comp in _load(product)["components"]:
        for need in comp["needs"]:
            probe = need.get("probe")
            if not probe:
                continue
            for w in _found_workloads(product, comp):
                container = next(c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == probe["container"])
                value = _flag((container.get("command") or []) + (container.get("args") or []), probe["flag"])
                on = probe["default"] if value is None else value in (True, "true")
                want = probe["schemeWhenOn"] if on else probe["schemeWhenOff"]
                scheme = container["readinessProbe"]["httpGet"].get("scheme", "HTTP")
                assert scheme == want, f"{w['metadata']['name']}: {probe['flag']}={on} but probe is {scheme}"
                seen += 1
    if product == "argo-workflows":
        # argo-server upstream (--secure unset, HTTPS) and from the chart (--secure=false, HTTP).
        assert seen == 2


def test_a_label_set_that_matches_nothing_is_caught():
    """The match check fails on a wrong label set rather than passing vacuously."""
    fixture = LAYOUT_FIXTURES["argo-workflows"]["helm"]
    assert _matching(fixture, "Deployment", {"app.kubernetes.io/component": "workflow-controller"}) == [
        "wf-argo-workflows-workflow-controller"]
    assert _matching(fixture, "Deployment", {"app": "argo-server"}) == []
    assert _matching(fixture, "Deployment", {"app.kubernetes.io/part-of": "argo-workflows"}) == [
        "wf-argo-workflows-workflow-controller", "wf-argo-workflows-server"]
