"""diff: desired fields vs live object -> field-level changes. Pure.

Only the fields harden declares are compared (server-side apply semantics: harden has an opinion
about its fields and no other). Both sides are first normalized (`harden.normalize`) for what the
API server fills in by default, so a freshly applied object diffs empty. Lists follow the merge
strategy of their field, from the `MergeKeys` table passed in (`harden.mergekeys`): keyed lists
(containers by `name`, ...) are paired by key and a change inside one is named by the entry's key
(`containers[name=argo-server].args`); every other list is atomic and compared whole, so an entry
another actor appended to a Role's `rules` or a NetworkPolicy's `ingress` shows up as drift (it can
widen access). Lists whose order the API server ignores (RBAC verbs, set-typed lists) compare as sets.

Neighbours: paths are `harden.fieldpath`, ownership of the changed fields is `harden.ownership`,
merging partial objects is `harden.merge`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from .fieldpath import Step, path_text, step
from .mergekeys import ATOMIC_ONLY, MergeKeys
from .model import FieldChange, Obj
from .normalize import normalize

IGNORED_METADATA = {"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields",
                    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences"}


def project(live: Any, desired: Any, keys: MergeKeys, field: str | None = None) -> Any:
    """The part of `live` with the shape of `desired`: only keys desired declares, lists by strategy."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return None
        out = {}
        for k, v in desired.items():
            if k in live:
                out[k] = project(live[k], v, keys, k)
        return out
    key = keys.key(field)
    if isinstance(desired, list) and key and isinstance(live, list):
        # Positions stay aligned with `desired` (None where live has no such entry), so an index in
        # a diff path names the desired entry, and therefore its key.
        by_key = {item.get(key): item for item in live if isinstance(item, dict)}
        return [project(by_key[d.get(key)], d, keys, None) if isinstance(d, dict) and d.get(key) in by_key else None
                for d in desired]
    return live


def comparable(body: Obj) -> Obj:
    """What harden compares: the body without server-owned metadata, YAML-in-ConfigMap parsed.

    A new top-level mapping: the nested values are shared with `body` (normalization copies only
    what it changes), so nothing below may be changed in place.
    """
    # Server-owned parts go first, so normalization never walks them (managedFields alone is
    # often larger than the rest of the object); no normalizer reads them.
    body = {k: v for k, v in body.items() if k != "status"}
    meta = body.get("metadata") or {}
    body["metadata"] = {k: v for k, v in meta.items() if k not in IGNORED_METADATA}
    body = dict(normalize(body))
    if body.get("kind") == "ConfigMap" and isinstance(body.get("data"), dict):
        # A YAML document inside a ConfigMap value is compared as structure, not text.
        body["data"] = {k: _maybe_yaml(v) for k, v in body["data"].items()}
    return body


def _maybe_yaml(text: Any) -> Any:
    if not isinstance(text, str) or "\n" not in text:
        return text
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return parsed if isinstance(parsed, (dict, list)) else text


def _wanted(desired: Obj) -> Obj:
    """What is compared of `desired`: `comparable`, without the identity (apiVersion, kind, name, namespace)."""
    want = comparable(desired)
    for k in ("apiVersion", "kind"):
        want.pop(k, None)
    want["metadata"] = {k: v for k, v in want["metadata"].items() if k not in ("name", "namespace")}
    if not want["metadata"]:
        del want["metadata"]
    return want


def holds(desired: Obj, live: Obj) -> bool:
    """Does `live` hold exactly what `desired` declares, with every list equal as a whole?

    Stricter than an empty `diff_fields` under any merge-key table (a list equal as a whole is equal
    entry by entry under any key), so the answer stands whatever cluster schema the next plan reads.
    Both sides are normalized as the diff normalizes them, so it is a judgement of this harden
    version: whoever keeps it keeps the version with it (`plan.in_sync_token`).
    """
    want = _wanted(desired)
    return _identical(project(live, want, ATOMIC_ONLY), want) or \
        _identical(project(comparable(live), want, ATOMIC_ONLY), want)


def diff_fields(desired: Obj, live: Obj | None, keys: MergeKeys) -> list[FieldChange]:
    """Field changes that applying `desired` would make to `live` (None: the object is new)."""
    want = _wanted(desired)
    if live is None:
        return [FieldChange(path_text(p), None, v) for p, v in _leaves(want, [])]
    # Most objects of a no-change plan are equal: settle those at C speed and spend DeepDiff only
    # where there is a difference to describe. First the live object as read, projected on what
    # harden declares: `want` is normalized, and every normalizer rewrites a field only from what
    # is inside that field (or fills one `want` has), so a projection equal to `want` is one that
    # normalizing would leave equal. Only the unequal rest pays for normalizing the whole live object.
    if _identical(project(live, want, keys), want):
        return []
    have = project(comparable(live), want, keys)
    if _identical(have, want):
        return []

    def unordered(level: Any) -> bool:
        path = level.path(output_format="list")
        return bool(path) and _is_set(path[-1], keys)

    dd = _deepdiff()(have, want, view="tree", ignore_order=False, verbose_level=2, iterable_compare_func=_same_entry,
                  ignore_order_func=unordered)
    changes = []
    for report in dd.values():
        for level in report:
            path = level.path(output_format="list")
            before = None if _missing(level.t1) else level.t1
            after = None if _missing(level.t2) else level.t2
            changes += _expand(_keyed(list(path), want, keys), before, after, keys)
    return sorted(changes, key=lambda c: c.path)


