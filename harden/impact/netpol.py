"""NetworkPolicy reachability over plain Kubernetes object dicts.

Answers "can A talk to B on port P" for a predicted state, following the
NetworkPolicy API semantics (``networking.k8s.io/v1``) rather than any one CNI.

Model and design decisions
--------------------------
* **Endpoints.** A pod endpoint is (namespace, labels, container ports); a
  CIDR endpoint is an :mod:`ipaddress` network (a single IP is a /32 or /128).
  Pods have *no IP* in this model -- a predicted state has none -- so an
  ``ipBlock`` peer never matches a pod endpoint, and pod/namespace selectors
  never match a CIDR endpoint. (In a real cluster an ``ipBlock`` covering the
  pod CIDR may also match pods; CNIs differ there and the spec calls it
  implementation-defined, so we do not guess.)
* **Pod groups** are derived from workload templates (Deployment,
  StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) and
  bare Pods. Objects whose *controller* owner is itself one of those kinds are
  skipped, so a live listing (Deployment + ReplicaSet + Pods) yields one group.
* **Namespaces.** Namespace labels come from Namespace objects; the API
  server always sets ``kubernetes.io/metadata.name`` to the namespace name, so
  we do too (also for namespaces that have no Namespace object at all).
* **Isolation** (per direction): a pod is isolated for ingress (egress) if
  any policy *in its namespace* selects it with ``podSelector`` and has
  ``Ingress`` (``Egress``) in ``policyTypes``. When ``policyTypes`` is absent
  the API server defaults it to ``[Ingress]`` plus ``Egress`` iff the
  ``egress`` list is non-empty -- mirrored exactly. A non-isolated direction
  allows everything; an isolated one allows a flow iff some selecting policy
  has a rule whose peers *and* ports match. Policies are purely additive.
* **Rules.** Missing/empty ``from``/``to`` = all peers; missing/empty
  ``ports`` = all ports and protocols. Peers are ORed; inside one peer
  ``podSelector`` and ``namespaceSelector`` are ANDed; ``podSelector`` alone
  means the policy's own namespace; ``namespaceSelector`` alone means every
  pod in matching namespaces. A peer with none of the three fields is invalid
  (the API server rejects it) and matches nothing.
* **Ports.** Protocol defaults to TCP; TCP/UDP/SCTP never match each other.
  A numeric port optionally extends to ``endPort`` (inclusive). A *named*
  port is resolved against the *destination* pod's container ports (name and
  protocol must both match), for ingress and egress alike -- which is why a
  named port in an egress rule can never match a CIDR destination. Quoted
  digits (``port: "80"``) are treated as numbers: the API server rejects
  port names without a letter, so this only forgives YAML quoting.
* **A flow** is allowed iff the source's egress and the destination's
  ingress both allow it. For a CIDR destination only the source's egress
  matters (and vice versa): the other side is outside the cluster.
* **CIDR endpoints** match an ``ipBlock`` only if *every* address of the
  endpoint is inside ``cidr`` and none is in ``except`` -- "reachable" for a
  range means the whole range is reachable.
* **Matrix "any port".** A destination without declared container ports is
  tested on a small set of representative ports: the start of every port
  range mentioned in any policy plus one port no policy mentions, per
  protocol. Allowed ports are unions of ranges on each side, so if their
  intersection is non-empty it contains one of these representatives.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harden.impact.selectors import flatten_objects, selector_matches

__all__ = [
    "Protocol",
    "ContainerPort",
    "PodEndpoint",
    "PodGroup",
    "CidrEndpoint",
    "Endpoint",
    "NetworkModel",
    "FlowDecision",
    "ReachCell",
    "ReachMatrix",
    "FlowDirection",
    "FlowChange",
    "pod_groups",
    "evaluate",
    "matrix",
    "diff_reachability",
    "parse_pod_endpoint",
    "parse_endpoint",
    "parse_port",
]

NS_NAME_LABEL = "kubernetes.io/metadata.name"
ANY_PORT = "*"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Labels = tuple[tuple[str, str], ...]

_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"})
_WORKLOAD_KINDS = _TEMPLATE_KINDS | {"CronJob", "Pod"}


class Protocol(str, Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"

    @classmethod
    def parse(cls, value: str | Protocol | None) -> Protocol:
        if value is None or value == "":
            return cls.TCP
        try:
            return cls(str(value.value if isinstance(value, Protocol) else value).upper())
        except ValueError:
            raise ValueError(f"unknown protocol {value!r}; want TCP, UDP or SCTP") from None


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, order=True)
class ContainerPort:
    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None

    @property
    def label(self) -> str:
        """``2746/TCP`` or ``web:2746/TCP``."""
        base = f"{self.port}/{self.protocol.value}"
        return f"{self.name}:{base}" if self.name else base


def _freeze_labels(labels: Mapping[str, str] | Labels) -> Labels:
    items = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True)
class PodEndpoint:
    """Pods of one namespace with given labels (a *pod group* when ``name`` is set).

    ``labels`` may be passed as a dict; it is stored as a sorted tuple so the
    value stays hashable. ``ports`` are all declared container ports.
    """

    namespace: str
    labels: Labels = ()
    ports: tuple[ContainerPort, ...] = ()
    name: str = ""  # e.g. "deployment/argo-server"; "" for an ad-hoc selector

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _freeze_labels(self.labels))
        object.__setattr__(self, "ports", tuple(self.ports))

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def named_ports(self) -> dict[str, tuple[int, Protocol]]:
        return {p.name: (p.port, p.protocol) for p in self.ports if p.name}

    @property
    def key(self) -> str:
        """Display / identity key: ``argo/deployment/argo-server`` or ``argo/{app=x}``."""
        if self.name:
            return f"{self.namespace}/{self.name}"
        return f"{self.namespace}/{{{','.join(f'{k}={v}' for k, v in self.labels)}}}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "labels": self.label_map,
            "ports": [{"port": p.port, "protocol": p.protocol.value, "name": p.name} for p in self.ports],
        }


# A pod group is a pod endpoint with a workload name; one type keeps
# evaluate() free of conversions.
PodGroup = PodEndpoint


@dataclass(frozen=True)
class CidrEndpoint:
    """An address range outside the pod model. ``ports`` are ports of interest for matrix/diff."""

    network: IPNetwork
    ports: tuple[ContainerPort, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            object.__setattr__(self, "network", ipaddress.ip_network(str(self.network), strict=False))
        object.__setattr__(self, "ports", tuple(self.ports))

    @property
    def key(self) -> str:
        net = self.network
        return str(net.network_address) if net.num_addresses == 1 else str(net)

    def to_dict(self) -> dict[str, Any]:
        return {"cidr": str(self.network), "ports": [p.label for p in self.ports]}


Endpoint = PodEndpoint | CidrEndpoint


# --------------------------------------------------------------------------- object parsing


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _controlled_by_workload(obj: Mapping[str, Any]) -> bool:
    return any(
        ref.get("controller") and ref.get("kind") in _WORKLOAD_KINDS
        for ref in (_meta(obj).get("ownerReferences") or ())
    )


def _pod_template(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    if kind in _TEMPLATE_KINDS:
        return spec.get("template")
    return None


def _container_ports(pod_spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    ports: list[ContainerPort] = []
    # initContainers count too: restartable (sidecar) init containers serve ports.
    for container in [*(pod_spec.get("containers") or ()), *(pod_spec.get("initContainers") or ())]:
        for p in container.get("ports") or ():
            if p.get("containerPort") is None:
                continue
            ports.append(ContainerPort(int(p["containerPort"]), Protocol.parse(p.get("protocol")), p.get("name")))
    return tuple(dict.fromkeys(ports))


def _pod_group(obj: Mapping[str, Any]) -> PodGroup | None:
    template = _pod_template(obj)
    if template is None:
        return None
    labels = (_meta(template).get("labels") or {})
    return PodEndpoint(
        namespace=str(_meta(obj).get("namespace") or "default"),
        labels=_freeze_labels(labels),
        ports=_container_ports(template.get("spec") or {}),
        name=f"{str(obj.get('kind')).lower()}/{_meta(obj).get('name', '')}",
    )


@dataclass(frozen=True, eq=False)
class _Policy:
    namespace: str
    name: str
    pod_selector: Mapping[str, Any]
    types: frozenset[str]
    ingress: tuple[Mapping[str, Any], ...]
    egress: tuple[Mapping[str, Any], ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> _Policy:
        spec = obj.get("spec") or {}
        egress = tuple(r or {} for r in (spec.get("egress") or ()))
        types = spec.get("policyTypes")
        if not types:
            # API-server defaulting: Ingress always, Egress iff egress rules exist.
            types = ["Ingress"] + (["Egress"] if egress else [])
        return cls(
            namespace=str(_meta(obj).get("namespace") or "default"),
            name=str(_meta(obj).get("name") or ""),
            # podSelector is required; a missing one is treated like {} (all pods)
            # because that is what the defaulted/serialised empty struct means.
            pod_selector=spec.get("podSelector") or {},
            types=frozenset(str(t) for t in types),
            ingress=tuple(r or {} for r in (spec.get("ingress") or ())),
            egress=egress,
        )


class NetworkModel:
    """Policies, namespace labels and pod groups of one state; build once, query many times."""

    def __init__(self, policies: Sequence[_Policy], namespaces: Mapping[str, Mapping[str, str]],
                 groups: Sequence[PodGroup]) -> None:
        self.policies = tuple(policies)
        self._namespaces = {k: dict(v) for k, v in namespaces.items()}
        self.groups = tuple(groups)
        # Only a pod's own namespace's policies can select it: index them by namespace.
        self._by_namespace: dict[str, list[_Policy]] = {}
        for pol in self.policies:
            self._by_namespace.setdefault(pol.namespace, []).append(pol)
        # Matrices and diffs ask about the same pods thousands of times. Pods of one namespace with
        # the same labels (and ports, for named ports) answer alike, so answers are cached per
        # (namespace, labels[, ports]), not per workload. Selectors are keyed by identity: they are
        # the policies' own dicts, which live as long as the model.
        self._selecting_cache: dict[tuple[str, Labels, str], list[_Policy]] = {}
        self._selector_cache: dict[tuple[int, Any], bool] = {}
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._allowed_cache: dict[tuple[Any, Any, int, Protocol], bool] = {}
        self._candidates: tuple[tuple[int, Protocol], ...] | None = None

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> NetworkModel:
        policies: list[_Policy] = []
        namespaces: dict[str, dict[str, str]] = {}
        groups: list[PodGroup] = []
        for obj in flatten_objects(objects):
            kind = obj.get("kind")
            api_version = str(obj.get("apiVersion", "networking.k8s.io/v1"))
            if kind == "NetworkPolicy" and api_version.startswith("networking.k8s.io/"):
                policies.append(_Policy.from_object(obj))
            elif kind == "Namespace":
                name = str(_meta(obj).get("name") or "")
                namespaces[name] = {str(k): str(v) for k, v in (_meta(obj).get("labels") or {}).items()}
            elif kind in _WORKLOAD_KINDS and not _controlled_by_workload(obj):
                group = _pod_group(obj)
                if group is not None:
                    groups.append(group)
        return cls(policies, namespaces, groups)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return dict(self._namespace_labels(namespace))

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        """The cached label map (callers must not change it)."""
        labels = self._ns_labels.get(namespace)
        if labels is None:
            labels = dict(self._namespaces.get(namespace, {}))
            labels[NS_NAME_LABEL] = namespace  # always set by the API server
            self._ns_labels[namespace] = labels
        return labels

    def same_namespaces(self, other: NetworkModel) -> bool:
        """Whether every namespace has the same labels in both models."""
        names = set(self._namespaces) | set(other._namespaces)
        return all(self._namespace_labels(n) == other._namespace_labels(n) for n in names)

    def _pod_matches(self, selector: Mapping[str, Any], pod: PodEndpoint) -> bool:
        key = (id(selector), (pod.namespace, pod.labels))
        hit = self._selector_cache.get(key)
        if hit is None:
            hit = self._selector_cache[key] = selector_matches(selector, pod.label_map)
        return hit

    def _namespace_matches(self, selector: Mapping[str, Any], namespace: str) -> bool:
        key = (id(selector), namespace)
        hit = self._selector_cache.get(key)
        if hit is None:
            hit = self._selector_cache[key] = selector_matches(selector, self._namespace_labels(namespace))
        return hit

    # -- matching

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, ep: Endpoint) -> bool:
        if isinstance(ep, CidrEndpoint):
            block = peer.get("ipBlock")
            return block is not None and _ip_block_contains(block, ep.network)
        if "ipBlock" in peer:
            return False  # pods have no IP in this model (see module docstring)
        pod_sel = peer.get("podSelector")
        ns_sel = peer.get("namespaceSelector")
        if pod_sel is None and ns_sel is None:
            return False
        if ns_sel is None:
            if ep.namespace != policy_ns:
                return False
        elif not self._namespace_matches(ns_sel, ep.namespace):
            return False
        return pod_sel is None or self._pod_matches(pod_sel, ep)

    def _rule_allows(self, rule: Mapping[str, Any], peer_key: str, policy_ns: str, peer: Endpoint,
                     dst: Endpoint, port: int, protocol: Protocol) -> bool:
        peers = rule.get(peer_key) or ()
        if peers and not any(self._peer_matches(p or {}, policy_ns, peer) for p in peers):
            return False
        return _ports_match(rule.get("ports") or (), dst, port, protocol)

    def _selecting(self, pod: PodEndpoint, policy_type: str) -> list[_Policy]:
        key = (pod.namespace, pod.labels, policy_type)
        found = self._selecting_cache.get(key)
        if found is None:
            found = self._selecting_cache[key] = [
                p for p in self._by_namespace.get(pod.namespace, ())
                if policy_type in p.types and self._pod_matches(p.pod_selector, pod)
            ]
        return found

    def _direction(self, pod: Endpoint, policy_type: str, peer: Endpoint, dst: Endpoint,
                   port: int, protocol: Protocol) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """(selecting policies or None if not isolated, policies that allow)."""
        if not isinstance(pod, PodEndpoint):
            return None, ()
        selecting = self._selecting(pod, policy_type)
        if not selecting:
            return None, ()
        rules_key, peer_key = ("ingress", "from") if policy_type == "Ingress" else ("egress", "to")
        if isinstance(peer, CidrEndpoint):
            return tuple(p.key for p in selecting), self._cidr_allowed_by(selecting, rules_key, peer_key, peer,
                                                                          dst, port, protocol)
        allowed_by = tuple(
            p.key for p in selecting
            if any(self._rule_allows(r, peer_key, p.namespace, peer, dst, port, protocol)
                   for r in getattr(p, rules_key))
        )
        return tuple(p.key for p in selecting), allowed_by

    def _cidr_allowed_by(self, selecting: Sequence[_Policy], rules_key: str, peer_key: str, peer: CidrEndpoint,
                         dst: Endpoint, port: int, protocol: Protocol) -> tuple[str, ...]:
        """Policies whose ipBlocks together cover the whole range, or () if some address is left out.

        Policies are additive, so a range allowed half by one ipBlock and half by another (or an
        `except` filled back in by a sibling block) is allowed although no single block contains it.
        """
        remaining: list[IPNetwork] = [peer.network]
        contributors: list[str] = []
        for pol in selecting:
            for rule in getattr(pol, rules_key):
                if not _ports_match(rule.get("ports") or (), dst, port, protocol):
                    continue
                peers = rule.get(peer_key) or ()
                blocks = [_ip_block_networks((p or {}).get("ipBlock") or {}, peer.network.version)
                          for p in peers if (p or {}).get("ipBlock") is not None] if peers else [[peer.network]]
                for nets in blocks:
                    after = _subtract(remaining, nets)
                    if after != remaining and pol.key not in contributors:
                        contributors.append(pol.key)
                    remaining = after
                if not remaining:
                    return tuple(contributors)
        return ()

    def _side_allows(self, pod: Endpoint, policy_type: str, peer: Endpoint, dst: Endpoint,
                     port: int, protocol: Protocol) -> bool:
        """One side of a flow, as :meth:`_direction` decides it, without naming the policies."""
        if not isinstance(pod, PodEndpoint):
            return True
        selecting = self._selecting(pod, policy_type)
        if not selecting:
            return True
        rules_key, peer_key = ("ingress", "from") if policy_type == "Ingress" else ("egress", "to")
        if isinstance(peer, CidrEndpoint):
            return bool(self._cidr_allowed_by(selecting, rules_key, peer_key, peer, dst, port, protocol))
        return any(self._rule_allows(r, peer_key, p.namespace, peer, dst, port, protocol)
                   for p in selecting for r in getattr(p, rules_key))

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: Protocol) -> bool:
        """``evaluate(src, dst, port, protocol).allowed`` for a numeric port, cached per endpoint class."""
        key = (_class_of(src), _class_of(dst), port, protocol)
        hit = self._allowed_cache.get(key)
        if hit is None:
            hit = self._allowed_cache[key] = (self._side_allows(src, "Egress", dst, dst, port, protocol)
                                              and self._side_allows(dst, "Ingress", src, dst, port, protocol))
        return hit

    def egress_rules(self, pod: PodEndpoint) -> list[tuple[str, tuple[Mapping[str, Any], ...]]] | None:
        """The egress rules that govern ``pod`` (by policy), or None if its egress is not isolated.
        Equal in two models (with equal namespaces) means the pod's egress answers alike in both."""
        selecting = self._selecting(pod, "Egress")
        return sorted(((p.key, p.egress) for p in selecting), key=lambda t: t[0]) if selecting else None

    def ingress_peers(self, pod: PodEndpoint, port: int, protocol: Protocol) -> str | frozenset[str]:
        """Who may reach ``pod`` on one port: ``"all"`` (not isolated, or a rule without ``from``),
        else the set of peers of the rules that match the port (canonical JSON; empty = nobody).
        Equal in two models (with equal namespaces) means the same sources are allowed in both."""
        selecting = self._selecting(pod, "Ingress")
        if not selecting:
            return "all"
        peers: set[str] = set()
        for pol in selecting:
            for rule in pol.ingress:
                if not _ports_match(rule.get("ports") or (), pod, port, protocol):
                    continue
                if not rule.get("from"):
                    return "all"
                peers.update(json.dumps(p, sort_keys=True, default=str) for p in rule["from"])
        return frozenset(peers)

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int | str,
                 protocol: str | Protocol | None = None) -> FlowDecision:
        number, proto = _resolve_flow_port(dst, port, protocol)
        eg_pols, eg_by = self._direction(src, "Egress", dst, dst, number, proto)
        in_pols, in_by = self._direction(dst, "Ingress", src, dst, number, proto)
        eg_ok = eg_pols is None or bool(eg_by)
        in_ok = in_pols is None or bool(in_by)
        return FlowDecision(
            allowed=eg_ok and in_ok,
            src=src.key, dst=dst.key, port=number, protocol=proto,
            ingress_policies=in_pols, egress_policies=eg_pols,
            ingress_allowed_by=in_by, egress_allowed_by=eg_by,
            reason=_reason(src, dst, number, proto, eg_pols, eg_by, in_pols, in_by),
        )

    def candidate_ports(self) -> tuple[tuple[int, Protocol], ...]:
        """Representative ports for "any port" checks (see module docstring)."""
        if self._candidates is None:
            self._candidates = self._candidate_ports()
        return self._candidates

    def _candidate_ports(self) -> tuple[tuple[int, Protocol], ...]:
        starts: set[tuple[int, Protocol]] = set()
        covered: set[tuple[int, int]] = set()
        protocols = {Protocol.TCP}
        for pol in self.policies:
            for rule in (*pol.ingress, *pol.egress):
                for entry in rule.get("ports") or ():
                    proto = Protocol.parse(entry.get("protocol"))
                    protocols.add(proto)
                    num = _port_number(entry.get("port"))
                    if num is not None:
                        starts.add((num, proto))
                        covered.add((num, int(entry.get("endPort") or num)))
        # A policy may cover every port (port: 1, endPort: 65535): then no port is left unmentioned.
        free = next((p for p in range(1, 65536) if not any(lo <= p <= hi for lo, hi in covered)), None)
        extra = {(free, proto) for proto in protocols} if free is not None else set()
        return tuple(sorted(starts | extra))


