"""Expectations: flows and permissions a profile declares must (or must not) hold after apply.

Evaluated on the predicted state (live objects with the plan applied), before anything is written,
with the same evaluators `harden reach` and `harden can-i` use. A broken expectation fails the plan.
"""

from __future__ import annotations

from typing import Any

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
    p = expectation["permission"]
    decision = rbac.check(objects, p["subject"], p["verb"], p["resource"], p.get("namespace"))
    want = bool(p["allowed"])
    where = f" in {p['namespace']}" if p.get("namespace") else " cluster-wide"
    ok = decision.allowed == want
    verdict = "may" if decision.allowed else "may not"
    return ok, (f"{p['subject']} {verdict} {p['verb']} {p['resource']}{where}"
                + ("" if ok else ", expected the opposite"))
