"""ownership: who owns which field, read from `metadata.managedFields` (fieldsV1). Pure.

Server-side apply records, per field manager, the set of fields it owns as a fieldsV1 tree:
`f:<name>` for a mapping key, `k:{"name":"x"}` for a keyed-list entry, `v:` for a set member, `i:`
for an index, and `.` for the node itself. Two questions are asked of it:

- `conflicts`: which fields harden would change that another manager owns (the plan names the
  owner, "field X is owned by helm", before an apply forces them over);
- `dropped_fields`: which fields harden applied before and the profile no longer declares (the next
  apply prunes them, so the plan must list them).

An empty set under a field means the field is owned whole (an atomic list, a scalar): owning
`f:rules` owns `rules[3].verbs[1]`, and a conflict is reported on `rules`, the unit that is owned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .fieldpath import Step, get_at, path_text, split_path, step
from .mergekeys import MergeKeys
from .model import MANAGER, FieldChange, FieldConflict, Obj


def _entry_token(key: str, value: Any) -> str:
    return "k:" + json.dumps({key: value}, separators=(",", ":"))


def _owns(fields: dict[str, Any], path: list[Step], live_at: Any, keys: MergeKeys) -> bool:
    """Whether a fieldsV1 set covers `path` (walking keyed lists by their merge key)."""
    node = fields
    cur = live_at
    parent_key: str | None = None
    for p in path:
        if not node:  # an empty set here means this whole (atomic) field is owned
            return True
        if isinstance(p, tuple):  # a keyed-list entry named by its merge key
            token = _entry_token(p[0], p[1])
            if token not in node:
                return False
            node, cur = node[token], step(cur, p)
            continue
        if isinstance(p, int):
            key = keys.key(parent_key)
            if key and isinstance(cur, list) and p < len(cur):
                token = _entry_token(key, cur[p].get(key))
                if token not in node:
                    return False
                node, cur = node[token], cur[p]
                continue
            return True  # an index into an atomic list: owning the list owns the entry
        token = f"f:{p}"
        if token not in node:
            return False
        node, cur = node[token], step(cur, p)
        parent_key = p
    return True


def conflicts(live: Obj | None, changes: list[FieldChange], keys: MergeKeys, own: str = MANAGER) -> list[FieldConflict]:
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
            if _owns(fields, path, live, keys):
                top = _atomic_prefix(path, keys)
                out[(top, manager)] = FieldConflict(top, manager, entry.get("operation", ""))
    return sorted(out.values(), key=lambda c: (c.path, c.manager))


def owned_by(live: Obj | None, paths: list[str], manager: str, keys: MergeKeys) -> list[str]:
    """The `paths` that `manager` owns in `live` (from its managedFields entries)."""
    out = []
    for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager:
            continue
        out += [p for p in paths if p not in out and _owns(entry.get("fieldsV1") or {}, split_path(p), live, keys)]
    return out


def _atomic_prefix(path: list[Step], keys: MergeKeys) -> str:
    """Report a conflict on the field that is owned as a whole (`rules`, not `rules[0].verbs[3]`)."""
    for i, p in enumerate(path):
        if isinstance(p, int) and (i == 0 or not keys.key(path[i - 1])):
            return path_text(path[:i])
    return path_text(path)


def _owned_leaves(fields: dict[str, Any], path: list[Step]) -> Iterator[list[Step]]:
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


def dropped_fields(desired: Obj, live: Obj, own: str) -> list[FieldChange]:
    """Fields `own` applied to `live` that `desired` no longer declares: the next apply prunes them."""
    out: list[FieldChange] = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != own or entry.get("operation") != "Apply":
            continue
        missing: list[list[Step]] = []
        _undeclared(entry.get("fieldsV1") or {}, desired, [], missing)
        out += [FieldChange(path_text(path), get_at(live, path), None) for path in missing if path]
    return out


def _undeclared(fields: dict[str, Any], node: Any, path: list[Step], out: list[list[Step]]) -> None:
    """Add to `out` the leaves of `fields` (as `_owned_leaves` lists them) that `node` does not
    declare, found in one walk down both: every object harden applied pays this on every plan, and
    nearly always nothing is missing, so no path is copied unless a field is (`path` is the walk's
    own stack). A leaf below a value harden declares whole (a scalar or an atomic list where
    fieldsV1 goes deeper) counts as declared."""
    for token, sub in fields.items():
        if token == ".":
            continue
        if token.startswith("f:"):
            if not isinstance(node, dict):
                continue  # below an atomic value harden declares as a whole
            p: Step = token[2:]
            child = node.get(p)
        elif token.startswith("k:"):
            key = json.loads(token[2:])
            if len(key) != 1:
                continue  # a compound key: the list is one field, and `node` has it
            (name, value), = key.items()
            p = (name, value)
            child = step(node, p)
        else:
            return  # v: and i: belong to the list at `path`, owned as a whole, and `node` has it
        path.append(p)
        if child is None:
            out += _owned_leaves(sub, list(path))
        elif len(sub) > 1 or "." not in sub:
            _undeclared(sub, child, path, out)
        path.pop()