def _class_of(ep: Endpoint) -> Any:
    """What a flow's answer depends on: a pod's namespace, labels and ports (not its workload name)."""
    return (ep.namespace, ep.labels, ep.ports) if isinstance(ep, PodEndpoint) else ep.network


def _port_number(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _ip_block_contains(block: Mapping[str, Any], net: IPNetwork) -> bool:
    try:
        cidr = ipaddress.ip_network(str(block.get("cidr")), strict=False)
    except ValueError:
        return False
    # typeshed types subnet_of per IP version; the version test before it keeps the pair matched.
    if cidr.version != net.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
        return False
    for exc in block.get("except") or ():
        excluded = ipaddress.ip_network(str(exc), strict=False)
        if excluded.version == net.version and net.overlaps(excluded):
            return False
    return True


def _ip_block_networks(block: Mapping[str, Any], version: int) -> list[IPNetwork]:
    """The addresses of one ipBlock (cidr minus its excepts) as disjoint networks of one IP version."""
    try:
        cidr = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        excepts = [ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or ()]
    except ValueError:
        return []
    if cidr.version != version:
        return []
    return _subtract([cidr], [e for e in excepts if e.version == version])


def _subtract(nets: list[IPNetwork], holes: Iterable[IPNetwork]) -> list[IPNetwork]:
    """`nets` minus every network in `holes` (two CIDRs are either nested or disjoint)."""
    for hole in holes:
        out: list[IPNetwork] = []
        for net in nets:
            if net.version != hole.version or not net.overlaps(hole):
                out.append(net)
            elif hole.supernet_of(net):  # type: ignore[arg-type]  # same IP version: checked above
                continue
            else:
                out.extend(net.address_exclude(hole))  # type: ignore[arg-type]  # same IP version: checked above
        nets = out
    return nets


def _ports_match(ports: Sequence[Mapping[str, Any]], dst: Endpoint, port: int, protocol: Protocol) -> bool:
    if not ports:
        return True
    for entry in ports:
        entry = entry or {}
        if Protocol.parse(entry.get("protocol")) is not protocol:
            continue
        value = entry.get("port")
        if value is None:
            return True  # protocol only: every port of it
        num = _port_number(value)
        if num is not None:
            end = entry.get("endPort")
            if (num <= port <= int(end)) if end is not None else port == num:
                return True
        elif isinstance(dst, PodEndpoint) and dst.named_ports.get(str(value)) == (port, protocol):
            return True
    return False


def _resolve_flow_port(dst: Endpoint, port: int | str, protocol: str | Protocol | None) -> tuple[int, Protocol]:
    number = _port_number(port)
    if number is not None:
        return number, Protocol.parse(protocol)
    name = str(port)
    if not isinstance(dst, PodEndpoint) or name not in dst.named_ports:
        raise ValueError(f"named port {name!r} is not declared by destination {dst.key}")
    number, named_proto = dst.named_ports[name]
    if protocol is not None and Protocol.parse(protocol) is not named_proto:
        raise ValueError(f"named port {name!r} of {dst.key} is {named_proto.value}, not {protocol}")
    return number, named_proto


def _reason(src: Endpoint, dst: Endpoint, port: int, proto: Protocol,
            eg_pols: tuple[str, ...] | None, eg_by: tuple[str, ...],
            in_pols: tuple[str, ...] | None, in_by: tuple[str, ...]) -> str:
    flow = f"{src.key} -> {dst.key}:{port}/{proto.value}"
    parts: list[str] = []
    denied = False
    for side, who, pols, by in (("egress", src, eg_pols, eg_by), ("ingress", dst, in_pols, in_by)):
        if isinstance(who, CidrEndpoint):
            continue
        if pols is None:
            parts.append(f"{side} of {who.key} not isolated")
        elif by:
            parts.append(f"{side} allowed by {', '.join(by)}")
        else:
            denied = True
            parts.append(f"{side} of {who.key} isolated by {', '.join(pols)} and no rule allows it")
    return f"{flow} {'denied' if denied else 'allowed'}: " + "; ".join(parts)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class FlowDecision:
    """Outcome of one flow. ``*_policies`` is None when that side is not isolated
    (or is a CIDR endpoint, whose side is not evaluated)."""

    allowed: bool
    src: str
    dst: str
    port: int
    protocol: Protocol
    ingress_policies: tuple[str, ...] | None
    egress_policies: tuple[str, ...] | None
    ingress_allowed_by: tuple[str, ...] = ()
    egress_allowed_by: tuple[str, ...] = ()
    reason: str = ""

    @property
    def ingress_allowed(self) -> bool:
        return self.ingress_policies is None or bool(self.ingress_allowed_by)

    @property
    def egress_allowed(self) -> bool:
        return self.egress_policies is None or bool(self.egress_allowed_by)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed, "src": self.src, "dst": self.dst,
            "port": self.port, "protocol": self.protocol.value,
            "ingressPolicies": None if self.ingress_policies is None else list(self.ingress_policies),
            "egressPolicies": None if self.egress_policies is None else list(self.egress_policies),
            "ingressAllowedBy": list(self.ingress_allowed_by),
            "egressAllowedBy": list(self.egress_allowed_by),
            "reason": self.reason,
        }


