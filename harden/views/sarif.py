"""SARIF 2.1.0 for code-scanning bots: each change, failed check and widening is a result that
points at the profile line that caused it."""

from __future__ import annotations

import json

from .. import __version__
from ..impact.netpol import FlowDirection
from ..impact.rbac import ChangeDirection
from ..model import Plan
from . import Output, View

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(plan: Plan, profile_files: dict[str, str]) -> dict:
    results = []
    rules: dict[str, dict] = {}

    def rule(rid: str, text: str) -> None:
        rules.setdefault(rid, {"id": rid, "shortDescription": {"text": text}})

    def location(profile: str, line: int | None = None, file: str | None = None) -> list[dict]:
        file = file or profile_files.get(profile)
        if not file:
            return []
        region = {"startLine": line} if line else {"startLine": 1}
        return [{"physicalLocation": {"artifactLocation": {"uri": file}, "region": region}}]

    for c in plan.actionable:
        rid = f"harden/{c.action.name.lower()}"
        rule(rid, f"harden would {c.action.name.lower()} an object")
        results.append({"ruleId": rid, "level": "note",
                        "message": {"text": f"{c.key.display()} will be {c.action.verb}: {c.reason}"
                                            + "".join(f"; {f.path}" for f in c.fields[:10])},
                        "locations": location(c.profiles[0], c.source.line, c.source.file)})
    for f in plan.findings:
        if f.passed:
            continue
        rid = f"harden/{f.kind}/{f.id}"
        rule(rid, f"{f.kind} {f.id}")
        results.append({"ruleId": rid, "level": f.severity.value,  # SARIF levels: error, warning, note
                        "message": {"text": f.message}, "locations": location(f.profile, f.line)})
    for change in (plan.impact or {}).get("rbac") or []:
        if change["direction"] == ChangeDirection.GAINS:
            rule("harden/rbac-widened", "a subject gains permissions")
            results.append({"ruleId": "harden/rbac-widened", "level": "warning", "message": {"text": change["text"]}})
    for change in (plan.impact or {}).get("network") or []:
        if change["direction"] == FlowDirection.OPENED:
            rule("harden/flow-opened", "a network flow is opened")
            results.append({"ruleId": "harden/flow-opened", "level": "warning", "message": {"text": change["text"]}})
    return {"$schema": SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "harden", "version": __version__,
                                          "informationUri": "https://github.com/harden/harden",
                                          "rules": list(rules.values())}},
                      "results": results}]}


class SarifView(View):
    """Plans only: code scanning reports findings in files, not the outcome of an apply."""

    output = Output.SARIF

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        self.out.print_json(json.dumps(render(plan, profile_files)))
