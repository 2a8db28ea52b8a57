"""merge: partial objects, merged and cut the way server-side apply does it. Pure.

harden sends partial objects: only the fields it has an opinion about. To predict the object after
apply, to combine several profiles' patches on one target, and to record what to restore, it needs
the server's merge: mappings merge key by key, keyed lists merge entry by entry by their merge key,
every other list (and every scalar) is replaced whole. Which lists are keyed is the `MergeKeys`
table passed in (the cluster's OpenAPI, or the built-in table offline); with `ATOMIC_ONLY` the same
merge serves for YAML documents inside a ConfigMap, where no list has a key. `missing_entries` is
the other way a YAML list inside a ConfigMap is edited: a union that appends, never replaces.

Results share no structure with the inputs (values are copied where they are taken over), so a
caller may change a merged object without touching the live object it came from.
"""

from __future__ import annotations

import copy
from typing import Any

from .fieldpath import get_at, split_path
from .mergekeys import MergeKeys
from .model import Obj


def merge_partial(base: Any, partial: Any, keys: MergeKeys, field: str | None = None) -> Any:
    """Merge a partial object into `base` the way server-side apply does for harden's fields:
    mappings merge, keyed lists merge entry by entry, atomic lists are replaced."""
    if isinstance(base, dict) and isinstance(partial, dict):
        out = dict(base)
        for k, v in partial.items():
            out[k] = merge_partial(base.get(k), v, keys, k) if k in base else copy.deepcopy(v)
        return out
    key = keys.key(field)
    if isinstance(base, list) and isinstance(partial, list) and key:
        out_list = [copy.deepcopy(x) for x in base]
        index = {x.get(key): i for i, x in enumerate(out_list) if isinstance(x, dict)}
        for item in partial:
            k = item.get(key) if isinstance(item, dict) else None
            if k in index:
                out_list[index[k]] = merge_partial(out_list[index[k]], item, keys, None)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(partial)


def select_paths(body: Obj, paths: list[str], keys: MergeKeys) -> Obj:
    """The part of `body` at the given field paths (keyed-list entries kept with their key)."""
    out: Obj = {}
    for text in paths:
        path = split_path(text)
        # Rebuild the path in `out`, innermost value last; a missing value stays None (= remove it).
        value: Any = copy.deepcopy(get_at(body, path))
        for i in range(len(path) - 1, -1, -1):
            p = path[i]
            value = [{p[0]: p[1], **(value if isinstance(value, dict) else {})}] if isinstance(p, tuple) else {p: value}
        out = merge_partial(out, value, keys)
    return out


def restore_shape(live: Any, partial: Any, keys: MergeKeys, field: str | None = None) -> Any:
    """What `live` holds at the fields of `partial`, with None where it holds nothing: a
    strategic-merge patch that puts those fields back as they were."""
    if isinstance(partial, dict):
        live = live if isinstance(live, dict) else {}
        return {k: (restore_shape(live.get(k), v, keys, k) if k in live else None) for k, v in partial.items()}
    key = keys.key(field)
    if isinstance(partial, list) and key:
        by_key = {x.get(key): x for x in (live or []) if isinstance(x, dict)}
        return [{key: p.get(key), **{k: v for k, v in restore_shape(by_key.get(p.get(key), {}), p, keys, None).items()
                                     if k != key}}
                for p in partial if isinstance(p, dict) and p.get(key) in by_key]
    return copy.deepcopy(live)


def _canonical(value: Any) -> Any:
    """A hashable form of a YAML value in which the order of list members, an absent key, a null and
    an empty list do not count: how entries of a list of filters compare as sets."""
    if isinstance(value, dict):
        return frozenset((k, _canonical(v)) for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return frozenset(_canonical(v) for v in value)
    return value


def missing_entries(current: list[Any], wanted: list[Any]) -> list[Any]:
    """The entries of `wanted` that `current` does not hold yet, in `wanted`'s order, each once.

    Entries compare as sets (`_canonical`): `{kinds: [A, B]}` is already present as
    `{kinds: [B, A]}`. Nothing of `current` is ever dropped or rewritten: the caller appends the
    result, so entries another actor wrote stay as they are.
    """
    seen = {_canonical(x) for x in current}
    out = []
    for entry in wanted:
        c = _canonical(entry)
        if c not in seen:
            seen.add(c)
            out.append(copy.deepcopy(entry))
    return out