def _model(objects: Iterable[Mapping[str, Any]] | NetworkModel) -> NetworkModel:
    return objects if isinstance(objects, NetworkModel) else NetworkModel.from_objects(objects)


def pod_groups(objects: Iterable[Mapping[str, Any]] | NetworkModel) -> list[PodGroup]:
    """One :class:`PodGroup` per top-level workload (or bare pod)."""
    return list(_model(objects).groups)


def evaluate(objects: Iterable[Mapping[str, Any]] | NetworkModel, src: Endpoint, dst: Endpoint,
             port: int | str, protocol: str | Protocol | None = None) -> FlowDecision:
    """Is ``src -> dst:port/protocol`` allowed?

    ``port`` may be a number or a named port of ``dst`` (its protocol is then
    used unless ``protocol`` is given). ``protocol`` defaults to TCP.
    """
    return _model(objects).evaluate(src, dst, port, protocol)


# --------------------------------------------------------------------------- matrix


@dataclass(frozen=True)
class ReachCell:
    src: str
    dst: str
    open: tuple[str, ...]  # port labels reachable ("*" = some port, for port-less destinations)
    closed: tuple[str, ...]

    @property
    def reachable(self) -> bool:
        return bool(self.open)

    @property
    def symbol(self) -> str:
        """Compact cell text: ``all``, ``-`` (none) or the open port labels."""
        if not self.open:
            return "-"
        if not self.closed:
            return "all"
        return ",".join(self.open)


