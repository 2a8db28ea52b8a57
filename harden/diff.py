"""diff: desired fields vs live object -> field-level changes. Pure.

Only the fields harden declares are compared (server-side apply semantics: harden has an opinion
about its fields and no other). Before comparing, both sides are normalized for what the API
server fills in by default, so a freshly applied object diffs empty. Lists follow the merge
strategy of their field: keyed lists (containers by `name`, ...) are paired by key, every other
list is atomic and compared whole, so an entry another actor appended to a Role's `rules` or a
NetworkPolicy's `ingress` shows up as drift (it can widen access).

Field ownership (who would conflict) is read from `metadata.managedFields` (fieldsV1).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import yaml
from deepdiff import DeepDiff
from deepdiff.helper import CannotCompare

from .model import MANAGER, FieldChange, FieldConflict, Obj

# Merge keys of the keyed (associative) lists harden may touch; every other list is atomic.
KEYED_LISTS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath",
}
IGNORED_METADATA = {"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields",
                    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences"}


def _normalize_netpol_ports(rules: list | None) -> list | None:
    if rules is None:
        return None
    out = []
    for rule in rules:
        rule = dict(rule)
        if rule.get("ports"):
            rule["ports"] = [{"protocol": "TCP", **p} for p in rule["ports"]]
        out.append({k: v for k, v in rule.items() if v not in (None, [])})
    return out


OMITTED_WHEN_EMPTY = {"matchLabels", "matchExpressions", "labels", "annotations"}


def _drop_empty(value: Any) -> Any:
    """The server omits these fields when empty (omitempty), so `matchLabels: {}` reads back absent."""
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if not (k in OMITTED_WHEN_EMPTY and v in ({}, [], None))}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def normalize(obj: Obj) -> Obj:
    """Apply the server's defaults (and omissions) that matter for comparison."""
    obj = _drop_empty(copy.deepcopy(obj))
    kind = obj.get("kind")
    if kind == "NetworkPolicy":
        spec = obj.setdefault("spec", {})
        if "policyTypes" not in spec or not spec["policyTypes"]:
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if "egress" in spec else [])
        for direction in ("ingress", "egress"):
            if direction in spec:
                spec[direction] = _normalize_netpol_ports(spec[direction])
        spec.setdefault("podSelector", {})
    if kind in ("Role", "ClusterRole"):
        for rule in obj.get("rules") or []:
            for k in ("apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if k in rule and rule[k] is None:
                    del rule[k]
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for s in obj.get("subjects") or []:
            if s.get("kind") == "ServiceAccount":
                s.setdefault("apiGroup", "")
            else:
                s.setdefault("apiGroup", "rbac.authorization.k8s.io")
    return obj


def project(live: Any, desired: Any, field: str | None = None) -> Any:
    """The part of `live` with the shape of `desired`: only keys desired declares, lists by strategy."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return None
        out = {}
        for k, v in desired.items():
            if k in live:
                out[k] = project(live[k], v, k)
        return out
    if isinstance(desired, list) and field in KEYED_LISTS and isinstance(live, list):
        # Positions stay aligned with `desired` (None where live has no such entry), so an index in
        # a diff path names the desired entry, and therefore its key.
        key = KEYED_LISTS[field]
        by_key = {item.get(key): item for item in live if isinstance(item, dict)}
        return [project(by_key[d.get(key)], d, None) if isinstance(d, dict) and d.get(key) in by_key else None
                for d in desired]
    return live


def comparable(body: Obj) -> Obj:
    """What harden compares: the body without server-owned metadata, YAML-in-ConfigMap parsed."""
    body = normalize(body)
    meta = body.get("metadata") or {}
    body["metadata"] = {k: v for k, v in meta.items() if k not in IGNORED_METADATA}
    body.pop("status", None)
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


_PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def path_text(path: list) -> str:
    """A field path as text: `spec.ingress[0]`, `data["server.tls.minversion"]`,
    `spec.template.spec.containers[name=argo-server].args`. `split_path` reads it back."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, tuple):
            out += f"[{p[0]}={p[1]}]"
        elif _PLAIN.match(str(p)):
            out += f".{p}" if out else str(p)
        else:
            out += "[" + json.dumps(str(p)) + "]"
    return out


_TOKEN = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\[([A-Za-z]+)=([^\]]*)\]')


def split_path(text: str) -> list:
    out: list = []
    for m in _TOKEN.finditer(text):
        plain, index, quoted, sel_key, sel_value = m.groups()
        if plain is not None:
            out.append(plain)
        elif index is not None:
            out.append(int(index))
        elif quoted is not None:
            out.append(json.loads(quoted))
        else:
            out.append((sel_key, sel_value))
    return out


_path_text = path_text


