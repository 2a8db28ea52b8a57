"""The machine view: one JSON document on stdout per command, for pipelines; diagnostics as JSON
on stderr, so stdout never holds a half document."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import Diagnostic
from ..model import Change, Plan
from . import Output, View, write_document

if TYPE_CHECKING:
    from ..apply import Result
    from ..impact import netpol, rbac
    from ..review import Review


def _change(c: Change) -> dict[str, Any]:
    # What was written, not how: the bodies are in the plan, and a pipeline branches on these.
    return {"address": str(c.key), "key": c.key.to_dict(), "action": c.action.name.lower(), "kind": c.kind.value,
            "profiles": list(c.profiles)}


class JsonView(View):
    output = Output.JSON

    def _emit(self, data: Any) -> None:
        # As rich's print_json formats it: indent 2, non-ASCII characters kept.
        write_document(self.out, json.dumps(data, indent=2, ensure_ascii=False))

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        self._emit(plan.to_dict())

    def apply_result(self, plan: Plan, result: Result) -> None:
        done = replace(plan, changes=tuple(result.done))
        self._emit({
            "stack": plan.stack,
            "complete": not result.failed,
            "summary": done.counts(),
            "applied": [_change(c) for c in result.done],
            "failed": [_change(c) | {"error": exc.diagnostic.to_dict()} for c, exc in result.failed],
            "state": {"lineage": result.state.lineage, "serial": result.state.serial} if result.state else None,
        })

    def review(self, review: Review) -> None:
        self._emit(review.to_dict())

    def profiles(self, rows: list[dict[str, Any]]) -> None:
        self._emit(rows)

    def reach(self, decision: netpol.FlowDecision) -> None:
        self._emit(decision.to_dict())

    def can_i(self, decision: rbac.Decision) -> None:
        self._emit(decision.to_dict())

    def diagnostics(self, diagnostics: list[Diagnostic]) -> None:
        write_document(self.err, json.dumps({"diagnostics": [d.to_dict() for d in diagnostics]}, indent=2,
                                            ensure_ascii=False))