@dataclass(frozen=True)
class ReachMatrix:
    keys: tuple[str, ...]  # pod group keys, row/column order
    cells: tuple[ReachCell, ...]

    def cell(self, src: str, dst: str) -> ReachCell:
        for c in self.cells:
            if c.src == src and c.dst == dst:
                return c
        raise KeyError((src, dst))

    def reachable(self, src: str, dst: str) -> bool:
        return self.cell(src, dst).reachable

    def rows(self) -> list[list[str]]:
        """Header row (``src \\ dst`` + destination keys) then one row per source."""
        by_pair = {(c.src, c.dst): c for c in self.cells}
        out = [["src \\ dst", *self.keys]]
        for s in self.keys:
            out.append([s, *(by_pair[(s, d)].symbol for d in self.keys)])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": list(self.keys),
            "cells": [{"src": c.src, "dst": c.dst, "open": list(c.open), "closed": list(c.closed)} for c in self.cells],
        }


_Probe = tuple[str, Sequence[tuple[int, Protocol]]]  # (label, ports -- any allowed => open)


def _probes(dst: Endpoint, ports: Sequence[int | str] | None,
            candidates: Sequence[tuple[int, Protocol]]) -> list[_Probe]:
    if ports:
        probes: list[_Probe] = []
        for p in ports:
            num, proto = parse_port(str(p)) if isinstance(p, str) else (p, None)
            number, protocol = _resolve_flow_port(dst, num, proto)
            probes.append((f"{number}/{protocol.value}", [(number, protocol)]))
        return probes
    if dst.ports:
        return [(cp.label, [(cp.port, cp.protocol)]) for cp in dst.ports]
    return [(ANY_PORT, candidates)]