def diff_fields(desired: Obj, live: Obj | None) -> list[FieldChange]:
    """Field changes that applying `desired` would make to `live` (None: the object is new)."""
    want = comparable(desired)
    for k in ("apiVersion", "kind"):
        want.pop(k, None)
    want["metadata"] = {k: v for k, v in want["metadata"].items() if k not in ("name", "namespace")}
    if not want["metadata"]:
        del want["metadata"]
    if live is None:
        return [FieldChange(_path_text(p), None, v) for p, v in _leaves(want, [])]
    have = project(comparable(live), want)
    dd = DeepDiff(have, want, view="tree", ignore_order=False, verbose_level=2, iterable_compare_func=_same_entry,
                  ignore_order_func=_unordered)
    changes = []
    for report in dd.values():
        for level in report:
            path = level.path(output_format="list")
            before = None if _missing(level.t1) else level.t1
            after = None if _missing(level.t2) else level.t2
            changes += _expand(_keyed(list(path), want), before, after)
    return sorted(changes, key=lambda c: c.path)


def _keyed(path: list, want: Any) -> list:
    """Name entries of keyed lists by their merge key (`containers[name=argo-server]`), not position."""
    out: list = []
    node, parent = want, None
    for p in path:
        if isinstance(p, int) and parent in KEYED_LISTS and isinstance(node, list) and p < len(node) \
                and isinstance(node[p], dict) and KEYED_LISTS[parent] in node[p]:
            out.append((KEYED_LISTS[parent], node[p][KEYED_LISTS[parent]]))
        else:
            out.append(p)
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            node = None
        parent = p if isinstance(p, str) else None
    return out


UNORDERED = {"verbs", "resources", "apiGroups", "resourceNames", "policyTypes"}


def _unordered(level: Any) -> bool:
    """Lists whose order means nothing to the API server compare as sets (no drift on reordering)."""
    path = level.path(output_format="list")
    return bool(path) and path[-1] in UNORDERED


def _same_entry(a: Any, b: Any, level: Any = None) -> bool:
    """Pair entries of atomic lists for display: RBAC rules by what they are about, so dropping one
    rule reads as one rule removed rather than every later rule rewritten."""
    if isinstance(a, dict) and isinstance(b, dict) and "verbs" in a and "verbs" in b:
        about = ("apiGroups", "resources", "nonResourceURLs", "resourceNames")
        return all(a.get(k) == b.get(k) for k in about)
    raise CannotCompare() from None


