"""fieldpath: how harden names a field inside an object, as text and as a list. Pure.

A path is a list of steps: a mapping key (`"spec"`), a list index (`0`), or a keyed-list entry
named by its merge key (`("name", "argo-server")`). The text form is what plans, state and profiles
carry (`spec.template.spec.containers[name=argo-server].args`, `data["server.tls.minversion"]`);
`path_text` writes it and `split_path` reads it back, so the two round-trip.

Entries of keyed lists are named by key rather than position because positions move: another actor
inserting a sidecar would otherwise make a recorded `containers[0]` name someone else's container.
`get_at` is the one walk over a path; everything that reads a field by path goes through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

Step = str | int | tuple[str, Any]

_PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")
_TOKEN = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\[([A-Za-z]+)=([^\]]*)\]')


def path_text(path: Sequence[Step]) -> str:
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


def split_path(text: str) -> list[Step]:
    out: list[Step] = []
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


def step(node: Any, p: Step) -> Any:
    """One step down from `node`; None where there is nothing (a missing key, index or entry)."""
    if isinstance(p, tuple):
        if not isinstance(node, list):
            return None
        return next((x for x in node if isinstance(x, dict) and x.get(p[0]) == p[1]), None)
    if isinstance(p, int):
        return node[p] if isinstance(node, list) and 0 <= p < len(node) else None
    return node.get(p) if isinstance(node, dict) else None


def get_at(obj: Any, path: Sequence[Step] | str) -> Any:
    """The value at `path` in `obj` (a path list or its text), or None if any step finds nothing."""
    node = obj
    for p in split_path(path) if isinstance(path, str) else path:
        node = step(node, p)
        if node is None:
            return None
    return node