def _open(model: NetworkModel, src: Endpoint, dst: Endpoint, probe: _Probe) -> bool:
    return any(model.allowed(src, dst, n, p) for n, p in probe[1])


def matrix(objects: Iterable[Mapping[str, Any]] | NetworkModel, groups: Sequence[PodGroup] | None = None,
           ports: Sequence[int | str] | None = None) -> ReachMatrix:
    """Reachability between every ordered pair of pod groups (including a group to itself).

    Each destination is probed on ``ports`` if given, else on its declared
    container ports, else on representative ports (label ``*``).
    """
    model = _model(objects)
    groups = list(groups) if groups is not None else list(model.groups)
    candidates = model.candidate_ports()
    cells: list[ReachCell] = []
    for s in groups:
        for d in groups:
            opened: list[str] = []
            closed: list[str] = []
            for probe in _probes(d, ports, candidates):
                (opened if _open(model, s, d, probe) else closed).append(probe[0])
            cells.append(ReachCell(s.key, d.key, tuple(opened), tuple(closed)))
    return ReachMatrix(tuple(g.key for g in groups), tuple(cells))


# --------------------------------------------------------------------------- diff


class FlowDirection(str, Enum):
    OPENED = "opened"
    CLOSED = "closed"


@dataclass(frozen=True)
class FlowChange:
    src: str
    dst: str
    port: int | None  # None = "some port" probe of a destination without declared ports
    protocol: Protocol | None
    direction: FlowDirection
    port_name: str | None = None

    @property
    def port_label(self) -> str:
        if self.port is None or self.protocol is None:
            return ANY_PORT
        return f"{self.port}/{self.protocol.value}"

    @property
    def text(self) -> str:
        return f"{self.src} -> {self.dst}:{self.port_label} {self.direction.value}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "src": self.src, "dst": self.dst, "port": self.port,
            "protocol": self.protocol.value if self.protocol else None,
            "portName": self.port_name, "direction": self.direction.value, "text": self.text,
        }


