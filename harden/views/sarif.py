"""SARIF 2.1.0 that code scanning can place: each change, failed check, broken need and widening is a
result at the profile (or stack) line that caused it.

- Locations are repository-relative with `uriBaseId: %SRCROOT%` (SARIF 2.1.0 §3.4.4; GitHub
  resolves %SRCROOT% to the checkout), never the absolute path of the machine that ran harden.
- Rules are per profile, their help naming the recommendation the profile implements
  (its `metadata.recommendation`), so an alert says why the profile exists.
- `partialFingerprints` are hashes of what a result is about (rule, object address, finding id),
  never of its line or message, so a result keeps its identity when lines move.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import __version__
from ..impact.netpol import FlowDirection
from ..impact.rbac import ChangeDirection
from ..model import Change, Plan, SourceRef
from . import Output, View, write_document

if TYPE_CHECKING:
    from ..review import Review

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT = "harden/v1"
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


class _Run:
    """Accumulates the rules and results of one run."""

    def __init__(self, profile_files: dict[str, str], root: str) -> None:
        self.profile_files = profile_files
        self.root = root
        self.rules: dict[str, dict] = {}
        self.results: list[dict] = []

    # -- rules ---------------------------------------------------------------------------------

    def rule(self, rid: str, short: str, profile: str | None = None, extra: str = "") -> None:
        if rid in self.rules:
            return
        help_text = extra
        recs = self.recommendation(profile) if profile else []
        if recs:
            help_text += ("" if not help_text else " ") + f"Profile {profile} implements: " + "; ".join(recs) + "."
        elif profile:
            help_text += ("" if not help_text else " ") + f"Set by profile {profile}."
        help_text = help_text or short
        self.rules[rid] = {"id": rid, "name": rid.replace("/", "_"), "shortDescription": {"text": short},
                           "fullDescription": {"text": help_text}, "help": {"text": help_text, "markdown": help_text}}

    def recommendation(self, profile: str) -> list[str]:
        file = self.profile_files.get(profile)
        if not file or not Path(file).is_file():
            return []
        try:
            data = yaml.safe_load(Path(file).read_text()) or {}
        except (OSError, yaml.YAMLError):
            return []
        recs = ((data.get("metadata") or {}) if isinstance(data, dict) else {}).get("recommendation") or []
        return [f"{r.get('section')} ({r.get('document')})" for r in recs if isinstance(r, dict)]

    # -- results -------------------------------------------------------------------------------

    def location(self, source: SourceRef) -> list[dict]:
        if not source.file:
            return []
        physical: dict[str, Any] = {"artifactLocation": self.artifact(source.file)}
        if source.line:
            physical["region"] = {"startLine": source.line}
        return [{"physicalLocation": physical}]

    def artifact(self, file: str) -> dict:
        path = Path(file)
        if not path.is_absolute():
            return {"uri": path.as_posix(), "uriBaseId": SRCROOT}
        try:
            return {"uri": path.resolve().relative_to(Path(self.root).resolve()).as_posix(), "uriBaseId": SRCROOT}
        except ValueError:
            return {"uri": path.resolve().as_uri()}  # outside the repository: a built-in of an installed harden

    def add(self, rid: str, level: str, text: str, source: SourceRef, identity: str) -> None:
        digest = hashlib.sha256(f"{rid}\0{identity}".encode()).hexdigest()
        self.results.append({"ruleId": rid, "level": level, "message": {"text": text},
                             "locations": self.location(source), "partialFingerprints": {FINGERPRINT: digest}})

    def document(self) -> dict:
        return {"$schema": SCHEMA, "version": "2.1.0",
                "runs": [{"tool": {"driver": {"name": "harden", "version": __version__,
                                              "informationUri": "https://github.com/harden/harden",
                                              "rules": list(self.rules.values())}},
                          "results": self.results}]}


def _source_of(file: str | None, line: int | None, profile: str, files: dict[str, str]) -> SourceRef:
    return SourceRef(file or files.get(profile), line)


def _rbac_change(plan: Plan, subject: str) -> Change | None:
    """The change that most likely grants a subject its new permissions: a binding naming it, else
    any RBAC change."""
    rbac = [c for c in plan.actionable if c.key.kind in RBAC_KINDS]
    name = subject.split(":")[-1]
    for c in rbac:
        if any(s.get("name") == name for s in (c.body or {}).get("subjects") or []):
            return c
    return rbac[0] if rbac else None


def _policy_change(plan: Plan, src: str) -> Change | None:
    policies = [c for c in plan.actionable if c.key.kind == "NetworkPolicy"]
    namespace = src.split("/")[0]
    return next((c for c in policies if c.key.namespace == namespace), policies[0] if policies else None)


def _plan_results(run: _Run, plan: Plan) -> None:
    files = run.profile_files
    for c in plan.actionable:
        profile = c.profiles[0]
        rid = f"harden/{profile}"
        run.rule(rid, f"objects and fields profile {profile} manages", profile)
        fields = "".join(f"; {f.path}" for f in c.fields[:10])
        run.add(rid, "note", f"{c.key.display()} will be {c.action.verb}: {c.reason}{fields}",
                _source_of(c.source.file, c.source.line, profile, files),
                f"{c.action.name}\0{c.key}\0{c.kind.value}")
    for f in plan.findings:
        if f.passed:
            continue
        if f.kind == "need":
            rid = f"harden/need/{f.id}"
            run.rule(rid, f"component need {f.id}", extra="A component of the install needs this to keep working.")
            # A need belongs to the install, not a profile: it is placed at the changes that break it.
            breaker = next((c for c in plan.actionable if str(c.key) in f.message), None)
            source = breaker.source if breaker else SourceRef()
        else:
            rid = f"harden/{f.kind}/{f.id}"
            run.rule(rid, f"{f.kind} {f.id} of profile {f.profile}", f.profile)
            source = _source_of(f.source, f.line, f.profile, files)
        run.add(rid, f.severity.value, f.message, source, f"{f.profile}\0{f.id}")  # SARIF levels: error, warning, note
    for change in (plan.impact or {}).get("rbac") or []:
        if change["direction"] == ChangeDirection.GAINS:
            by = _rbac_change(plan, change["subject"])
            run.rule("harden/rbac-widened", "a subject gains permissions")
            run.add("harden/rbac-widened", "warning", change["text"], by.source if by else SourceRef(), change["text"])
    for change in (plan.impact or {}).get("network") or []:
        if change["direction"] == FlowDirection.OPENED:
            by = _policy_change(plan, change["src"])
            run.rule("harden/flow-opened", "a network flow is opened")
            run.add("harden/flow-opened", "warning", change["text"], by.source if by else SourceRef(), change["text"])


def render(plan: Plan, profile_files: dict[str, str], root: str | None = None) -> dict:
    run = _Run(profile_files, root or os.getcwd())
    _plan_results(run, plan)
    return run.document()


def render_review(review: Review, root: str | None = None) -> dict:
    """The review's regressions (needs and checks broken, permissions gained, flows opened) and the
    objects the head plans differently, each at the head's profile line."""
    from ..review import Trend as Status

    run = _Run({}, root or os.getcwd())
    # What no profile line explains (a need no change is named as breaking) is placed at the stack.
    stack = review.head.selection.get("stackFile")
    fallback = SourceRef(stack, 1) if isinstance(stack, str) else SourceRef()
    for s in review.statuses:
        if s.severity is not Status.WORSE:
            continue
        rid = f"harden/{s.kind}/{s.id}"
        run.rule(rid, f"{s.kind} {s.id}")
        run.add(rid, "error", f"{s.id}: {s.base} -> {s.head}: {s.message}",
                s.source if s.source.file else fallback, s.id)
    changes = {str(c.key): c for c in review.head.actionable}
    for p in review.permissions:
        if p.direction is ChangeDirection.GAINS:
            by = _rbac_change(review.head, str(p.subject))
            run.rule("harden/rbac-widened", "a subject gains permissions")
            run.add("harden/rbac-widened", "warning", p.text, by.source if by else fallback, p.text)
    for f in review.flows:
        if f.direction is FlowDirection.OPENED:
            by = _policy_change(review.head, f.src)
            run.rule("harden/flow-opened", "a network flow is opened")
            run.add("harden/flow-opened", "warning", f.text, by.source if by else fallback, f.text)
    for o in review.objects:
        c = changes.get(str(o.key))
        rid = "harden/object-differs"
        run.rule(rid, "the head revision plans an object differently from the base")
        fields = ", ".join(f.path for f in o.fields[:10]) or "the whole object"
        run.add(rid, "note", f"{o.key.display()}: base plan {o.base_action}, head plan {o.head_action}: {fields}",
                c.source if c else (o.source if o.source.file else fallback), str(o.key))
    return run.document()


class SarifView(View):
    """Plans and reviews: code scanning reports findings in files, not the outcome of an apply."""

    output = Output.SARIF

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        write_document(self.out, json.dumps(render(plan, profile_files), indent=2, ensure_ascii=False))

    def review(self, review: Review) -> None:
        write_document(self.out, json.dumps(render_review(review), indent=2, ensure_ascii=False))