def _expand(path: list, before: Any, after: Any) -> list[FieldChange]:
    """Report a changed mapping as the leaves that differ, so a reader sees fields, not blobs."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for k in list(before) + [k for k in after if k not in before]:
            if before.get(k) != after.get(k):
                out += _expand(path + [k], before.get(k), after.get(k))
        return out
    if isinstance(before, list) and isinstance(after, list) and path and path[-1] in UNORDERED:
        # Set-like lists: report the members that come and go, not a rewritten list.
        gone = [FieldChange(_path_text(path + [i]), x, None) for i, x in enumerate(before) if x not in after]
        new = [FieldChange(_path_text(path + [i]), None, x) for i, x in enumerate(after) if x not in before]
        return gone + new
    if before is None and isinstance(after, dict) and after:
        return [FieldChange(_path_text(path + p), None, v) for p, v in _leaves(after, [])]
    if after is None and isinstance(before, dict) and before:
        return [FieldChange(_path_text(path + p), v, None) for p, v in _leaves(before, [])]
    return [FieldChange(_path_text(path), before, after)]


def _missing(v: Any) -> bool:
    return type(v).__name__ == "NotPresent"


def _leaves(value: Any, path: list):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, path + [k])
    elif isinstance(value, list) and value and any(isinstance(x, (dict, list)) for x in value):
        for i, v in enumerate(value):
            yield from _leaves(v, path + [i])
    else:
        yield path, value


# -- field ownership --------------------------------------------------------------------------

def _owns(fields: dict, path: list, live_at: Any) -> bool:
    """Whether a fieldsV1 set covers `path` (walking keyed lists by their merge key)."""
    node = fields
    cur = live_at
    parent_key: str | None = None
    for p in path:
        if not node:  # an empty set here means this whole (atomic) field is owned
            return True
        if isinstance(p, tuple):  # a keyed-list entry named by its merge key
            token = "k:" + json.dumps({p[0]: p[1]}, separators=(",", ":"))
            if token not in node:
                return False
            node = node[token]
            cur = next((x for x in cur or [] if isinstance(x, dict) and x.get(p[0]) == p[1]), None)
            continue
        if isinstance(p, int):
            if parent_key in KEYED_LISTS and isinstance(cur, list) and p < len(cur):
                key = KEYED_LISTS[parent_key]
                token = "k:" + json.dumps({key: cur[p].get(key)}, separators=(",", ":"))
                if token not in node:
                    return False
                node, cur = node[token], cur[p]
                continue
            return True  # an index into an atomic list: owning the list owns the entry
        token = f"f:{p}"
        if token not in node:
            return False
        node = node[token]
        cur = cur.get(p) if isinstance(cur, dict) else None
        parent_key = p
    return True


def conflicts(live: Obj | None, changes: list[FieldChange], own: str = MANAGER) -> list[FieldConflict]:
    """Fields harden would change that another field manager owns (their apply would conflict)."""
    if not live:
        return []
    out: dict[tuple[str, str], FieldConflict] = {}
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        manager = entry.get("manager", "")
        if manager == own:
            continue
        fields = entry.get("fieldsV1") or {}
        for change in changes:
            path = split_path(change.path)
            if _owns(fields, path, live):
                top = _atomic_prefix(path)
                out[(top, manager)] = FieldConflict(top, manager, entry.get("operation", ""))
    return sorted(out.values(), key=lambda c: (c.path, c.manager))


def _atomic_prefix(path: list) -> str:
    """Report a conflict on the field that is owned as a whole (`rules`, not `rules[0].verbs[3]`)."""
    for i, p in enumerate(path):
        if isinstance(p, int) and (i == 0 or path[i - 1] not in KEYED_LISTS):
            return _path_text(path[:i])
    return _path_text(path)


def _owned_leaves(fields: dict, path: list):
    """Leaf field paths of a fieldsV1 set (`f:spec` -> spec, `k:{"name":"x"}` -> [name=x])."""
    children = {k: v for k, v in fields.items() if k != "."}
    if not children:
        yield path
        return
    for token, sub in children.items():
        if token.startswith("f:"):
            yield from _owned_leaves(sub, path + [token[2:]])
        elif token.startswith("k:"):
            key = json.loads(token[2:])
            if len(key) == 1:
                (name, value), = key.items()
                yield from _owned_leaves(sub, path + [(name, value)])
            else:
                yield path  # a compound key: treat the list as one field
        else:  # v: (set members) and i: (indexes) belong to the list above, owned as a whole
            yield path
            return


def _declares(desired: Any, path: list) -> bool:
    node = desired
    for p in path:
        if isinstance(p, tuple):
            node = next((x for x in node or [] if isinstance(x, dict) and x.get(p[0]) == p[1]), None) \
                if isinstance(node, list) else None
        elif isinstance(node, dict):
            node = node.get(p)
        else:
            return node is not None  # below an atomic value harden declares as a whole
        if node is None:
            return False
    return True


def dropped_fields(desired: Obj, live: Obj, own: str) -> list[FieldChange]:
    """Fields `own` applied to `live` that `desired` no longer declares: the next apply prunes them."""
    out = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != own or entry.get("operation") != "Apply":
            continue
        for path in _owned_leaves(entry.get("fieldsV1") or {}, []):
            if path and not _declares(desired, path):
                value = live
                for p in path:
                    value = (next((x for x in value if isinstance(x, dict) and x.get(p[0]) == p[1]), None)
                             if isinstance(p, tuple) else (value or {}).get(p)) if value is not None else None
                out.append(FieldChange(path_text(path), value, None))
    return out


def merge_partial(base: Any, partial: Any, field: str | None = None) -> Any:
    """Merge a partial object into `base` the way server-side apply does for harden's fields:
    mappings merge, keyed lists merge entry by entry, atomic lists are replaced."""
    if isinstance(base, dict) and isinstance(partial, dict):
        out = dict(base)
        for k, v in partial.items():
            out[k] = merge_partial(base.get(k), v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(partial, list) and field in KEYED_LISTS:
        key = KEYED_LISTS[field]
        out_list = [copy.deepcopy(x) for x in base]
        index = {x.get(key): i for i, x in enumerate(out_list) if isinstance(x, dict)}
        for item in partial:
            k = item.get(key) if isinstance(item, dict) else None
            if k in index:
                out_list[index[k]] = merge_partial(out_list[index[k]], item, None)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(partial)


def select_paths(body: Obj, paths: list[str]) -> Obj:
    """The part of `body` at the given field paths (keyed-list entries kept with their key)."""
    out: Obj = {}
    for text in paths:
        path = split_path(text)
        src: Any = body
        for p in path:
            if isinstance(p, tuple):
                src = next((x for x in src or [] if isinstance(x, dict) and x.get(p[0]) == p[1]), None)
            else:
                src = src.get(p) if isinstance(src, dict) else None
            if src is None:
                break
        # Rebuild the path in `out`, innermost value last; a missing value stays None (= remove it).
        value: Any = copy.deepcopy(src)
        for i in range(len(path) - 1, -1, -1):
            p = path[i]
            if isinstance(p, tuple):
                value = [{p[0]: p[1], **(value if isinstance(value, dict) else {})}]
            else:
                value = {p: value}
        out = merge_partial(out, value)
    return out


def restore_shape(live: Any, partial: Any, field: str | None = None) -> Any:
    """What `live` holds at the fields of `partial`, with None where it holds nothing: a
    strategic-merge patch that puts those fields back as they were."""
    if isinstance(partial, dict):
        live = live if isinstance(live, dict) else {}
        return {k: (restore_shape(live.get(k), v, k) if k in live else None) for k, v in partial.items()}
    if isinstance(partial, list) and field in KEYED_LISTS:
        key = KEYED_LISTS[field]
        by_key = {x.get(key): x for x in (live or []) if isinstance(x, dict)}
        return [{key: p.get(key), **{k: v for k, v in restore_shape(by_key.get(p.get(key), {}), p, None).items() if k != key}}
                for p in partial if isinstance(p, dict) and p.get(key) in by_key]
    return copy.deepcopy(live)