_DiffProbe = tuple[ContainerPort | None, Sequence[tuple[int, Protocol]]]


def _diff_probes(d: Endpoint, candidates: Sequence[tuple[int, Protocol]]) -> list[_DiffProbe]:
    """A destination's declared ports one by one, or (None, candidates) = "some port" if it declares none."""
    return [(cp, [(cp.port, cp.protocol)]) for cp in d.ports] if d.ports else [(None, candidates)]


def _pairs_that_may_change(before: NetworkModel, after: NetworkModel, eps: Sequence[Endpoint],
                           probes: Mapping[str, list[_DiffProbe]]) -> Callable[[Endpoint], list[Endpoint]]:
    """For each source, the destinations (in `eps` order) whose flows from it may differ between the
    two models; every other pair is provably unchanged, so a diff need not evaluate it.

    A flow is allowed iff the source's egress and the destination's ingress allow it, so it can only
    change if one of the two does. A source's egress answers alike for every destination when the
    same egress rules govern it in both models; a destination's ingress on one port answers alike
    for every source when the same peers are allowed on that port (or all are, or none). Namespace
    labels feed namespaceSelectors, so when any namespace's labels differ, every isolated side
    counts as changed. Only where a destination's ingress does change are the sources tried one by
    one, and only those whose answer differs are paired with it.
    """
    same_ns = before.same_namespaces(after)
    pods = [e for e in eps if isinstance(e, PodEndpoint)]
    every = list(eps)
    egress_changed: set[str] = set()
    for s in pods:
        b, a = before.egress_rules(s), after.egress_rules(s)
        if b != a or (b is not None and not same_ns):
            egress_changed.add(s.key)
    by_source: dict[str, set[str]] = {}
    for d in pods:
        ports = []
        for _, probe_ports in probes[d.key]:
            for n, p in probe_ports:
                b_in, a_in = before.ingress_peers(d, n, p), after.ingress_peers(d, n, p)
                if b_in != a_in or (not same_ns and b_in not in ("all", frozenset())):
                    ports.append((n, p))
        if not ports:
            continue
        for src in eps:
            if src.key not in egress_changed and any(
                    before._side_allows(d, "Ingress", src, d, n, p) != after._side_allows(d, "Ingress", src, d, n, p)
                    for n, p in ports):
                by_source.setdefault(src.key, set()).add(d.key)

    def pairs(s: Endpoint) -> list[Endpoint]:
        if s.key in egress_changed:
            return every
        wanted = by_source.get(s.key)
        return [d for d in eps if d.key in wanted] if wanted else []

    return pairs


