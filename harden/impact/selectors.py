"""Kubernetes label selectors (``metav1.LabelSelector``) over plain dicts.

Also home of :func:`flatten_objects`, the one object-normalisation helper
both analyses need.

Shared by :mod:`harden.impact.rbac` (ClusterRole ``aggregationRule``) and
:mod:`harden.impact.netpol` (``podSelector`` / ``namespaceSelector``).

Design decisions
----------------
* Semantics follow ``metav1.LabelSelectorAsSelector``: an *empty* selector
  (``{}``) matches everything; a *missing* selector (``None``) matches nothing.
  Callers that have other rules for a missing selector (NetworkPolicy peers,
  where "absent" means "not part of this peer") decide that before calling.
* ``matchLabels`` and every ``matchExpressions`` entry are ANDed.
* ``NotIn`` and ``DoesNotExist`` match objects that do not carry the key at
  all -- that is how ``k8s.io/apimachinery/pkg/labels`` behaves and a common
  source of surprises, so it is tested explicitly.
* An unknown operator is an error (the API server rejects such selectors); we
  raise :class:`ValueError` instead of silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["selector_matches", "labels_of", "flatten_objects"]

_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Return whether ``labels`` satisfy the LabelSelector dict ``selector``."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    return all(_expression_matches(expr, labels) for expr in selector.get("matchExpressions") or ())


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator", "")
    values = {str(v) for v in (expr.get("values") or ())}
    if op not in _OPERATORS:
        raise ValueError(f"unsupported label selector operator {op!r} for key {key!r}")
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        # apimachinery: a missing key satisfies NotIn.
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    return not present  # DoesNotExist


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """``metadata.labels`` of an object dict as ``dict[str, str]`` (never None)."""
    if not obj:
        return {}
    meta = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def flatten_objects(objects: Iterable[Mapping[str, Any] | None]) -> Iterator[Mapping[str, Any]]:
    """Yield object dicts, expanding ``kind: List`` / ``*List`` wrappers.

    ``kubectl get -o yaml`` returns a ``List`` with ``items``; multi-document
    YAML yields ``None`` for empty documents. Both are normalised here so every
    analysis accepts whatever the loader produced.
    """
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        kind = str(obj.get("kind") or "")
        if kind.endswith("List") and isinstance(obj.get("items"), list):
            yield from flatten_objects(obj["items"])
        else:
            yield obj
