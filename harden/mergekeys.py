"""mergekeys: which lists are keyed (merged entry by entry), which are sets, which are atomic. Pure.

Server-side apply merges a list according to its schema: a `map` list entry by entry by its key
(containers by `name`, volumeMounts by `mountPath`), a `set` by value, an `atomic` list whole. The
diff, the merge and the ownership reading must follow the same rules as the server, or harden would
report drift where the server sees none (or miss an entry another actor appended).

The authority is the cluster's own OpenAPI v3: `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`,
and for older built-in fields `x-kubernetes-patch-strategy: merge` with `x-kubernetes-patch-merge-key`.
`from_openapi` extracts a table from those documents (read once per plan, through `harden.kube`);
`BUILTIN` is the table used offline (snapshot mode) and for anything the cluster's schemas leave
undecided. The table is plain data handed to the pure stages; none of them reads a global.

The table is keyed by field name, not by schema path: harden's lists are recognised by the name of
the field that holds them (`containers`), and within the kinds in play a name means one thing. A
name the schemas use with different list semantics is left to `BUILTIN`, and a compound key
(container `ports` by containerPort+protocol) is treated as atomic: compared whole, which can only
show more drift, never hide it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any


class ListType(str, Enum):
    ATOMIC = "atomic"
    SET = "set"
    MAP = "map"


@dataclass(frozen=True)
class MergeKeys:
    """Field name -> merge key of its keyed list; `sets`: lists compared as sets. Others are atomic."""

    keyed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sets: frozenset[str] = frozenset()

    def key(self, field_name: Any) -> str | None:
        return self.keyed.get(field_name) if isinstance(field_name, str) else None

    def over(self, fallback: MergeKeys, decided: Iterable[str]) -> MergeKeys:
        """This table for the fields in `decided`, `fallback` for every other field."""
        decided = set(decided)
        keyed = {f: k for f, k in fallback.keyed.items() if f not in decided} | dict(self.keyed)
        sets = frozenset(f for f in fallback.sets if f not in decided) | self.sets
        return MergeKeys(MappingProxyType(keyed), sets)


# The keyed lists harden touches, as the Kubernetes API declares them (the fields' `+listType=map`
# / `+listMapKey` markers in k8s.io/api core/v1/types.go: PodSpec.containers, initContainers,
# ephemeralContainers, volumes by name; Container.env by name, Container.volumeMounts by mountPath).
BUILTIN = MergeKeys(MappingProxyType({
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath",
}))

# Every list atomic: structure that is not a Kubernetes object (YAML inside a ConfigMap value).
ATOMIC_ONLY = MergeKeys()


def list_semantics(prop: Mapping[str, Any]) -> tuple[ListType, str | None]:
    """How server-side apply treats an array schema: (type, single merge key or None).

    Mirrors kubernetes/kube-openapi pkg/schemaconv/smd.go (`VisitArray`): `x-kubernetes-list-type`
    decides when present (`map` keyed by `x-kubernetes-list-map-keys`); otherwise a list with
    `x-kubernetes-patch-strategy: merge` is associative by `x-kubernetes-patch-merge-key`; otherwise
    it is atomic.
    """
    list_type = prop.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = prop.get("x-kubernetes-list-map-keys") or []
        return (ListType.MAP, keys[0]) if len(keys) == 1 else (ListType.ATOMIC, None)
    if list_type == "set":
        return ListType.SET, None
    if list_type is None and prop.get("x-kubernetes-patch-strategy") == "merge" \
            and isinstance(prop.get("x-kubernetes-patch-merge-key"), str):
        return ListType.MAP, prop["x-kubernetes-patch-merge-key"]
    return ListType.ATOMIC, None


def openapi_paths(kinds: Iterable[tuple[str, str]]) -> list[str]:
    """The OpenAPI v3 documents that describe these (apiVersion, kind) pairs, one per group-version."""
    return sorted({"/openapi/v3/api/v1" if api_version == "v1" else f"/openapi/v3/apis/{api_version}"
                   for api_version, _ in kinds})


def from_openapi(docs: Iterable[Mapping[str, Any]], kinds: Iterable[tuple[str, str]],
                 fallback: MergeKeys = BUILTIN) -> MergeKeys:
    """The merge-key table of the given kinds, read from OpenAPI v3 documents (`components.schemas`).

    Only schemas reachable from those kinds' root schemas count, so a field name used elsewhere with
    other semantics cannot change how harden reads the objects it handles.
    """
    wanted = {(_group_version(v), k) for v, k in kinds}
    seen: dict[str, set[tuple[ListType, str | None]]] = {}
    for doc in docs:
        schemas = (doc.get("components") or {}).get("schemas") or {}
        roots = [name for name, s in schemas.items()
                 if any(((g.get("group") or "", g.get("version") or ""), g.get("kind")) in wanted
                        for g in s.get("x-kubernetes-group-version-kind") or [])]
        visited: set[str] = set()
        for name in roots:
            _walk(schemas, schemas[name], visited, seen)
    decided = {f: s.pop() for f, s in seen.items() if len(s) == 1}
    found = MergeKeys(MappingProxyType({f: k for f, (t, k) in decided.items() if t is ListType.MAP and k}),
                      frozenset(f for f, (t, _) in decided.items() if t is ListType.SET))
    return found.over(fallback, decided)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _walk(schemas: Mapping[str, Any], schema: Mapping[str, Any], visited: set[str],
          seen: dict[str, set[tuple[ListType, str | None]]]) -> None:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in visited and name in schemas:
            visited.add(name)
            _walk(schemas, schemas[name], visited, seen)
    for sub in (schema.get("allOf") or []) + (schema.get("anyOf") or []) + (schema.get("oneOf") or []):
        _walk(schemas, sub, visited, seen)
    for name, prop in (schema.get("properties") or {}).items():
        if prop.get("type") == "array":
            seen.setdefault(name, set()).add(list_semantics(prop))
        _walk(schemas, prop, visited, seen)
    for sub in (schema.get("items"), schema.get("additionalProperties")):
        if isinstance(sub, dict):
            _walk(schemas, sub, visited, seen)
