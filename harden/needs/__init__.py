"""What each Argo component needs to keep working, as data (one YAML file per product).

Every fact in these files names the upstream manifest or source file it comes from. The files are
read once, here; the install graph (harden/graph.py) uses their label sets to find components,
and harden/impact/needs.py evaluates their needs on the state a plan would produce.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..graph import ComponentSpec, LabelMatch


def _spec(product: str, c: dict[str, Any]) -> ComponentSpec:
    workload = c.get("workload") or {}
    matches = tuple(LabelMatch(tuple(sorted((str(k), str(v)) for k, v in m["labels"].items())),
                               m.get("layout", ""), m.get("source", ""))
                    for m in workload.get("match") or [])
    return ComponentSpec(product, c["name"], workload.get("kind"), matches, tuple(c.get("needs") or ()),
                         c.get("pods"))


@cache
def component_specs() -> tuple[ComponentSpec, ...]:
    out: list[ComponentSpec] = []
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            # libyaml's safe loader where PyYAML has it: the same data from these shipped files, 10x
            # faster (40 ms less in every plan process, issue 10); the pure-Python one otherwise.
            data = yaml.load(entry.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            out += [_spec(data["product"], c) for c in data.get("components") or []]
    return tuple(out)


def products() -> frozenset[str]:
    return frozenset(s.product for s in component_specs())
