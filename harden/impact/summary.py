"""The security impact of a plan: who gains or loses what, which flows open or close.

Both states are evaluated in full (effective RBAC permissions, reachability between the
install's pod groups and to the CIDRs its policies name), and only the differences are reported:
a plan that changes nothing about access says so. The reachability matrix of the state after is
shown up to MATRIX_MAX_GROUPS pod groups.
"""

from __future__ import annotations

from typing import Any

from . import netpol, rbac


def _cidrs(objects: list[dict[str, Any]]) -> list[str]:
    """CIDRs that NetworkPolicies name: the external endpoints worth showing flows to."""
    out: set[str] = set()
    for o in objects:
        if o.get("kind") != "NetworkPolicy":
            continue
        for direction, peer_key in (("egress", "to"), ("ingress", "from")):
            for rule in (o.get("spec") or {}).get(direction) or []:
                for peer in rule.get(peer_key) or []:
                    cidr = (peer.get("ipBlock") or {}).get("cidr")
                    if cidr:
                        out.add(cidr)
    return sorted(out)


def _short(keys: list[str]) -> dict[str, str]:
    """Pod group keys as short as they stay unique: `argo/deployment/argo-server` -> `argo-server`."""
    names = [k.rsplit("/", 1)[-1] for k in keys]
    return {k: (n if names.count(n) == 1 else k) for k, n in zip(keys, names, strict=True)}


def _grouped(changes: list[netpol.FlowChange]) -> list[dict[str, Any]]:
    """One line per (source, opened|closed): the flows a component gains or loses, together."""
    groups: dict[tuple[str, str], list[netpol.FlowChange]] = {}
    for c in changes:
        groups.setdefault((c.src, c.direction.value), []).append(c)
    out = []
    for (src, direction), items in sorted(groups.items()):
        targets = ", ".join(f"{c.dst}:{c.port_label}" for c in items)
        verb = "can now reach" if direction == "opened" else "can no longer reach"
        out.append({"direction": direction, "src": src, "flows": [c.to_dict() for c in items],
                    "text": f"{src} {verb} {targets}"})
    return out


# The matrix has a cell per ordered pair of pod groups: past this many groups it is no table anyone
# reads (30 groups are 900 cells), and at 3,000 groups it would be 9 million cells to compute and print.
MATRIX_MAX_GROUPS = 30


def _matrix(after: netpol.NetworkModel) -> dict[str, Any]:
    if len(after.groups) > MATRIX_MAX_GROUPS:
        return {"groups": [], "cells": {},
                "omitted": f"{len(after.groups):,} pod groups (more than {MATRIX_MAX_GROUPS}); ask about one flow "
                           f"with `harden reach`"}
    m = netpol.matrix(after)
    short = _short(list(m.keys))
    cells = {f"{short[c['src']]} -> {short[c['dst']]}": ",".join(c["open"]) or "-" for c in m.to_dict()["cells"]}
    return {"groups": [short[k] for k in m.keys], "cells": cells}


def impact(before: list[dict[str, Any]], after: list[dict[str, Any]], *,
           rbac_indexes: tuple[rbac.RbacIndex, rbac.RbacIndex] | None = None,
           networks: tuple[netpol.NetworkModel, netpol.NetworkModel] | None = None) -> dict[str, Any]:
    """`rbac_indexes` and `networks`: both states already indexed (before, after), if the caller has them."""
    rbac_before, rbac_after = rbac_indexes or (rbac.RbacIndex.from_objects(before), rbac.RbacIndex.from_objects(after))
    rbac_changes = rbac.diff_permissions(rbac_before, rbac_after)
    extra = [netpol.parse_endpoint(c) for c in _cidrs(before + after)]
    before_net, after_net = networks or (netpol.NetworkModel.from_objects(before),
                                         netpol.NetworkModel.from_objects(after))
    net_changes = netpol.diff_reachability(before_net, after_net, extra_endpoints=extra)
    return {
        "rbac": [c.to_dict() | {"text": c.text} for c in rbac_changes],
        "network": _grouped(net_changes),
        "matrix": _matrix(after_net),
    }
