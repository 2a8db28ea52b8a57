"""Regenerate `kubernetes.schema.json` from a Kubernetes API server's OpenAPI v3 documents.

    python -m harden.schema.trim_openapi DIR > harden/schema/kubernetes.schema.json

DIR holds the documents served at /openapi/v3/api/v1 (core.json),
/openapi/v3/apis/networking.k8s.io/v1 (networking.json) and
/openapi/v3/apis/rbac.authorization.k8s.io/v1 (rbac.json), /openapi/v3/apis/apps/v1 (apps.json),
and /version (version.json). The shipped copy was read from the kube-apiserver v1.36.3 the integration tests
build (tests/kube);
the same documents are in kubernetes/kubernetes at api/openapi-spec/v3/.

Trimmed to the kinds profiles declare and to what validation uses (types, properties, items,
required, enum); descriptions and defaults are dropped. Two facts the OpenAPI leaves to prose are
added, each citing its upstream source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KINDS = {
    "NetworkPolicy": ("networking", "networking.k8s.io/v1", "io.k8s.api.networking.v1.NetworkPolicy"),
    "Role": ("rbac", "rbac.authorization.k8s.io/v1", "io.k8s.api.rbac.v1.Role"),
    "ClusterRole": ("rbac", "rbac.authorization.k8s.io/v1", "io.k8s.api.rbac.v1.ClusterRole"),
    "RoleBinding": ("rbac", "rbac.authorization.k8s.io/v1", "io.k8s.api.rbac.v1.RoleBinding"),
    "ClusterRoleBinding": ("rbac", "rbac.authorization.k8s.io/v1", "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    "ServiceAccount": ("core", "v1", "io.k8s.api.core.v1.ServiceAccount"),
    "ConfigMap": ("core", "v1", "io.k8s.api.core.v1.ConfigMap"),
    "Secret": ("core", "v1", "io.k8s.api.core.v1.Secret"),
    # Patch targets only: `set` patches on them are checked against their schema.
    "Deployment": ("apps", "apps/v1", "io.k8s.api.apps.v1.Deployment"),
    "StatefulSet": ("apps", "apps/v1", "io.k8s.api.apps.v1.StatefulSet"),
    "DaemonSet": ("apps", "apps/v1", "io.k8s.api.apps.v1.DaemonSet"),
}
_PREFIX = "#/components/schemas/"
_KEEP = ("type", "required", "enum")


def trim(node: dict[str, Any], refs: set[str]) -> dict[str, Any]:
    if "$ref" in node:
        refs.add(node["$ref"].removeprefix(_PREFIX))
        return {"$ref": "#/$defs/" + node["$ref"].removeprefix(_PREFIX)}
    if len(node.get("allOf", [])) == 1:
        return trim(node["allOf"][0], refs)
    if node.get("format") == "int-or-string":
        return {"type": ["integer", "string"]}
    out = {k: node[k] for k in _KEEP if k in node}
    if "properties" in node:
        out["properties"] = {k: trim(v, refs) for k, v in node["properties"].items()}
        # Server-side apply refuses a field the schema does not declare ("field not declared in
        # schema", sigs.k8s.io/structured-merge-diff typed/validate.go): so does validation.
        out["additionalProperties"] = False
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = trim(node["additionalProperties"], refs)
    if "items" in node:
        out["items"] = trim(node["items"], refs)
    return out


def build(src: Path) -> dict[str, Any]:
    docs = {name: json.loads((src / f"{name}.json").read_text())["components"]["schemas"]
            for name in ("core", "networking", "rbac", "apps")}
    version = json.loads((src / "version.json").read_text())["gitVersion"]
    defs: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    for kind, (doc, api_version, name) in KINDS.items():
        pending = {name}
        while pending:
            ref = pending.pop()
            if ref in defs:
                continue
            found: set[str] = set()
            defs[ref] = trim(docs[doc][ref], found)
            pending |= found - set(defs)
        kinds[kind] = {"apiVersion": api_version, "schema": "#/$defs/" + name}
    # Operators: LabelSelectorOperator constants, staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go.
    requirement = defs["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"]
    requirement["properties"]["operator"]["enum"] = ["In", "NotIn", "Exists", "DoesNotExist"]
    # harden writes no secret values, so the only Secret a profile may declare is a token request,
    # filled in by the token controller: type kubernetes.io/service-account-token
    # (SecretTypeServiceAccountToken, staging/src/k8s.io/api/core/v1/types.go), no data.
    secret = defs["io.k8s.api.core.v1.Secret"]
    for key in ("data", "stringData"):
        secret["properties"].pop(key)
    secret["properties"]["type"] = {"const": "kubernetes.io/service-account-token"}
    secret["required"] = ["type"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://harden.dev/schema/kubernetes.schema.json",
        "description": f"Kubernetes {version} OpenAPI v3 (/openapi/v3/api/v1, /openapi/v3/apis/networking.k8s.io/v1, "
                       "/openapi/v3/apis/rbac.authorization.k8s.io/v1, /openapi/v3/apis/apps/v1), "
                       "trimmed by harden/schema/trim_openapi.py "
                       "to the kinds profiles declare",
        "kinds": kinds,
        "$defs": dict(sorted(defs.items())),
    }


if __name__ == "__main__":
    print(json.dumps(build(Path(sys.argv[1])), separators=(",", ":"), sort_keys=False))
