"""The indexed NetworkPolicy evaluation answers exactly as the plain all-pairs evaluation does.

`NetworkModel` indexes policies by namespace, caches selector and flow answers per (namespace,
labels), and `diff_reachability` skips pairs that cannot have changed. `_Naive` below is the
reference: every policy scanned for every question, nothing cached, and the diff asks every pair
through `evaluate`. Random small clusters (seeded, so a failure names its seed) cover pod and
namespace selectors with every operator, ipBlocks with excepts, numeric, ranged and named ports of
three protocols, ingress and egress, defaulted policyTypes, and namespace labels that change.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from typing import Any

import pytest
from test_netpol import _deploy, namespace, np

from harden.impact.netpol import (
    CidrEndpoint,
    ContainerPort,
    Endpoint,
    FlowChange,
    FlowDirection,
    NetworkModel,
    PodEndpoint,
    Protocol,
    _Policy,
    diff_reachability,
    matrix,
)
from harden.impact.selectors import selector_matches


class _Naive(NetworkModel):
    """The reference: a linear scan over every policy and every selector, each time."""

    def _selecting(self, pod: PodEndpoint, policy_type: str) -> list[_Policy]:
        return [p for p in self.policies if p.namespace == pod.namespace and policy_type in p.types
                and selector_matches(p.pod_selector, pod.label_map)]

    def _pod_matches(self, selector: Mapping[str, Any], pod: PodEndpoint) -> bool:
        return selector_matches(selector, pod.label_map)

    def _namespace_matches(self, selector: Mapping[str, Any], namespace: str) -> bool:
        return selector_matches(selector, self.namespace_labels(namespace))

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: Protocol) -> bool:
        return self.evaluate(src, dst, port, protocol).allowed


def naive_diff(before: list[dict[str, Any]], after: list[dict[str, Any]], extra: list[Endpoint]) -> list[FlowChange]:
    """Every ordered pair of endpoints, every probe port, asked of both states."""
    b, a = _Naive.from_objects(before), _Naive.from_objects(after)
    endpoints: dict[str, Endpoint] = {g.key: g for g in b.groups}
    endpoints.update({g.key: g for g in a.groups})
    endpoints.update({e.key: e for e in extra})
    candidates = sorted(set(b.candidate_ports()) | set(a.candidate_ports()))
    out = []
    for s in endpoints.values():
        for d in endpoints.values():
            if isinstance(s, CidrEndpoint) and isinstance(d, CidrEndpoint):
                continue
            probes = [(cp, [(cp.port, cp.protocol)]) for cp in d.ports] if d.ports else [(None, candidates)]
            for cp, ports in probes:
                was = any(b.evaluate(s, d, n, p).allowed for n, p in ports)
                now = any(a.evaluate(s, d, n, p).allowed for n, p in ports)
                if was != now:
                    out.append(FlowChange(s.key, d.key, cp.port if cp else None, cp.protocol if cp else None,
                                          FlowDirection.OPENED if now else FlowDirection.CLOSED,
                                          cp.name if cp else None))
    return sorted(out, key=lambda c: (c.direction.value, c.src, c.dst, c.port or 0, c.port_label))


NAMESPACES = ("a", "b", "c")
LABELS = {"app": ("web", "db", "api"), "tier": ("fe", "be")}
NS_LABELS = {"team": ("x", "y"), "env": ("prod", "dev")}
PORTS = [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"},
         {"containerPort": 5432, "name": "pg"}, {"containerPort": 9090, "protocol": "SCTP"}]
CIDRS = ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "0.0.0.0/0", "192.168.0.0/16")
EXTRA = [CidrEndpoint(ipaddress.ip_network(c)) for c in ("10.1.2.3/32", "10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24")]


def _labels(rng: random.Random, pool: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    return {k: rng.choice(v) for k, v in pool.items() if rng.random() < 0.6}


def _selector(rng: random.Random, pool: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    sel: dict[str, Any] = {}
    if rng.random() < 0.5:
        sel["matchLabels"] = _labels(rng, pool)
    if rng.random() < 0.3:
        key = rng.choice(list(pool))
        op = rng.choice(("In", "NotIn", "Exists", "DoesNotExist"))
        expr: dict[str, Any] = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = rng.sample(pool[key], rng.randint(1, len(pool[key])))
        sel["matchExpressions"] = [expr]
    return sel


def _peer(rng: random.Random) -> dict[str, Any]:
    shape = rng.choice(("pod", "ns", "both", "ip", "ip"))
    if shape == "ip":
        block: dict[str, Any] = {"cidr": rng.choice(CIDRS)}
        if block["cidr"] in ("10.0.0.0/8", "0.0.0.0/0") and rng.random() < 0.5:
            block["except"] = [rng.choice(("10.1.0.0/16", "10.1.2.0/24"))]
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if shape in ("pod", "both"):
        peer["podSelector"] = _selector(rng, LABELS)
    if shape in ("ns", "both"):
        peer["namespaceSelector"] = _selector(rng, NS_LABELS)
    return peer


def _ports(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.randint(1, 2)):
        entry: dict[str, Any] = {}
        kind = rng.choice(("num", "range", "name", "proto"))
        if kind == "num":
            entry["port"] = rng.choice((80, 53, 5432, 8080, 9090))
        elif kind == "range":
            entry["port"], entry["endPort"] = rng.choice(((50, 100), (5000, 6000), (1, 65535)))
        elif kind == "name":
            entry["port"] = rng.choice(("http", "dns", "pg"))
        if rng.random() < 0.4:
            entry["protocol"] = rng.choice(("TCP", "UDP", "SCTP"))
        out.append(entry)
    return out


def _rules(rng: random.Random, peer_key: str) -> list[dict[str, Any]]:
    rules = []
    for _ in range(rng.randint(0, 2)):
        rule: dict[str, Any] = {}
        if rng.random() < 0.7:
            rule[peer_key] = [_peer(rng) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.6:
            rule["ports"] = _ports(rng)
        rules.append(rule)
    return rules


def _policy(rng: random.Random, name: str) -> dict[str, Any]:
    types = rng.choice((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]))
    return np(name, rng.choice(NAMESPACES), _selector(rng, LABELS), types=types,
              ingress=_rules(rng, "from") if rng.random() < 0.8 else None,
              egress=_rules(rng, "to") if rng.random() < 0.6 else None)


def _cluster(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(namespaces, workloads, policies); two workloads may share a namespace and labels."""
    nss = [namespace(n, **_labels(rng, NS_LABELS)) for n in NAMESPACES]
    workloads = [_deploy("Deployment", f"w{i}", rng.choice(NAMESPACES), _labels(rng, LABELS),
                         rng.sample(PORTS, rng.randint(0, 2))) for i in range(rng.randint(2, 6))]
    return nss, workloads, [_policy(rng, f"p{i}") for i in range(rng.randint(0, 5))]


