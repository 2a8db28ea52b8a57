"""plan: pair desired objects and patches with live objects and state into a `Plan`. Pure.

- desired object, no live object      -> create (+)
- desired object differs from live    -> update in place (~)
- patch intent differs from live      -> update in place (~) of the fields harden sets
- state records an object no selected profile wants any more -> delete (-)
- state records a patch no selected profile wants any more   -> release (<): the fields go back
  to the value and owner they had before harden set them
- an object labelled as this stack's that neither state nor a profile knows -> delete (-)
  (state was lost half-way; the label lets a re-run converge)

Several patches on one target (two profiles editing argo-server's args) are combined into one
change, each materialized on the result of the previous, so they cannot fight over a field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

import yaml

from . import __version__
from .diff import conflicts, diff_fields, dropped_fields, merge_partial, restore_shape, select_paths
from .errors import Diagnostic, Diagnostics
from .model import (LABEL_MANAGED_BY, LABEL_STACK, MANAGER, Action, Change, ChangeKind, FieldChange, Live, Obj, Plan,
                    Record, ResourceKey, State, field_manager)
from .render import Candidate, PatchIntent, Rendered, Target, identity, materialize


def digest(body: Obj | None) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def kinds_needed(rendered: Iterable[Rendered], state: State) -> set[tuple[str, str]]:
    kinds: set[tuple[str, str]] = set()
    for r in rendered:
        kinds |= {(o.body["apiVersion"], o.body["kind"]) for o in r.objects}
        kinds |= {(c.api_version, c.kind) for t in r.targets for c in t.candidates}
    kinds |= {(rec.api_version, ResourceKey.parse(rec.key).kind) for rec in state.records.values()}
    return kinds


@dataclass(frozen=True)
class Resolved:
    target: Target
    candidate: Candidate | None
    obj: Obj | None


def resolve_target(target: Target, live: Live) -> Resolved:
    """The first candidate that exists; label candidates pick the first match by name."""
    for cand in target.candidates:
        if cand.name:
            obj = live.get(ResourceKey(_group(cand.api_version), cand.kind, cand.namespace, cand.name))
            if obj is not None:
                return Resolved(target, cand, obj)
        else:
            matches = sorted((o for o in live.of_kind(cand.kind, cand.namespace or None)
                              if all(((o.get("metadata") or {}).get("labels") or {}).get(k) == v
                                     for k, v in (cand.labels or {}).items())),
                             key=lambda o: o["metadata"]["name"])
            if matches:
                return Resolved(target, cand, matches[0])
    return Resolved(target, None, None)


def detect(selected, rendered: Rendered, live: Live) -> tuple[dict[str, Any], list[dict]]:
    """Values of `detect:` parameters the user did not set, read from the targets found in `live`.

    Returns the new values (only those that changed) and a report of what was detected from where,
    which the plan shows so nobody wonders where a selector came from.
    """
    targets = {t.id: t for t in rendered.targets}
    changed: dict[str, Any] = {}
    report: list[dict] = []
    for name, decl in selected.profile.parameters.items():
        how = decl.get("detect")
        if not how or name in selected.given:
            continue
        res = resolve_target(targets[how["target"]], live)
        if res.obj is None:
            continue
        if how["from"] == "podSelector":
            value = (((res.obj.get("spec") or {}).get("selector") or {}).get("matchLabels")) or None
        else:
            value = (res.obj.get("metadata") or {}).get("namespace") or None
        if value is None:
            continue
        report.append({"profile": rendered.profile, "parameter": name, "value": value,
                       "from": res.candidate.describe() if res.candidate else ""})
        if value != selected.values.get(name):
            changed[name] = value
    return changed, report


def make_plan(rendered: list[Rendered], live: Live, state: State, stack: str, *,
              destroy_profiles: set[str] | None = None, selection: dict | None = None,
              profile_files: dict[str, str] | None = None, created_at: str = "") -> Plan:
    """Build the plan. `destroy_profiles` (destroy mode) plans removal of what those profiles own."""
    problems: list[Diagnostic] = []
    changes: list[Change] = []
    target_report: list[dict] = []
    wanted: set[str] = set()
    profile_files = profile_files or {}
    own = field_manager(stack)

    if destroy_profiles is None:
        for r in rendered:
            for d in r.objects:
                wanted.add(str(d.key))
                other = _other_stack(live.get(d.key), stack)
                if other:
                    problems.append(Diagnostic(
                        f"profile {d.profile!r}: {d.key.display()} belongs to stack {other!r}; two stacks cannot own one object",
                        file=profile_files.get(d.profile), line=d.line,
                        hint=f"select the profile in one stack only, or destroy it in stack {other!r} first"))
                    continue
                changes.append(_object_change(d.key, d.body, d.profile, live.get(d.key), own))

        # Resolve targets, then group patch intents by the object they land on.
        resolved: dict[tuple[str, str], Resolved] = {}
        for r in rendered:
            for t in r.targets:
                res = resolve_target(t, live)
                resolved[(r.profile, t.id)] = res
                target_report.append({
                    "profile": r.profile, "target": t.id, "description": t.description,
                    "chosen": res.candidate.describe() if res.candidate else None,
                    "key": str(ResourceKey.of(res.obj)) if res.obj else None,
                    "candidates": [c.describe() for c in t.candidates], "optional": t.optional})
                if res.obj is None and not t.optional:
                    problems.append(Diagnostic(
                        f"profile {r.profile!r}: target {t.id!r} ({t.description or 'patched object'}) is not in the "
                        f"{live.source.get('kind', 'cluster')}; looked for: " + "; ".join(c.describe() for c in t.candidates),
                        file=profile_files.get(r.profile), line=t.line, field=f"targets.{t.id}",
                        hint="install the target first, point --set at the right namespace/release, or deselect the profile"))
        grouped: dict[ResourceKey, list[tuple[PatchIntent, Obj]]] = {}
        for r in rendered:
            for intent in r.patches:
                res = resolved[(r.profile, intent.target)]
                if res.obj is not None:
                    grouped.setdefault(ResourceKey.of(res.obj), []).append((intent, res.obj))
        for key, intents in sorted(grouped.items()):
            try:
                changes.append(_patch_change(key, intents, state.records.get(str(key)), own))
            except yaml.YAMLError as exc:
                intent = next(i for i, _ in intents if i.op == "configMapYaml")
                problems.append(Diagnostic(f"{key.display()} key {intent.spec['key']!r} does not hold valid YAML: {exc}",
                                           file=profile_files.get(intent.profile), line=intent.line,
                                           field=f"patches.{intent.target}",
                                           hint="fix the ConfigMap by hand (harden will not overwrite what it cannot read)"))
            except KeyError as exc:
                intent = intents[0][0]
                problems.append(Diagnostic(f"profile {intent.profile!r}: {key.display()} has no container {exc}",
                                           file=profile_files.get(intent.profile), line=intent.line,
                                           field=f"patches.{intent.target}", hint="set the container parameter to the right name"))
            wanted.add(str(key))
    if problems:
        raise Diagnostics(problems)

    # Whatever state or labels say harden manages, and nothing selected wants, goes.
    for skey, rec in sorted(state.records.items()):
        # A patch combined from several profiles is theirs jointly: destroying any of them releases it.
        if skey in wanted or (destroy_profiles and not destroy_profiles & set(rec.profile.split(", "))):
            continue
        changes.append(_removal(ResourceKey.parse(skey), rec, live))
    known = wanted | set(state.records)
    for key, obj in sorted(live.objects.items()):
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if (labels.get(LABEL_MANAGED_BY) == MANAGER and labels.get(LABEL_STACK) == stack and str(key) not in known
                and (not destroy_profiles or labels.get("harden.dev/profile") in destroy_profiles)):
            changes.append(Change(key, obj["apiVersion"], Action.DELETE, ChangeKind.OBJECT,
                                  labels.get("harden.dev/profile", "?"),
                                  "labelled as this stack's but not in state, and no selected profile wants it",
                                  observed_resource_version=obj["metadata"].get("resourceVersion")))

    return Plan(stack=stack, lineage=state.lineage, serial=state.serial, changes=tuple(changes),
                targets=tuple(target_report), source=live.source, selection=selection or {},
                created_at=created_at, harden_version=__version__)


def _other_stack(live: Obj | None, stack: str) -> str | None:
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGER and labels.get(LABEL_STACK) not in (None, stack):
        return labels[LABEL_STACK]
    return None


def _object_change(key: ResourceKey, body: Obj, profile: str, live: Obj | None, own: str) -> Change:
    fields = diff_fields(body, live)
    if live is None:
        return Change(key, body["apiVersion"], Action.CREATE, ChangeKind.OBJECT, profile,
                      "wanted by the profile and absent", body=body, fields=tuple(fields))
    # Fields harden applied before and the profile no longer declares: the apply will prune them.
    fields += dropped_fields(body, live, own)
    rv = live["metadata"].get("resourceVersion")
    if not fields:
        return Change(key, body["apiVersion"], Action.NOOP, ChangeKind.OBJECT, profile, "in sync", body=body,
                      observed_resource_version=rv)
    return Change(key, body["apiVersion"], Action.UPDATE, ChangeKind.OBJECT, profile,
                  "live object differs from the profile (drift)", body=body, fields=tuple(fields),
                  conflicts=tuple(conflicts(live, fields, own)), observed_resource_version=rv)


def _patch_change(key: ResourceKey, intents: list[tuple[PatchIntent, Obj]], record: Record | None,
                  own: str) -> Change:
    live = intents[0][1]
    current = live
    partial: Obj = {}
    paths: list[str] = []
    for intent, _ in intents:
        part, p = materialize(intent, current)
        current = merge_partial(current, part)
        partial = merge_partial(partial, part)
        paths += [x for x in p if x not in paths]
    body = merge_partial(identity(live), partial)
    profiles = ", ".join(dict.fromkeys(i.profile for i, _ in intents))
    reasons = "; ".join(dict.fromkeys(i.reason for i, _ in intents if i.reason)) or "fields the profile sets"
    fields = diff_fields(body, live)
    owners = conflicts(live, [FieldChange(p, None, None) for p in paths], own)
    # The restore point: what each field held before harden first set it. Fields harden already
    # set keep the recorded value; fields it sets for the first time take the live value.
    restore = {"body": merge_partial(identity(live), restore_shape(live, partial)),
               "manager": owners[0].manager if owners else f"{MANAGER}-release"}
    release_first = None
    if record is not None and record.restore is not None:
        kept = [p for p in record.field_paths if p in paths]
        dropped = [p for p in record.field_paths if p not in paths]
        recorded = record.restore.get("body") or {}
        restore = {"body": merge_partial(restore["body"], select_paths(recorded, kept)),
                   "manager": record.restore.get("manager", restore["manager"])}
        if dropped:
            # A field no selected profile sets any more goes back to its recorded value and owner.
            release_first = merge_partial(identity(live), select_paths(recorded, dropped))
            fields += [FieldChange(f.path, f.before, f.after) for f in diff_fields(release_first, live)]
    rv = live["metadata"].get("resourceVersion")
    action = Action.UPDATE if fields else Action.NOOP
    return Change(key, live["apiVersion"], action, ChangeKind.PATCH, profiles, reasons, body=body,
                  fields=tuple(fields), conflicts=tuple(conflicts(live, fields, own)) if fields else (),
                  observed_resource_version=rv, restore=restore, field_paths=tuple(paths),
                  release_first=release_first)


def _removal(key: ResourceKey, rec: Record, live: Live) -> Change:
    obj = live.get(key)
    rv = obj["metadata"].get("resourceVersion") if obj else None
    if rec.kind == ChangeKind.PATCH.value:
        restore = rec.restore or {}
        body = restore.get("body")
        fields = tuple(diff_fields(body, obj)) if (obj and body) else ()
        return Change(key, rec.api_version, Action.RELEASE, ChangeKind.PATCH, rec.profile,
                      "no selected profile sets these fields any more" + ("" if obj else " (object is gone)"),
                      body=body if obj else None, fields=fields, observed_resource_version=rv,
                      restore=restore, field_paths=rec.field_paths)
    return Change(key, rec.api_version, Action.DELETE, ChangeKind.OBJECT, rec.profile,
                  "no selected profile wants it any more" + ("" if obj else " (already gone; dropped from state)"),
                  observed_resource_version=rv,
                  fields=tuple(FieldChange(p, v, None) for p, v in _top_fields(obj)) if obj else ())


def _top_fields(obj: Obj):
    for k in ("spec", "rules", "subjects", "roleRef", "data"):
        if k in obj:
            yield k, obj[k]


def record_for(change: Change) -> Record:
    return Record(str(change.key), change.api_version, change.kind.value, change.profile, digest(change.body),
                  change.field_paths, change.restore if change.kind is ChangeKind.PATCH else None)


def predict(live: Live, plan: Plan) -> list[Obj]:
    """The objects as they would be after the plan is applied (for impact and expectations)."""
    objs = {k: o for k, o in live.objects.items()}
    for c in plan.actionable:
        if c.action is Action.CREATE and c.body:
            objs[c.key] = c.body
        elif c.action is Action.UPDATE and c.body:
            base = _strategic(objs.get(c.key, {}), c.release_first) if c.release_first else objs.get(c.key, {})
            objs[c.key] = merge_partial(base, c.body)
        elif c.action is Action.RELEASE and c.body and c.key in objs:
            objs[c.key] = _strategic(objs[c.key], c.body)
        elif c.action is Action.DELETE:
            objs.pop(c.key, None)
    return list(objs.values())


def _strategic(base: Obj, patch: Obj) -> Obj:
    """Enough of a strategic merge for restore patches: None deletes, keyed lists merge."""
    merged = merge_partial(base, patch)
    return _drop_none(merged)


def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v
