"""Review: what a change to the profiles does, as the difference between the plans of two revisions.

Both revisions are planned against one target (one snapshot or cluster, one state), so whatever
differs between the plans comes from the profiles and stacks alone. The comparison is semantic, as
network-config-analyzer's `semantic_diff` compares two policy sets by the connections they allow
rather than by their text: the predicted states after each plan are compared by effective RBAC
permissions per subject, by reachability, by the status of every component need and profile
check or expectation, and only then object by object.

This module is pure: two plans and the objects each would leave in, to a `Review`. Reading the
revisions out of git happens at the edge (`harden.commands.review_cmd`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from .diff import UNORDERED, _expand
from .impact import netpol, rbac
from .impact.summary import _cidrs
from .mergekeys import BUILTIN
from .model import Change, FieldChange, Finding, Obj, Plan, ResourceKey, SourceRef

REVIEW_FORMAT = 1
ABSENT = "absent"  # the status of a need or finding the revision does not evaluate at all


class Trend(str, enum.Enum):
    """How a reviewer should read a status change: a regression, an improvement, or neither."""

    WORSE = "worse"
    BETTER = "better"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class StatusChange:
    """A component need, check or expectation whose status differs between the revisions."""

    kind: str            # need | check | expectation
    id: str              # install/component/need, or profile/id
    base: str            # kept | broken | unmet | unknown | pass | fail | absent
    head: str
    message: str         # the head's message (the base's when the head lacks it)
    source: SourceRef = SourceRef()

    @property
    def severity(self) -> Trend:
        bad = {"broken", "fail"}
        if self.head in bad and self.base not in bad:
            return Trend.WORSE
        if self.base in bad and self.head not in bad:
            return Trend.BETTER
        return Trend.NEUTRAL

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "base": self.base, "head": self.head,
                "severity": self.severity.value, "message": self.message, "source": self.source.to_dict()}


@dataclass(frozen=True)
class ObjectDiff:
    """An object the two revisions would leave differently: its fields, base value -> head value."""

    key: ResourceKey
    base_action: str     # what each revision's plan does to it: create, update, ..., or none
    head_action: str
    profiles: tuple[str, ...]
    fields: tuple[FieldChange, ...]   # empty when only one revision leaves the object
    source: SourceRef = SourceRef()

    def to_dict(self) -> dict[str, Any]:
        return {"address": str(self.key), "key": self.key.to_dict(), "baseAction": self.base_action,
                "headAction": self.head_action, "profiles": list(self.profiles),
                "fields": [f.to_dict() for f in self.fields], "source": self.source.to_dict()}


@dataclass(frozen=True)
class Review:
    base_ref: str
    head_ref: str
    stack: str
    permissions: tuple[rbac.PermissionChange, ...]
    flows: tuple[netpol.FlowChange, ...]
    statuses: tuple[StatusChange, ...]
    objects: tuple[ObjectDiff, ...]
    head: Plan

    @property
    def changed(self) -> bool:
        return bool(self.permissions or self.flows or self.statuses or self.objects)

    @property
    def breaks(self) -> tuple[StatusChange, ...]:
        """Needs and findings the head breaks that held in the base."""
        return tuple(s for s in self.statuses if s.severity is Trend.WORSE)

    def counts(self) -> dict[str, int]:
        gains = sum(1 for p in self.permissions if p.direction is rbac.ChangeDirection.GAINS)
        opened = sum(1 for f in self.flows if f.direction is netpol.FlowDirection.OPENED)
        return {"permissionsGained": gains, "permissionsLost": len(self.permissions) - gains,
                "flowsOpened": opened, "flowsClosed": len(self.flows) - opened,
                "statusesWorse": len(self.breaks),
                "statusesBetter": sum(1 for s in self.statuses if s.severity is Trend.BETTER),
                "objects": len(self.objects)}

    def to_dict(self) -> dict[str, Any]:
        return {"formatVersion": REVIEW_FORMAT, "base": self.base_ref, "head": self.head_ref, "stack": self.stack,
                "changed": self.changed, "summary": self.counts(),
                "permissions": [p.to_dict() for p in self.permissions],
                "flows": [f.to_dict() for f in self.flows],
                "statuses": [s.to_dict() for s in self.statuses],
                "objects": [o.to_dict() for o in self.objects]}


def compare(base: Plan, base_after: list[Obj], head: Plan, head_after: list[Obj], *,
            base_ref: str = "base", head_ref: str = "head") -> Review:
    """The difference in posture between two plans of the same target."""
    permissions = rbac.diff_permissions(base_after, head_after)
    extra = [netpol.parse_endpoint(c) for c in _cidrs(base_after + head_after)]
    flows = netpol.diff_reachability(base_after, head_after, extra_endpoints=extra)
    return Review(base_ref, head_ref, head.stack or base.stack, tuple(permissions), tuple(flows),
                  tuple(_need_changes(base, head) + _finding_changes(base, head)),
                  tuple(_object_diffs(base, base_after, head, head_after)), head)


def _need_changes(base: Plan, head: Plan) -> list[StatusChange]:
    def statuses(plan: Plan) -> dict[str, dict]:
        return {f"{n['install']}/{n['component']}/{n['need']}": n for n in (plan.impact or {}).get("needs") or []}

    b, h = statuses(base), statuses(head)
    sources = {str(c.key): c.source for c in head.actionable}
    out = []
    for nid in sorted(set(b) | set(h)):
        bs, hs = (b[nid]["status"] if nid in b else ABSENT), (h[nid]["status"] if nid in h else ABSENT)
        if bs != hs:
            n = h.get(nid) or b[nid]
            # A need is the install's, not a profile's: it is placed at the first change breaking it.
            at = next((sources[a] for a in n.get("brokenBy") or [] if a in sources), SourceRef())
            out.append(StatusChange("need", nid, bs, hs, f"{n['message']} [{n['source']}]", at))
    return out


def _finding_changes(base: Plan, head: Plan) -> list[StatusChange]:
    # Component needs are compared above, with their own statuses; these are the profiles' own.
    def statuses(plan: Plan) -> dict[tuple[str, str], Finding]:
        return {(f.kind, f"{f.profile}/{f.id}"): f for f in plan.findings if f.kind != "need"}

    b, h = statuses(base), statuses(head)
    out = []
    for kind, fid in sorted(set(b) | set(h)):
        bf, hf = b.get((kind, fid)), h.get((kind, fid))
        bs = ABSENT if bf is None else ("pass" if bf.passed else "fail")
        hs = ABSENT if hf is None else ("pass" if hf.passed else "fail")
        if bs != hs:
            f = hf or bf
            assert f is not None
            out.append(StatusChange(kind, fid, bs, hs, f.message, SourceRef(f.source, f.line)))
    return out


def _object_diffs(base: Plan, base_after: list[Obj], head: Plan, head_after: list[Obj]) -> list[ObjectDiff]:
    b = {ResourceKey.of(o): o for o in base_after}
    h = {ResourceKey.of(o): o for o in head_after}
    bc: dict[ResourceKey, Change] = {c.key: c for c in base.actionable}
    hc: dict[ResourceKey, Change] = {c.key: c for c in head.actionable}
    out = []
    for key in sorted(set(b) | set(h)):
        if b.get(key) == h.get(key):
            continue
        if key in b and key in h:
            fields = _fields([], _comparable(b[key]), _comparable(h[key]))
            if not fields:
                continue
        else:
            fields = []  # only one revision has it: its plan says what it is
        change = hc.get(key) or bc.get(key)
        out.append(ObjectDiff(key, _action(bc.get(key)), _action(hc.get(key)),
                              change.profiles if change else (), tuple(sorted(fields, key=lambda f: f.path)),
                              change.source if change else SourceRef()))
    return out


def _fields(path: list, before: Any, after: Any) -> list[FieldChange]:
    # Lists of the same length are compared entry by entry, so a verb added to the second rule of a
    # Role reads as `rules[1].verbs[3]`, not as the whole rules list rewritten.
    if isinstance(before, dict) and isinstance(after, dict):
        return [f for k in list(before) + [k for k in after if k not in before] if before.get(k) != after.get(k)
                for f in _fields(path + [k], before.get(k), after.get(k))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and \
            not (path and path[-1] in UNORDERED):
        return [f for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y
                for f in _fields(path + [i], x, y)]
    return _expand(path, before, after, BUILTIN)


def _comparable(obj: Obj) -> Obj:
    # The annotation holding patched fields' originals differs whenever the patched fields do;
    # the fields themselves say it better.
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("harden.dev/")}
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    for k in ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"):
        meta.pop(k, None)
    return {**obj, "metadata": meta}


def _action(change: Change | None) -> str:
    return "none" if change is None else change.action.name.lower()


def relocate(plan: Plan, root: str, prefix: str = "") -> Plan:
    """The plan with file paths under `root` (a revision's temporary copy) written relative to the
    repository, so a review names files as the pull request does."""
    def rel(path: str | None) -> str | None:
        if path and (path == root or path.startswith(root.rstrip("/") + "/")):
            return prefix + path[len(root.rstrip("/")) + 1:]
        return path

    changes = tuple(replace(c, source=SourceRef(rel(c.source.file), c.source.line)) for c in plan.changes)
    findings = tuple(replace(f, source=rel(f.source)) for f in plan.findings)
    selection = dict(plan.selection)
    if isinstance(selection.get("stackFile"), str):
        selection["stackFile"] = rel(selection["stackFile"])
    return replace(plan, changes=changes, findings=findings, selection=selection)