def diff_reachability(before_objects: Iterable[Mapping[str, Any]] | NetworkModel,
                      after_objects: Iterable[Mapping[str, Any]] | NetworkModel,
                      extra_endpoints: Iterable[Endpoint] = ()) -> list[FlowChange]:
    """Flows opened/closed between two states.

    Endpoints: pod groups of either state (the after-state version wins when a
    workload exists in both) plus ``extra_endpoints`` (e.g. CIDRs such as
    ``CidrEndpoint("10.0.0.0/8", ports=(ContainerPort(5432),))``). CIDR-to-CIDR
    pairs are skipped (no policy can govern them).
    """
    if before_objects is after_objects:
        return []  # one state on both sides (a plan that changes nothing): no flow can change
    before, after = _model(before_objects), _model(after_objects)
    endpoints: dict[str, Endpoint] = {g.key: g for g in before.groups}
    endpoints.update({g.key: g for g in after.groups})
    for ep in extra_endpoints:
        endpoints[ep.key] = ep
    candidates = tuple(sorted(set(before.candidate_ports()) | set(after.candidate_ports())))
    eps = list(endpoints.values())
    probes = {d.key: _diff_probes(d, candidates) for d in eps}
    pairs = _pairs_that_may_change(before, after, eps, probes)
    changes: list[FlowChange] = []
    for s in eps:
        for d in pairs(s):
            if isinstance(s, CidrEndpoint) and isinstance(d, CidrEndpoint):
                continue
            for cp, ports in probes[d.key]:
                was = any(before.allowed(s, d, n, p) for n, p in ports)
                now = any(after.allowed(s, d, n, p) for n, p in ports)
                if was == now:
                    continue
                changes.append(FlowChange(
                    s.key, d.key,
                    cp.port if cp else None, cp.protocol if cp else None,
                    FlowDirection.OPENED if now else FlowDirection.CLOSED,
                    cp.name if cp else None,
                ))
    changes.sort(key=lambda c: (c.direction.value, c.src, c.dst, c.port or 0, c.port_label))
    return changes


