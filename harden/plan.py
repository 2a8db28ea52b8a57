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

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import __version__
from .diff import diff_fields, holds
from .errors import Diagnostic, Diagnostics
from .graph import flag_values, workload_args
from .load import Selected
from .merge import merge_partial, restore_shape, select_paths
from .mergekeys import BUILTIN, MergeKeys
from .model import (
    ANNOTATION_ORIGINAL,
    LABEL_MANAGED_BY,
    LABEL_PROFILE,
    LABEL_STACK,
    MANAGER,
    Action,
    Change,
    ChangeKind,
    Detected,
    FieldChange,
    Live,
    Obj,
    Phase,
    Plan,
    Record,
    ResourceKey,
    Restore,
    SourceRef,
    State,
    TargetReport,
    field_manager,
)
from .ownership import conflicts, dropped_fields, owned_by
from .redact import redact
from .render import Candidate, ConfigMapYamlError, PatchIntent, Rendered, Target, identity, materialize


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
    more: tuple[Obj, ...] = ()  # a `many` target: the other objects it resolved to

    @property
    def objs(self) -> tuple[Obj, ...]:
        return ((self.obj,) if self.obj is not None else ()) + self.more


def resolve_target(target: Target, live: Live) -> Resolved:
    """The first candidate that exists (every one, for a `many` target); label candidates pick the
    first match by name."""
    if target.many:
        found = [(c, o) for c in target.candidates if c.name
                 and (o := live.get(ResourceKey(_group(c.api_version), c.kind, c.namespace, c.name))) is not None]
        if found:
            return Resolved(target, found[0][0], found[0][1], tuple(o for _, o in found[1:]))
        return Resolved(target, None, None)
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


def detect(selected: Selected, rendered: Rendered, live: Live) -> tuple[dict[str, Any], list[Detected]]:
    """Values of `detect:` parameters the user did not set, read from the targets found in `live`.

    Returns the new values (only those that changed) and a report of what was detected from where,
    which the plan shows so nobody wonders where a selector came from.
    """
    targets = {t.id: t for t in rendered.targets}
    changed: dict[str, Any] = {}
    report: list[Detected] = []
    for name, decl in selected.profile.parameters.items():
        how = decl.get("detect")
        if not how or name in selected.given:
            continue
        if how["from"] in ("apiServerAddresses", "apiServerPorts"):
            found = api_server_endpoints(live)
            if found is None:
                continue
            value: Any = found[0] if how["from"] == "apiServerAddresses" else found[1]
            report.append(Detected(rendered.profile, name, value, "EndpointSlice default/kubernetes"))
            if value != selected.values.get(name):
                changed[name] = value
            continue
        res = resolve_target(targets[how["target"]], live)
        if res.obj is None:
            continue
        if how["from"] == "podSelector":
            value = (((res.obj.get("spec") or {}).get("selector") or {}).get("matchLabels")) or None
        elif how["from"].startswith("arg:"):
            # Every value of a repeatable flag (argo-server takes several `--auth-mode`s), read the way
            # the install graph reads args; a flag that is absent is an empty list, itself a finding.
            value = list(flag_values(workload_args(res.obj), how["from"][len("arg:"):]))
        else:
            value = (res.obj.get("metadata") or {}).get("namespace") or None
        if value is None:
            continue
        report.append(Detected(rendered.profile, name, value, res.candidate.describe() if res.candidate else ""))
        if value != selected.values.get(name):
            changed[name] = value
    return changed, report


