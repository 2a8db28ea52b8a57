"""Expectations: flows and permissions a profile declares must (or must not) hold after apply.

Evaluated on the predicted state (live objects with the plan applied), before anything is written,
with the same evaluators `harden reach` and `harden can-i` use. A broken expectation fails the plan.
"""

from __future__ import annotations

from typing import Any

from ..fieldpath import get_at
from . import netpol, rbac


def evaluate(objects: list[dict[str, Any]], expectation: dict[str, Any]) -> tuple[bool, str]:
    if "flow" in expectation:
        f = expectation["flow"]
        try:
            src = netpol.parse_endpoint(str(f["from"]), objects)
            dst = netpol.parse_endpoint(str(f["to"]), objects)
            port, proto = netpol.parse_port(str(f["port"]))
            decision = netpol.evaluate(objects, src, dst, port, proto)
        except (ValueError, KeyError) as exc:
            return False, f"cannot evaluate flow {f['from']} -> {f['to']}:{f['port']}: {exc}"
        want = bool(f["allowed"])
        verdict = "allowed" if decision.allowed else "denied"
        ok = decision.allowed == want
        return ok, (f"{f['from']} -> {f['to']}:{f['port']} is {verdict}"
                    + ("" if ok else f", expected {'allowed' if want else 'denied'}") + f" ({decision.reason})")
    if "value" in expectation:
        return _value(objects, expectation["value"])
    p = expectation["permission"]
    grant = rbac.check(objects, p["subject"], p["verb"], p["resource"], p.get("namespace"))
    want = bool(p["allowed"])
    where = f" in {p['namespace']}" if p.get("namespace") else " cluster-wide"
    ok = grant.allowed == want
    verdict = "may" if grant.allowed else "may not"
    return ok, (f"{p['subject']} {verdict} {p['verb']} {p['resource']}{where}"
                + ("" if ok else ", expected the opposite"))


def _value(objects: list[dict[str, Any]], v: dict[str, Any]) -> tuple[bool, str]:
    """A field of one object after apply equals the expected value (YAML-in-ConfigMap compared as text)."""
    where = f"{v['kind']} {v.get('namespace', '') + '/' if v.get('namespace') else ''}{v['name']}"
    obj = next((o for o in objects if o.get("kind") == v["kind"] and o.get("metadata", {}).get("name") == v["name"]
                and (o.get("metadata", {}).get("namespace") or "") == v.get("namespace", "")), None)
    if obj is None:
        return False, f"{where} does not exist after apply"
    node = get_at(obj, v["path"])
    ok = node == v["equals"]
    return ok, f"{where} {v['path']} is {node!r} after apply" + ("" if ok else f", expected {v['equals']!r}")