# --------------------------------------------------------------------------- CLI parsing


def parse_port(text: str) -> tuple[int | str, Protocol | None]:
    """``9090`` -> (9090, None); ``53/udp`` -> (53, UDP); ``metrics`` -> ("metrics", None).

    The protocol is None when not given, so a named port can supply its own.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty port")
    value, _, proto = text.partition("/")
    protocol = Protocol.parse(proto) if proto else None
    num = _port_number(value)
    if num is not None:
        if not 1 <= num <= 65535:
            raise ValueError(f"port {num} out of range 1-65535")
        return num, protocol
    if not value:
        raise ValueError(f"malformed port {text!r}")
    return value, protocol


def parse_pod_endpoint(spec: str, objects: Iterable[Mapping[str, Any]] | NetworkModel = ()) -> PodEndpoint:
    """Parse ``NS/KEY=VAL[,KEY=VAL]`` (pods with those labels) or ``NS/KIND/NAME`` (a pod group).

    ``objects`` supplies named container ports: a label spec inherits the
    ports of the pod groups in ``NS`` it selects (so ``--port metrics``
    resolves); ``NS/KIND/NAME`` must name an existing group. ``NS`` alone or
    ``NS/`` means every pod of the namespace (no labels).
    """
    model = _model(objects)
    ns, _, rest = spec.strip().partition("/")
    if not ns:
        raise ValueError(f"malformed pod endpoint {spec!r}; want NS/KEY=VAL[,KEY=VAL] or NS/KIND/NAME")
    if rest and "=" not in rest and "/" in rest:
        kind, _, name = rest.partition("/")
        wanted = f"{kind.lower()}/{name}"
        for g in model.groups:
            if g.namespace == ns and g.name == wanted:
                return g
        raise ValueError(f"no workload {wanted} in namespace {ns}")
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"malformed label {item!r} in {spec!r}; want KEY=VAL")
        labels[key.strip()] = value.strip()
    matched = [g for g in model.groups
               if g.namespace == ns and all(g.label_map.get(k) == v for k, v in labels.items())]
    ports = tuple(dict.fromkeys(p for g in matched for p in g.ports))
    # No workload name: the endpoint is the selector, whatever it matches.
    return PodEndpoint(ns, _freeze_labels(labels), ports)


def parse_endpoint(spec: str, objects: Iterable[Mapping[str, Any]] | NetworkModel = ()) -> Endpoint:
    """An IP / CIDR (``10.0.0.0/8``, ``1.2.3.4``, ``::1``) or a pod endpoint (see :func:`parse_pod_endpoint`)."""
    try:
        return CidrEndpoint(ipaddress.ip_network(spec.strip(), strict=False))
    except ValueError:
        return parse_pod_endpoint(spec, objects)