def _mutate(rng: random.Random, nss: list[dict[str, Any]], workloads: list[dict[str, Any]],
            policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The after-state: some policies dropped, replaced or added, or namespaces relabelled, or both."""
    change = rng.choice(("policies", "namespaces", "both"))
    after = policies
    if change != "namespaces":
        after = [p for p in policies if rng.random() < 0.7]
        after = [_policy(rng, p["metadata"]["name"]) if rng.random() < 0.3 else p for p in after]
        after += [_policy(rng, f"new{i}") for i in range(rng.randint(0, 3))]
    if change != "policies":
        nss = [namespace(n, **_labels(rng, NS_LABELS)) for n in NAMESPACES]
    return nss + workloads + after


SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_diff_matches_all_pairs(seed: int) -> None:
    rng = random.Random(seed)
    nss, workloads, policies = _cluster(rng)
    before = nss + workloads + policies
    after = _mutate(rng, nss, workloads, policies)
    assert diff_reachability(before, after, EXTRA) == naive_diff(before, after, EXTRA), f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_flows_and_matrix_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    nss, workloads, policies = _cluster(rng)
    objects = nss + workloads + policies
    fast, naive = NetworkModel.from_objects(objects), _Naive.from_objects(objects)
    # Ad-hoc label endpoints (no workload name) share classes with groups: the caches must not mix them up.
    endpoints: list[Endpoint] = [*fast.groups, *EXTRA,
                                 *(PodEndpoint(rng.choice(NAMESPACES), tuple(_labels(rng, LABELS).items()))
                                   for _ in range(3))]
    ports = [(80, Protocol.TCP), (53, Protocol.UDP), (5432, Protocol.TCP), (9090, Protocol.SCTP), (7000, Protocol.TCP)]
    for s in endpoints:
        for d in endpoints:
            for n, p in ports:
                want = naive.evaluate(s, d, n, p)
                assert fast.evaluate(s, d, n, p) == want, f"seed {seed}"
                assert fast.allowed(s, d, n, p) is want.allowed, f"seed {seed}: {want.reason}"
    assert matrix(fast) == matrix(naive), f"seed {seed}"


def test_random_clusters_exercise_both_verdicts_and_changes() -> None:
    """The generator is not degenerate: flows open, close and stay, and some ingress is per peer."""
    directions: set[FlowDirection] = set()
    verdicts: set[bool] = set()
    for seed in range(40):
        rng = random.Random(seed)
        nss, workloads, policies = _cluster(rng)
        before = nss + workloads + policies
        after = _mutate(rng, nss, workloads, policies)
        directions |= {c.direction for c in naive_diff(before, after, EXTRA)}
        model = NetworkModel.from_objects(before)
        verdicts |= {model.allowed(s, d, 80, Protocol.TCP) for s in model.groups for d in model.groups}
    assert directions == {FlowDirection.OPENED, FlowDirection.CLOSED}
    assert verdicts == {True, False}


def test_one_workload_of_many_identical_pods_keeps_its_own_named_ports() -> None:
    """Flow answers are cached per (namespace, labels, ports): same labels, other ports, other answer."""
    objs = [np("only-http", "a", {"matchLabels": {"app": "web"}}, ingress=[{"ports": [{"port": "http"}]}])]
    model = NetworkModel.from_objects(objs)
    client = PodEndpoint("a", (("app", "client"),))
    named = PodEndpoint("a", (("app", "web"),), (ContainerPort(80, Protocol.TCP, "http"),))
    unnamed = PodEndpoint("a", (("app", "web"),), (ContainerPort(80, Protocol.TCP),))
    assert model.allowed(client, named, 80, Protocol.TCP)
    assert not model.allowed(client, unnamed, 80, Protocol.TCP)


def test_relabelled_namespace_changes_flows_although_no_policy_changed() -> None:
    """Equal policies in both states do not make a pair unchanged: namespaceSelectors read labels."""
    workloads = [_deploy("Deployment", "web", "a", {"app": "web"}, [PORTS[0]]),
                 _deploy("Deployment", "cli", "b", {"app": "cli"}, [])]
    policy = np("from-team-x", "a", {}, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]}])
    before = [namespace("a", team="x"), namespace("b", team="y"), policy, *workloads]
    after = [namespace("a", team="x"), namespace("b", team="x"), policy, *workloads]
    assert [c.text for c in diff_reachability(before, after)] == ["b/deployment/cli -> a/deployment/web:80/TCP opened"]
    assert diff_reachability(before, after) == naive_diff(before, after, [])