def _deepdiff() -> Any:
    # Imported on the first unequal object: a no-change plan never loads DeepDiff (nor the
    # pydantic it imports): 0.16 s of CPU measured on the 2-core dev box.
    from deepdiff import DeepDiff

    return DeepDiff


def _identical(a: Any, b: Any) -> bool:
    """Equal and of the same types throughout: exactly when DeepDiff would report nothing.

    `==` alone is not enough: it holds for 1 == 1.0 == True, which DeepDiff reports as a type
    change (and so must harden: `replicas: true` is not `replicas: 1`). `==` runs first, in C, and
    the walk over types is paid only by objects that are equal.
    """
    return a == b and _same_types(a, b)


def _same_types(a: Any, b: Any) -> bool:
    # Plain loops, not all() over generators: this runs on every equal object of a plan.
    t = type(a)
    if t is not type(b):
        return False
    if isinstance(a, dict):
        for k, v in a.items():
            if not _same_types(v, b[k]):
                return False
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b, strict=False):
            if not _same_types(x, y):
                return False
    return True


def _keyed(path: list[Step], want: Any, keys: MergeKeys) -> list[Step]:
    """Name entries of keyed lists by their merge key (`containers[name=argo-server]`), not position."""
    out: list[Step] = []
    node, parent = want, None
    for p in path:
        entry = step(node, p)
        key = keys.key(parent) if isinstance(p, int) else None
        out.append((key, entry[key]) if key and isinstance(entry, dict) and key in entry else p)
        node, parent = entry, (p if isinstance(p, str) else None)
    return out


# Atomic in the schema, but their order means nothing to the API server (RBAC's authorizer and the
# NetworkPolicy spec read them as sets), so reordering them is no drift.
UNORDERED = {"verbs", "resources", "apiGroups", "resourceNames", "policyTypes"}


def _is_set(field: Any, keys: MergeKeys) -> bool:
    """Lists compared as sets: harden's UNORDERED and the schema's `x-kubernetes-list-type: set`."""
    return field in UNORDERED or field in keys.sets


def _same_entry(a: Any, b: Any, level: Any = None) -> bool:
    """Pair entries of atomic lists for display: RBAC rules by what they are about, so dropping one
    rule reads as one rule removed rather than every later rule rewritten."""
    if isinstance(a, dict) and isinstance(b, dict) and "verbs" in a and "verbs" in b:
        about = ("apiGroups", "resources", "nonResourceURLs", "resourceNames")
        return all(a.get(k) == b.get(k) for k in about)
    from deepdiff.helper import CannotCompare  # loaded already: only DeepDiff calls this

    raise CannotCompare() from None


def _expand(path: list[Step], before: Any, after: Any, keys: MergeKeys) -> list[FieldChange]:
    """Report a changed mapping as the leaves that differ, so a reader sees fields, not blobs."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for k in list(before) + [k for k in after if k not in before]:
            if before.get(k) != after.get(k):
                out += _expand(path + [k], before.get(k), after.get(k), keys)
        return out
    if isinstance(before, list) and isinstance(after, list) and path and _is_set(path[-1], keys):
        # Set-like lists: report the members that come and go, not a rewritten list.
        gone = [FieldChange(path_text(path + [i]), x, None) for i, x in enumerate(before) if x not in after]
        new = [FieldChange(path_text(path + [i]), None, x) for i, x in enumerate(after) if x not in before]
        return gone + new
    if before is None and isinstance(after, dict) and after:
        return [FieldChange(path_text(path + p), None, v) for p, v in _leaves(after, [])]
    if after is None and isinstance(before, dict) and before:
        return [FieldChange(path_text(path + p), v, None) for p, v in _leaves(before, [])]
    return [FieldChange(path_text(path), before, after)]


def _missing(v: Any) -> bool:
    return type(v).__name__ == "NotPresent"


def _leaves(value: Any, path: list[Step]) -> Iterator[tuple[list[Step], Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, path + [k])
    elif isinstance(value, list) and value and any(isinstance(x, (dict, list)) for x in value):
        for i, v in enumerate(value):
            yield from _leaves(v, path + [i])
    else:
        yield path, value
