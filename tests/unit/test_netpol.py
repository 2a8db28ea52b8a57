"""Table-driven tests for harden.impact.netpol (NetworkPolicy reachability)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from harden.impact import netpol
from harden.impact.netpol import (
    CidrEndpoint,
    ContainerPort,
    Endpoint,
    FlowDirection,
    NetworkModel,
    PodEndpoint,
    Protocol,
    diff_reachability,
    evaluate,
    matrix,
    parse_endpoint,
    parse_pod_endpoint,
    parse_port,
    pod_groups,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "argo-workflows"

# --------------------------------------------------------------------------- builders


def np(name: str, ns: str, pod_selector: dict[str, Any] | None = None, *, ingress: list[Any] | None = None,
       egress: list[Any] | None = None, types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pod_selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(ns: str, ports: tuple[ContainerPort, ...] = (), **labels: str) -> PodEndpoint:
    return PodEndpoint(ns, tuple(labels.items()), ports)


def cidr(text: str) -> CidrEndpoint:
    return CidrEndpoint(ipaddress.ip_network(text))


WEB = pod("a", (ContainerPort(8080, Protocol.TCP, "http"), ContainerPort(53, Protocol.UDP, "dns")), app="web")
API = pod("a", (ContainerPort(9090, Protocol.TCP, "metrics"),), app="api")
DB = pod("b", (ContainerPort(5432),), app="db")
OTHER_B = pod("b", app="other")
C_POD = pod("c", app="web")

DENY_INGRESS_A = np("deny-in", "a", types=["Ingress"])
DENY_EGRESS_A = np("deny-out", "a", types=["Egress"])
SEL_APP_API = {"matchLabels": {"app": "api"}}
SEL_APP_WEB = {"matchLabels": {"app": "web"}}

# (id, objects, src, dst, port, protocol, expected)
CASES: list[tuple[str, list[dict[str, Any]], Endpoint, Endpoint, int | str, str | None, bool]] = [
    ("no-policies-allow-all", [], WEB, API, 9090, None, True),
    ("no-policies-cidr", [], WEB, cidr("8.8.8.8/32"), 443, None, True),
    ("default-deny-ingress", [DENY_INGRESS_A], WEB, API, 9090, None, False),
    ("default-deny-ingress-leaves-egress", [DENY_INGRESS_A], API, DB, 5432, None, True),
    ("policy-without-types-is-ingress-only", [np("p", "a")], WEB, API, 9090, None, False),
    ("policy-without-types-egress-section-empty-not-egress", [np("p", "a", egress=[])], API, DB, 5432, None, True),
    ("policy-without-types-egress-section-is-egress", [np("p", "a", egress=[{"to": [{"podSelector": {}}]}])],
     API, DB, 5432, None, False),
    ("deny-egress-only", [DENY_EGRESS_A], WEB, DB, 5432, None, False),
    ("deny-egress-only-ingress-open", [DENY_EGRESS_A], DB, WEB, 8080, None, True),
    ("deny-egress-only-cidr", [DENY_EGRESS_A], WEB, cidr("10.0.0.0/8"), 443, None, False),
    ("cidr-source-only-ingress-matters", [DENY_EGRESS_A], cidr("10.1.2.3/32"), WEB, 8080, None, True),
    ("policy-other-namespace-no-effect", [np("deny-in", "b", types=["Ingress"])], WEB, API, 9090, None, True),
    ("selector-not-matching-pod", [np("p", "a", SEL_APP_WEB, types=["Ingress"])], WEB, API, 9090, None, True),
    ("empty-rule-allows-all", [DENY_INGRESS_A, np("any", "a", ingress=[{}])], DB, API, 9090, None, True),
    ("podselector-peer-same-ns-only",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}])], C_POD, API, 9090, None, False),
    ("podselector-peer-same-ns",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}])], WEB, API, 9090, None, True),
    ("namespace-selector-metadata-name",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "c"}}}]}])],
     C_POD, API, 9090, None, True),
    ("namespace-selector-custom-label",
     [namespace("c", team="blue"),
      np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}])],
     C_POD, API, 9090, None, True),
    ("namespace-selector-no-match",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}])],
     C_POD, API, 9090, None, False),
    ("and-peer-both-match",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}},
                                                  "podSelector": {"matchLabels": {"app": "db"}}}]}])],
     DB, API, 9090, None, True),
    ("and-peer-pod-mismatch",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}},
                                                  "podSelector": {"matchLabels": {"app": "db"}}}]}])],
     OTHER_B, API, 9090, None, False),
    ("or-peers-either-matches",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}},
                                                  {"podSelector": {"matchLabels": {"app": "db"}}}]}])],
     OTHER_B, API, 9090, None, True),
    ("match-expressions-notin-missing-key",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["x"]}]}}]}])],
     WEB, API, 9090, None, True),
    ("ipblock-does-not-match-pods",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])], WEB, API, 9090, None, False),
    ("ipblock-egress-cidr-allowed",
     [np("p", "a", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}], types=["Egress"])],
     WEB, cidr("10.2.3.4/32"), 443, None, True),
    ("ipblock-except-excludes",
     [np("p", "a", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}], types=["Egress"])],
     WEB, cidr("10.1.2.3/32"), 443, None, False),
    ("ipblock-range-partially-excepted",
     [np("p", "a", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}], types=["Egress"])],
     WEB, cidr("10.0.0.0/8"), 443, None, False),
    ("ipblock-outside-cidr",
     [np("p", "a", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}], types=["Egress"])],
     WEB, cidr("192.168.0.1/32"), 443, None, False),
    ("ipblock-ipv6-vs-ipv4",
     [np("p", "a", egress=[{"to": [{"ipBlock": {"cidr": "::/0"}}]}], types=["Egress"])],
     WEB, cidr("10.0.0.1/32"), 443, None, False),
    ("ipblock-ingress-from-cidr",
     [np("p", "a", SEL_APP_WEB, ingress=[{"from": [{"ipBlock": {"cidr": "192.168.0.0/16"}}]}])],
     cidr("192.168.1.1/32"), WEB, 8080, None, True),
    ("named-port-ingress",
     [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": "metrics"}]}])], WEB, API, 9090, None, True),
    ("named-port-ingress-other-number",
     [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": "metrics"}]}])], WEB, API, 9091, None, False),
    ("named-port-resolves-against-destination-for-egress",
     [np("p", "a", SEL_APP_WEB, egress=[{"ports": [{"port": "metrics"}]}], types=["Egress"])], WEB, API, 9090, None, True),
    ("named-port-egress-source-name-irrelevant",
     [np("p", "a", SEL_APP_API, egress=[{"ports": [{"port": "http"}]}], types=["Egress"])], API, WEB, 8080, None, True),
    ("named-port-egress-not-on-destination",
     [np("p", "a", SEL_APP_WEB, egress=[{"ports": [{"port": "http"}]}], types=["Egress"])], WEB, API, 8080, None, False),
    ("named-port-never-matches-cidr",
     [np("p", "a", SEL_APP_WEB, egress=[{"ports": [{"port": "http"}]}], types=["Egress"])], WEB, cidr("1.1.1.1/32"), 8080, None, False),
    ("flow-port-by-name", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9090}]}])], WEB, API, "metrics", None, True),
    ("named-port-protocol-must-match",
     [np("p", "a", SEL_APP_WEB, ingress=[{"ports": [{"port": "dns", "protocol": "TCP"}]}])], API, WEB, 53, "UDP", False),
    ("named-port-udp", [np("p", "a", SEL_APP_WEB, ingress=[{"ports": [{"port": "dns", "protocol": "UDP"}]}])], API, WEB, 53, "UDP", True),
    ("endport-inside", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9000, "endPort": 9100}]}])], WEB, API, 9090, None, True),
    ("endport-upper-inclusive", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9000, "endPort": 9100}]}])], WEB, API, 9100, None, True),
    ("endport-outside", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9000, "endPort": 9100}]}])], WEB, API, 9101, None, False),
    ("udp-rule-not-tcp", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9090, "protocol": "UDP"}]}])], WEB, API, 9090, "TCP", False),
    ("udp-rule-udp", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9090, "protocol": "UDP"}]}])], WEB, API, 9090, "UDP", True),
    ("default-protocol-tcp-not-sctp", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": 9090}]}])], WEB, API, 9090, "SCTP", False),
    ("protocol-only-all-ports", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"protocol": "UDP"}]}])], WEB, API, 1234, "UDP", True),
    ("quoted-numeric-port", [np("p", "a", SEL_APP_API, ingress=[{"ports": [{"port": "9090"}]}])], WEB, API, 9090, None, True),
    # A flow needs the source's egress AND the destination's ingress.
    ("needs-both-egress-only-allows",
     [np("e", "a", SEL_APP_WEB, egress=[{"to": [{"podSelector": SEL_APP_API}]}], types=["Egress"]),
      np("i", "a", SEL_APP_API, types=["Ingress"])], WEB, API, 9090, None, False),
    ("needs-both-ingress-only-allows",
     [np("e", "a", SEL_APP_WEB, types=["Egress"]),
      np("i", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}])], WEB, API, 9090, None, False),
    ("needs-both-both-allow",
     [np("e", "a", SEL_APP_WEB, egress=[{"to": [{"podSelector": SEL_APP_API}], "ports": [{"port": 9090}]}], types=["Egress"]),
      np("i", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}])], WEB, API, 9090, None, True),
    ("policies-are-additive",
     [DENY_INGRESS_A, np("allow", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}])], WEB, API, 9090, None, True),
    ("peer-without-selectors-invalid-matches-nothing",
     [np("p", "a", SEL_APP_API, ingress=[{"from": [{}]}])], WEB, API, 9090, None, False),
]


@pytest.mark.parametrize(("objects", "src", "dst", "port", "protocol", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evaluate(objects: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int | str,
                  protocol: str | None, expected: bool) -> None:
    decision = evaluate(objects, src, dst, port, protocol)
    assert decision.allowed is expected, decision.reason


def test_decision_lists_deciding_policies() -> None:
    objects = [DENY_INGRESS_A, np("allow", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}]}]),
               DENY_EGRESS_A]
    d = evaluate(objects, WEB, API, 9090)
    assert not d.allowed
    assert d.ingress_policies == ("a/deny-in", "a/allow")
    assert d.ingress_allowed_by == ("a/allow",)
    assert d.ingress_allowed and not d.egress_allowed
    assert d.egress_policies == ("a/deny-out",) and d.egress_allowed_by == ()
    assert "denied" in d.reason and "a/deny-out" in d.reason
    assert d.to_dict()["egressPolicies"] == ["a/deny-out"]

    open_flow = evaluate([], WEB, API, 9090)
    assert open_flow.ingress_policies is None and open_flow.egress_policies is None
    assert "not isolated" in open_flow.reason


def test_unknown_named_flow_port_is_an_error() -> None:
    with pytest.raises(ValueError, match="not declared"):
        evaluate([], WEB, API, "nope")
    with pytest.raises(ValueError):
        evaluate([], WEB, cidr("1.1.1.1/32"), "http")


def test_namespace_label_always_set_even_if_object_omits_it() -> None:
    model = NetworkModel.from_objects([namespace("a", team="x")])
    assert model.namespace_labels("a") == {"team": "x", "kubernetes.io/metadata.name": "a"}
    assert model.namespace_labels("ghost") == {"kubernetes.io/metadata.name": "ghost"}


# --------------------------------------------------------------------------- pod groups


def _deploy(kind: str, name: str, ns: str, labels: dict[str, str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "ports": ports}]}}
    spec: dict[str, Any] = {"jobTemplate": {"spec": {"template": template}}} if kind == "CronJob" else {"template": template}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_pod_groups_from_workloads() -> None:
    objects = [
        _deploy("Deployment", "web", "a", {"app": "web"}, [{"containerPort": 80, "name": "http"}]),
        _deploy("CronJob", "tick", "a", {"job": "tick"}, [{"containerPort": 53, "protocol": "UDP"}]),
        _deploy("StatefulSet", "db", "b", {"app": "db"}, []),
        # Owned by the Deployment above: a live listing must not double count.
        {"kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "a",
                                           "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]},
         "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}},
        {"kind": "Pod", "metadata": {"name": "solo", "namespace": "a", "labels": {"x": "y"}},
         "spec": {"containers": [{"name": "c"}]}},
        {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "a"}},
    ]
    groups = {g.key: g for g in pod_groups(objects)}
    assert set(groups) == {"a/deployment/web", "a/cronjob/tick", "b/statefulset/db", "a/pod/solo"}
    assert groups["a/deployment/web"].named_ports == {"http": (80, Protocol.TCP)}
    assert groups["a/cronjob/tick"].ports == (ContainerPort(53, Protocol.UDP),)
    assert groups["a/pod/solo"].label_map == {"x": "y"}


def test_matrix_and_any_port_probe() -> None:
    objects = [
        _deploy("Deployment", "web", "a", {"app": "web"}, [{"containerPort": 80, "name": "http"}, {"containerPort": 81}]),
        _deploy("Deployment", "api", "a", {"app": "api"}, []),
        np("web-in", "a", SEL_APP_WEB, ingress=[{"from": [{"podSelector": SEL_APP_API}], "ports": [{"port": 80}]}]),
        np("api-in", "a", SEL_APP_API, ingress=[{"from": [{"podSelector": SEL_APP_WEB}], "ports": [{"port": 7000, "endPort": 7010}]}]),
    ]
    m = matrix(objects)
    assert m.keys == ("a/deployment/web", "a/deployment/api")
    assert m.cell("a/deployment/api", "a/deployment/web").open == ("http:80/TCP",)
    assert m.cell("a/deployment/api", "a/deployment/web").symbol == "http:80/TCP"
    assert not m.reachable("a/deployment/web", "a/deployment/web")
    # api declares no ports: the 7000-7010 range is found by the representative probe.
    assert m.cell("a/deployment/web", "a/deployment/api").open == ("*",)
    assert not m.reachable("a/deployment/api", "a/deployment/api")
    rows = m.rows()
    assert rows[0] == ["src \\ dst", "a/deployment/web", "a/deployment/api"]
    assert rows[2] == ["a/deployment/api", "http:80/TCP", "-"]
    assert matrix(objects, ports=["81"]).cell("a/deployment/api", "a/deployment/web").symbol == "-"
    assert matrix([o for o in objects if o["kind"] != "NetworkPolicy"]).rows()[1][1:] == ["all", "all"]


def test_diff_reachability_with_cidr() -> None:
    web = _deploy("Deployment", "web", "a", {"app": "web"}, [{"containerPort": 80}])
    db_net = CidrEndpoint(ipaddress.ip_network("10.0.0.0/8"), ports=(ContainerPort(5432),))
    before = [web]
    after = [web, np("egress", "a", SEL_APP_WEB, egress=[{"to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}]}]),
             np("ingress", "a", SEL_APP_WEB, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}])]
    changes = diff_reachability(before, after, extra_endpoints=[db_net])
    assert [c.text for c in changes] == [
        "a/deployment/web -> 10.0.0.0/8:5432/TCP closed",
        "a/deployment/web -> a/deployment/web:80/TCP closed",
    ]
    assert changes[0].direction is FlowDirection.CLOSED
    assert changes[0].to_dict()["direction"] == "closed"
    reopened = diff_reachability(after, before, extra_endpoints=[db_net])
    assert {c.direction for c in reopened} == {FlowDirection.OPENED}


# --------------------------------------------------------------------------- parsing

PORT_CASES = [
    ("number", "9090", (9090, None)),
    ("number-proto", "9090/TCP", (9090, Protocol.TCP)),
    ("lowercase-proto", "53/udp", (53, Protocol.UDP)),
    ("named", "metrics", ("metrics", None)),
    ("named-proto", "dns/UDP", ("dns", Protocol.UDP)),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES])
def test_parse_port(text: str, expected: tuple[int | str, Protocol | None]) -> None:
    assert parse_port(text) == expected


@pytest.mark.parametrize("text", ["", "0", "70000", "80/ICMP", "/TCP"], ids=["empty", "zero", "too-big", "bad-proto", "no-port"])
def test_parse_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_port(text)


def test_parse_endpoints() -> None:
    objects = [_deploy("Deployment", "api", "a", {"app": "api", "tier": "be"}, [{"containerPort": 9090, "name": "metrics"}])]
    ep = parse_pod_endpoint("a/app=api", objects)
    assert ep.namespace == "a" and ep.label_map == {"app": "api"}
    assert ep.named_ports == {"metrics": (9090, Protocol.TCP)}  # inherited from the selected workload
    assert parse_pod_endpoint("a/app=api,tier=be").label_map == {"app": "api", "tier": "be"}
    assert parse_pod_endpoint("a").labels == ()
    assert parse_pod_endpoint("a/deployment/api", objects).key == "a/deployment/api"
    assert isinstance(parse_endpoint("10.0.0.0/8"), CidrEndpoint)
    assert parse_endpoint("1.2.3.4").key == "1.2.3.4"
    assert isinstance(parse_endpoint("a/app=api", objects), PodEndpoint)
    with pytest.raises(ValueError):
        parse_pod_endpoint("a/app")
    with pytest.raises(ValueError):
        parse_pod_endpoint("a/deployment/missing", objects)


# --------------------------------------------------------------------------- real fixture


def _quick_start() -> list[dict[str, Any]]:
    path = FIXTURES / "quick-start-postgres.yaml"
    objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
    for obj in objects:
        obj.setdefault("metadata", {})["namespace"] = "argo"
    return objects


def test_quick_start_argo_server_reaches_postgres_until_default_deny_egress() -> None:
    objects = _quick_start()
    model = NetworkModel.from_objects(objects)
    server = parse_pod_endpoint("argo/app=argo-server", model)
    postgres = next(g for g in model.groups if g.key == "argo/deployment/postgres")
    assert evaluate(model, server, postgres, 5432).allowed

    deny = np("default-deny-egress", "argo", types=["Egress"])
    decision = evaluate([*objects, deny], server, postgres, 5432)
    assert not decision.allowed
    assert decision.egress_policies == ("argo/default-deny-egress",)
    assert decision.ingress_policies is None

    changes = diff_reachability(objects, [*objects, deny])
    assert "argo/deployment/argo-server -> argo/deployment/postgres:5432/TCP closed" in [c.text for c in changes]
    assert all(c.direction is FlowDirection.CLOSED for c in changes)


def test_module_has_no_forbidden_imports() -> None:
    source = Path(netpol.__file__).read_text()
    for mod in ("kubernetes", "typer", "rich"):
        assert f"import {mod}" not in source and f"from {mod}" not in source


# --------------------------------------------------------------------------- regressions


def test_policy_covering_every_port_does_not_crash_any_port_probes() -> None:
    # A policy allowing 1-65535 leaves no unmentioned port; probing used to raise StopIteration.
    every = np("all-ports", "a", SEL_APP_WEB, ingress=[{"ports": [{"port": 1, "endPort": 65535}]}],
               types=["Ingress"])
    model = NetworkModel.from_objects([every])
    ports = model.candidate_ports()
    assert (1, Protocol.TCP) in ports
    assert all(1 <= p <= 65535 for p, _ in ports)
    assert matrix([every], [WEB, API]).reachable(API.key, WEB.key)


EGRESS_ONLY_WEB = {"podSelector": SEL_APP_WEB, "policyTypes": ["Egress"]}


def _egress(name: str, *blocks: dict[str, Any], port: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": [{"ipBlock": b} for b in blocks]}
    if port is not None:
        rule["ports"] = [{"port": port}]
    return np(name, "a", SEL_APP_WEB, egress=[rule], types=["Egress"])


@pytest.mark.parametrize(("objects", "target", "allowed"), [
    # two halves in one rule
    ([_egress("halves", {"cidr": "10.0.0.0/9"}, {"cidr": "10.128.0.0/9"})], "10.0.0.0/8", True),
    # two halves in two policies
    ([_egress("low", {"cidr": "10.0.0.0/9"}), _egress("high", {"cidr": "10.128.0.0/9"})], "10.0.0.0/8", True),
    # an except filled back in by a sibling block
    ([_egress("carve", {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}, {"cidr": "10.1.0.0/16"})],
     "10.0.0.0/8", True),
    # an except nobody fills back in
    ([_egress("carve", {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]})], "10.0.0.0/8", False),
    # only one half allowed
    ([_egress("low", {"cidr": "10.0.0.0/9"})], "10.0.0.0/8", False),
    # the other half allowed only on another port
    ([_egress("low", {"cidr": "10.0.0.0/9"}), _egress("high", {"cidr": "10.128.0.0/9"}, port=22)], "10.0.0.0/8", False),
])
def test_cidr_range_allowed_by_several_blocks_together(objects: list[dict[str, Any]], target: str,
                                                        allowed: bool) -> None:
    decision = evaluate(objects, WEB, cidr(target), 443)
    assert decision.allowed is allowed
    assert bool(decision.egress_allowed_by) is allowed