def api_server_endpoints(live: Live) -> tuple[list[str], list[int]] | None:
    """Where the API server really listens: the addresses (as /32 or /128 CIDRs) and ports of the
    `kubernetes` Service's EndpointSlice in `default`, which the API server maintains itself
    (kubernetes/kubernetes pkg/controlplane/reconcilers). None when it was not observed."""
    for obj in live.of_kind("EndpointSlice", "default"):
        if ((obj.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") != "kubernetes":
            continue
        addrs = sorted({a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []})
        ports = sorted({int(p["port"]) for p in obj.get("ports") or [] if p.get("port")})
        if addrs and ports:
            return [f"{a}/128" if ":" in a else f"{a}/32" for a in addrs], ports
    return None


def make_plan(rendered: list[Rendered], live: Live, state: State, stack: str, *,
              destroy_profiles: set[str] | None = None, selection: dict[str, Any] | None = None,
              profile_files: dict[str, str] | None = None, created_at: str = "", keys: MergeKeys = BUILTIN) -> Plan:
    """Build the plan. `destroy_profiles` (destroy mode) plans removal of what those profiles own.
    `keys`: the list merge strategies of the cluster planned against (the built-in table offline)."""
    problems: list[Diagnostic] = []
    changes: list[Change] = []
    target_report: list[TargetReport] = []
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
                changes.append(_object_change(d.key, d.body, d.profile, live.get(d.key), own,
                                              SourceRef(profile_files.get(d.profile), d.line), keys,
                                              state.records.get(str(d.key))))

        # Resolve targets, then group patch intents by the object they land on.
        resolved: dict[tuple[str, str], Resolved] = {}
        for r in rendered:
            for t in r.targets:
                res = resolve_target(t, live)
                resolved[(r.profile, t.id)] = res
                target_report.append(TargetReport(
                    r.profile, t.id, t.description,
                    "; ".join(c.describe() for c in t.candidates if c.name in {ResourceKey.of(o).name for o in res.objs})
                    if t.many and res.objs else (res.candidate.describe() if res.candidate else None),
                    ", ".join(str(ResourceKey.of(o)) for o in res.objs) or None,
                    tuple(c.describe() for c in t.candidates), t.optional))
                if res.obj is None and not t.optional:
                    looked = "; ".join(c.describe() for c in t.candidates) or "the install graph found none"
                    problems.append(Diagnostic(
                        f"profile {r.profile!r}: target {t.id!r} ({t.description or 'patched object'}) is not in the "
                        f"{live.source.get('kind', 'cluster')}; looked for: " + looked,
                        file=profile_files.get(r.profile), line=t.line, field=f"targets.{t.id}",
                        hint="install the target first, point --set at the right namespace/release, or deselect the profile"))
        grouped: dict[ResourceKey, list[tuple[PatchIntent, Obj]]] = {}
        for r in rendered:
            for intent in r.patches:
                for obj in resolved[(r.profile, intent.target)].objs:
                    grouped.setdefault(ResourceKey.of(obj), []).append((intent, obj))
        for key, intents in sorted(grouped.items()):
            try:
                changes.append(_patch_change(key, intents, state.records.get(str(key)) or original_record(
                    intents[0][1], stack), own, profile_files, keys, stack))
            except ConfigMapYamlError as exc:
                intent = exc.intent
                problems.append(Diagnostic(f"profile {intent.profile!r}: {key.display()} key {intent.spec['key']!r} {exc}",
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
        if skey in wanted or (destroy_profiles and not destroy_profiles & set(rec.profiles)):
            continue
        changes.append(_removal(ResourceKey.parse(skey), rec, live, keys))
    # One pass over the live objects for the two kinds of leftovers below (each reported in key order).
    unknown = sorted(((key, obj) for key, obj in live.objects.items()
                      if (skey := str(key)) not in wanted and skey not in state.records), key=lambda kv: kv[0])
    # Fields harden set whose record was lost with the state: the original rides on the object.
    for key, obj in unknown:
        original = original_record(obj, stack)
        if original is not None and (not destroy_profiles or destroy_profiles & set(original.profiles)):
            changes.append(_removal(key, original, live, keys))
    for key, obj in unknown:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if (labels.get(LABEL_MANAGED_BY) == MANAGER and labels.get(LABEL_STACK) == stack
                and (not destroy_profiles or labels.get(LABEL_PROFILE) in destroy_profiles)):
            changes.append(_phased(Change(key, obj["apiVersion"], Action.DELETE, ChangeKind.OBJECT,
                                          (labels.get(LABEL_PROFILE, "?"),),
                                          "labelled as this stack's but not in state, and no selected profile wants it",
                                          observed_resource_version=obj["metadata"].get("resourceVersion"),
                                          fields=tuple(FieldChange(p, v, None) for p, v in _top_fields(obj)))))

    return Plan(stack=stack, lineage=state.lineage, serial=state.serial, changes=tuple(changes),
                targets=tuple(target_report), source=live.source, selection=selection or {},
                created_at=created_at, harden_version=__version__)


def _other_stack(live: Obj | None, stack: str) -> str | None:
    labels: dict[str, str] = ((live or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGER and labels.get(LABEL_STACK) not in (None, stack):
        return labels[LABEL_STACK]
    return None


def _phased(change: Change) -> Change:
    """The change with its write phase (see `Phase`): decided here so apply never re-decides it."""
    deny = _is_default_deny(change)
    if change.action in (Action.DELETE, Action.RELEASE):
        phase = Phase.UNISOLATE if deny else Phase.REMOVE
    elif change.key.kind == "ServiceAccount":
        # The token controller deletes a token Secret whose service account does not exist yet.
        phase = Phase.PREPARE
    else:
        phase = Phase.ISOLATE if deny else Phase.WRITE
    return change if change.phase is phase else replace(change, phase=phase)


def _is_default_deny(change: Change) -> bool:
    """A NetworkPolicy that only isolates (no ingress or egress rules) its pods."""
    if change.key.kind != "NetworkPolicy":
        return False
    # A deletion carries the live spec as its field changes; a create or update carries its body.
    spec = (change.body or {}).get("spec")
    if spec is None:
        spec = next((f.before for f in change.fields if f.path == "spec"), None) or {}
    return not spec.get("ingress") and not spec.get("egress")


def _object_change(key: ResourceKey, body: Obj, profile: str, live: Obj | None, own: str,
                   source: SourceRef, keys: MergeKeys, record: Record | None = None) -> Change:
    token = in_sync_token(live)
    if live is not None and record is not None and record.in_sync is not None and record.in_sync == token \
            and record.digest == digest(body):
        # Known in sync at this very resourceVersion of this very object with this very body, and no
        # write since (any write moves the resourceVersion on): the verdict a diff would reach.
        return _phased(Change(key, body["apiVersion"], Action.NOOP, ChangeKind.OBJECT, (profile,), "in sync",
                              body=body, observed_resource_version=live["metadata"]["resourceVersion"],
                              source=source, in_sync=token))
    fields = diff_fields(body, live, keys)
    if live is None:
        return _phased(Change(key, body["apiVersion"], Action.CREATE, ChangeKind.OBJECT, (profile,),
                              "wanted by the profile and absent", body=body, fields=tuple(fields), source=source))
    # Fields harden applied before and the profile no longer declares: the apply will prune them.
    fields += dropped_fields(body, live, own)
    rv = live["metadata"].get("resourceVersion")
    if not fields:
        # In sync under this cluster's merge keys; recorded as such only if it holds under any (a
        # later plan may read another table: another identity's schema access, a cluster upgrade).
        return _phased(Change(key, body["apiVersion"], Action.NOOP, ChangeKind.OBJECT, (profile,), "in sync",
                              body=body, observed_resource_version=rv, source=source,
                              in_sync=token if holds(body, live) else None))
    return _phased(Change(key, body["apiVersion"], Action.UPDATE, ChangeKind.OBJECT, (profile,),
                          "live object differs from the profile (drift)", body=body, fields=tuple(fields),
                          conflicts=tuple(conflicts(live, fields, keys, own)), observed_resource_version=rv,
                          source=source))


def original_record(live: Obj | None, stack: str) -> Record | None:
    """The record of a patch, read back from the object's `harden.dev/original` annotation."""
    text = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ORIGINAL)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("stack") != stack or not isinstance(data.get("body"), dict):
        return None
    body = {**identity(live or {}), **data["body"]}
    return Record(str(ResourceKey.of(live or {})), (live or {}).get("apiVersion", ""), ChangeKind.PATCH,
                  tuple(data.get("profiles") or ()), "annotation", tuple(data.get("paths") or ()),
                  Restore(body, str(data.get("manager") or f"{MANAGER}-release")))


def _original_annotation(stack: str, profiles: tuple[str, ...], paths: list[str], restore: Restore) -> str:
    fields = {k: v for k, v in restore.body.items() if k not in ("apiVersion", "kind", "metadata")}
    return json.dumps({"stack": stack, "profiles": list(profiles), "manager": restore.manager, "paths": paths,
                       "body": fields}, sort_keys=True, separators=(",", ":"))


def _patch_change(key: ResourceKey, intents: list[tuple[PatchIntent, Obj]], record: Record | None,
                  own: str, profile_files: dict[str, str], keys: MergeKeys, stack: str = "default") -> Change:
    live = intents[0][1]
    current = live
    partial: Obj = {}
    paths: list[str] = []
    for intent, _ in intents:
        part, p = materialize(intent, current)
        current = merge_partial(current, part, keys)
        partial = merge_partial(partial, part, keys)
        paths += [x for x in p if x not in paths]
    profiles = tuple(dict.fromkeys(i.profile for i, _ in intents))
    first = intents[0][0]
    reasons = "; ".join(dict.fromkeys(i.reason for i, _ in intents if i.reason)) or "fields the profile sets"
    owners = conflicts(live, [FieldChange(p, None, None) for p in paths], keys, own)
    # The restore point: what each field held before harden first set it. Fields harden already
    # set keep the recorded value; fields it sets for the first time take the live value.
    restore = Restore(merge_partial(identity(live), restore_shape(live, partial, keys), keys),
                      owners[0].manager if owners else f"{MANAGER}-release")
    release_first = None
    released: list[FieldChange] = []
    unknown: list[str] = []
    if record is None or record.restore is None:
        # No record and no annotation, yet harden's own manager owns these fields: the value there is
        # harden's, not the original. Never record it as one; leave the field alone on release.
        unknown = owned_by(live, paths, own, keys)
        if unknown:
            restore = Restore(merge_partial(identity(live), restore_shape(
                live, select_paths(partial, [p for p in paths if p not in unknown], keys), keys), keys),
                restore.manager)
    if record is not None and record.restore is not None:
        kept = [p for p in record.field_paths if p in paths]
        dropped = [p for p in record.field_paths if p not in paths]
        recorded = record.restore.body
        restore = Restore(merge_partial(restore.body, select_paths(recorded, kept, keys), keys), record.restore.manager)
        if dropped:
            # A field no selected profile sets any more goes back to its recorded value and owner.
            release_first = merge_partial(identity(live), select_paths(recorded, dropped, keys), keys)
            released = diff_fields(release_first, live, keys)
    known_paths = [p for p in paths if p not in unknown]
    # One shape for the same originals, whether read from the live object or from a record
    # (`data: null` and `data: {k: null}` say the same), so a re-plan writes the same annotation.
    restore = Restore(merge_partial(identity(live), select_paths(restore.body, known_paths, keys), keys),
                      restore.manager)
    # The original rides on the object, written in the same request as the fields themselves.
    values_change = bool(diff_fields(merge_partial(identity(live), partial, keys), live, keys) or released)
    if values_change or ANNOTATION_ORIGINAL in ((live.get("metadata") or {}).get("annotations") or {}):
        # Only a patch that writes values takes fields over, so only then is there an original to keep.
        partial = merge_partial(partial, {"metadata": {"annotations": {
            ANNOTATION_ORIGINAL: _original_annotation(stack, profiles, known_paths, restore)}}}, keys)
    body = merge_partial(identity(live), partial, keys)
    fields = diff_fields(body, live, keys) + released
    if unknown:
        reasons += ("; the value before harden of " + ", ".join(unknown) + " is unknown (harden set it before and "
                    "its record is lost): destroy will leave it as it is")
    rv = live["metadata"].get("resourceVersion")
    action = Action.UPDATE if fields else Action.NOOP
    return _phased(Change(key, live["apiVersion"], action, ChangeKind.PATCH, profiles, reasons, body=body,
                          fields=tuple(fields), conflicts=tuple(conflicts(live, fields, keys, own)) if fields else (),
                          observed_resource_version=rv, restore=restore, field_paths=tuple(known_paths),
                          release_first=release_first, source=SourceRef(profile_files.get(first.profile), first.line)))


def _removal(key: ResourceKey, rec: Record, live: Live, keys: MergeKeys) -> Change:
    obj = live.get(key)
    rv = obj["metadata"].get("resourceVersion") if obj else None
    if rec.kind is ChangeKind.PATCH:
        # The fields go back to their recorded values, and the record on the object goes with them.
        body = merge_partial(rec.restore.body, {"metadata": {"annotations": {ANNOTATION_ORIGINAL: None}}}, keys) \
            if rec.restore else None
        fields = tuple(diff_fields(body, obj, keys)) if (obj and body) else ()
        return _phased(Change(key, rec.api_version, Action.RELEASE, ChangeKind.PATCH, rec.profiles,
                              "no selected profile sets these fields any more" + ("" if obj else " (object is gone)"),
                              body=body if obj else None, fields=fields, observed_resource_version=rv,
                              restore=rec.restore, field_paths=rec.field_paths))
    return _phased(Change(key, rec.api_version, Action.DELETE, ChangeKind.OBJECT, rec.profiles,
                          "no selected profile wants it any more" + ("" if obj else " (already gone; dropped from state)"),
                          observed_resource_version=rv,
                          fields=tuple(FieldChange(p, v, None) for p, v in _top_fields(obj)) if obj else ()))


def _top_fields(obj: Obj) -> Iterator[tuple[str, Any]]:
    for k in ("spec", "rules", "subjects", "roleRef", "data"):
        if k in obj:
            yield k, obj[k]


def record_for(change: Change, in_sync: str | None = None) -> Record:
    return Record(str(change.key), change.api_version, change.kind, change.profiles, digest(change.body),
                  change.field_paths, change.restore if change.kind is ChangeKind.PATCH else None,
                  in_sync if change.kind is ChangeKind.OBJECT else None)


def in_sync_token(obj: Obj | None) -> str | None:
    """What a record keeps of an object found to hold its body: the object's resourceVersion, its
    uid (a resourceVersion is a counter of one cluster's store: another cluster, or the object
    deleted and created again, can show the same number), and which harden judged it (`_judge`).
    None for an object without both (a snapshot's)."""
    meta = (obj or {}).get("metadata") or {}
    rv, uid = meta.get("resourceVersion"), meta.get("uid")
    return f"{rv}/{uid}@{_judge()}" if rv and uid else None


@functools.cache
def _judge() -> str:
    """harden's version and a digest of the code that decides what is equal (normalization, the
    diff, ownership, merge keys, redaction): a build that compares differently, released or not,
    trusts no verdict of another."""
    from . import diff, mergekeys, normalize, ownership, redact

    h = hashlib.sha256()
    for module in (diff, mergekeys, normalize, ownership, redact):
        try:
            h.update(Path(str(module.__file__)).read_bytes())
        except OSError:
            h.update(module.__name__.encode())  # no source to read (a frozen build): the version alone
    return f"{__version__}+{h.hexdigest()[:10]}"


def written_in_sync(change: Change, written: Obj | None, own: str) -> str | None:
    """The in-sync token of an object write, from the object the server returned for it: only if
    that object holds exactly the body written (`diff.holds`) and harden owns no field the body
    left out (a mutating webhook or a server default that rewrites a declared field leaves the
    object to be compared field by field, as before)."""
    if change.kind is not ChangeKind.OBJECT or change.body is None or not isinstance(written, dict):
        return None
    # Judged as a plan sees it: Secret values masked (a plan never compares them, so always shows them).
    written = redact(written)
    if not holds(change.body, written) or dropped_fields(change.body, written, own):
        return None
    return in_sync_token(written)


def predict(live: Live, plan: Plan, keys: MergeKeys = BUILTIN) -> list[Obj]:
    """The objects as they would be after the plan is applied (for impact and expectations)."""
    objs = {k: o for k, o in live.objects.items()}
    for c in plan.actionable:
        if c.action is Action.CREATE and c.body:
            objs[c.key] = c.body
        elif c.action is Action.UPDATE and c.body:
            base = _strategic(objs.get(c.key, {}), c.release_first, keys) if c.release_first else objs.get(c.key, {})
            objs[c.key] = merge_partial(base, c.body, keys)
        elif c.action is Action.RELEASE and c.body and c.key in objs:
            objs[c.key] = _strategic(objs[c.key], c.body, keys)
        elif c.action is Action.DELETE:
            objs.pop(c.key, None)
    return list(objs.values())


def _strategic(base: Obj, patch: Obj, keys: MergeKeys) -> Obj:
    """Enough of a strategic merge for restore patches: None deletes, keyed lists merge."""
    merged: Obj = _drop_none(merge_partial(base, patch, keys))
    return merged


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v
