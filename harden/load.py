"""load: parse and validate profiles, stacks and parameter values.

Nothing here knows about clusters. Every problem in the input is collected and reported at once
(file, line, field, fix hint) before anything else runs. Structure is checked by the JSON Schemas
shipped in `harden/schema/`; what a schema cannot say (a CIDR parses, a port is in range, a
parameter exists) is checked here with the standard library's parsers.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .checks import WITH_SCHEMAS
from .errors import Diagnostic, Diagnostics, InputError
from .yamlsrc import Document, PathT, dotted, load_documents, load_file

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


# `harden review` plans each revision with that revision's built-in profiles.
_builtins_override: ContextVar[Path | None] = ContextVar("builtins_override", default=None)


@contextmanager
def builtin_profiles_from(directory: Path) -> Iterator[None]:
    token = _builtins_override.set(directory)
    try:
        yield
    finally:
        _builtins_override.reset(token)


def builtin_profiles_dir() -> Path:
    """The built-in profiles: `profiles/` beside the package in a checkout (an editable install),
    else the copy installed inside the package as `harden.builtin_profiles`."""
    override = _builtins_override.get()
    if override is not None:
        return override
    here = Path(__file__).resolve().parent
    checkout = here.parent / "profiles"
    return checkout if checkout.is_dir() else here / "builtin_profiles"


@cache
def schema(name: str) -> dict:
    return json.loads(resources.files("harden").joinpath("schema", f"{name}.schema.json").read_text())


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    doc: Document
    parameters: dict[str, dict]  # name -> declaration

    @property
    def data(self) -> dict:
        return self.doc.data

    @property
    def file(self) -> str:
        return self.doc.file

    def line(self, *path: Any) -> int:
        return self.doc.line_of(path)


@dataclass(frozen=True)
class Selected:
    """One profile with its parameter values resolved and validated."""

    profile: Profile
    values: dict[str, Any]
    given: frozenset[str] = frozenset()  # parameters the user set (detection never overrides them)


@dataclass(frozen=True)
class Selection:
    stack: str
    items: tuple[Selected, ...]
    description: dict = field(default_factory=dict)


def schema_diagnostics(doc: Document, schema: dict, *, at: PathT = (), templated: bool = False,
                       partial: bool = False) -> list[Diagnostic]:
    """Schema errors of the value at `at` in `doc`, with their lines. `templated`: the value is a
    template, where a whole-string `${name}` stands for a value of any type (it is substituted by
    a typed value at render) and passes any type check. `partial`: the value is a part of an
    object (a `set` patch), so no field is required."""
    out = []
    value = doc.data
    for key in at:
        value = value[key]
    cls = _PartialValidator if partial else _TemplateValidator if templated else jsonschema.Draft202012Validator
    validator = cls(schema)
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        path: PathT = at + tuple(err.absolute_path)
        message = err.message
        hint = None
        if err.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", message.split("(")[-1]) if "(" in message else []
            if extra:
                path = path + (extra[0],)
                allowed = sorted((err.schema.get("properties") or {}).keys())
                message = f"unknown key {extra[0]!r}"
                hint = f"allowed keys here: {', '.join(allowed)}"
        elif err.validator == "type":
            hint = f"expected {err.validator_value}"
        elif err.validator in ("enum", "const"):
            hint = f"use one of: {err.validator_value}" if err.validator == "enum" else f"use {err.validator_value!r}"
        elif err.validator == "required":
            hint = "add the missing key"
        out.append(Diagnostic(message, file=doc.file, line=doc.line_of(path),
                              field=dotted(path) or None, hint=hint))
    return out


def whole_reference(value: str) -> str | None:
    """`name` of a string that is exactly `${name}`: render substitutes the typed value for it."""
    stripped = value.strip()
    if stripped.startswith("${") and stripped.endswith("}") and stripped.count("${") == 1:
        return stripped[2:-1]
    return None


_Errors = Iterator[jsonschema.ValidationError]


def _skip_references(check: Callable[..., Iterable[jsonschema.ValidationError] | None]) -> Callable[..., _Errors]:
    def validate(validator: Any, value: Any, instance: Any, schema: Any) -> _Errors:
        if isinstance(instance, str) and whole_reference(instance) is not None:
            return
        yield from check(validator, value, instance, schema) or ()
    return validate


_TemplateValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {k: _skip_references(jsonschema.Draft202012Validator.VALIDATORS[k])
     for k in ("type", "enum", "const", "pattern", "format", "minLength", "maxLength")})


_PartialValidator = jsonschema.validators.extend(_TemplateValidator, {"required": lambda *_: None})

LIST_TYPES = {"stringList", "cidrList", "portList", "peerList", "resourceFilterList"}
# What a profile may declare as an object; kubernetes.schema.json also holds the kinds profiles
# patch (Deployment, StatefulSet, DaemonSet), whose `set` patches are checked against it.
OBJECT_KINDS = ("NetworkPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount",
                "ConfigMap", "Secret")


def kubernetes_kinds() -> dict[str, dict]:
    return schema("kubernetes")["kinds"]


@cache
def kind_schema(kind: str) -> dict:
    """The schema of an object of `kind` in a profile: the Kubernetes object plus harden's switches."""
    full = schema("kubernetes")
    root = dict(full["$defs"][full["kinds"][kind]["schema"].removeprefix("#/$defs/")])
    root["properties"] = {**root["properties"], "when": {}, "forEach": {}}
    return {"$defs": full["$defs"], **root}


def _object_problems(doc: Document, i: int, obj: dict, params: dict[str, dict]) -> list[Diagnostic]:
    """An object is a Kubernetes object of a kind harden manages, shaped as its OpenAPI schema says."""
    at = ("objects", i)
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    kinds = kubernetes_kinds()
    if kind == "Secret" and (obj.get("type") != SA_TOKEN_TYPE or {"data", "stringData"} & set(obj)):
        return []  # refused on its own, with the reason; a token Secret is checked like any object
    if kind not in OBJECT_KINDS:
        return [Diagnostic(f"harden does not manage objects of kind {kind!r}", file=doc.file,
                           line=doc.line_of(at + ("kind",)), field=dotted(at + ("kind",)),
                           hint=f"kinds a profile may declare: {', '.join(k for k in OBJECT_KINDS if k != 'Secret')}")]
    if api_version != kinds[kind]["apiVersion"]:
        return [Diagnostic(f"{kind} is served as apiVersion {kinds[kind]['apiVersion']}, not {api_version!r}",
                           file=doc.file, line=doc.line_of(at + ("apiVersion",)), field=dotted(at + ("apiVersion",)),
                           hint=f"write apiVersion: {kinds[kind]['apiVersion']}")]
    problems = []
    loop = obj.get("forEach")
    if loop is not None:
        decl = params.get(loop["parameter"])
        if decl is None or decl["type"] not in LIST_TYPES:
            what = "an undeclared parameter" if decl is None else f"a {decl['type']} parameter"
            lists = ", ".join(n for n, d in params.items() if d["type"] in LIST_TYPES) or "(none declared)"
            problems.append(Diagnostic(f"forEach over {what} ({loop['parameter']!r}); it needs a list",
                                       file=doc.file, line=doc.line_of(at + ("forEach", "parameter")),
                                       field=dotted(at + ("forEach", "parameter")),
                                       hint="name a parameter of type " + ", ".join(sorted(LIST_TYPES)) + f": {lists}"))
    for d in schema_diagnostics(doc, kind_schema(kind), at=at, templated=True):
        problems.append(replace(d, hint=d.hint or f"see `kubectl explain {kind.lower()} --recursive`"))
    return problems


def _target_kinds(doc: Document, target: dict) -> set[str]:
    """The kinds a target can be: its candidates', or those of the component object it names."""
    if "component" not in target:
        return {c["kind"] for c in target.get("candidates", [])}
    if target.get("object") == "configMap":
        return {"ConfigMap"}
    if target.get("object") in ("roles", "clusterRoles"):
        return {"ClusterRole"} | ({"Role"} if target["object"] == "roles" else set())
    from .needs import component_specs

    product = (doc.data.get("metadata") or {}).get("product")
    return {s.kind for s in component_specs() if s.product == product and s.name == target["component"] and s.kind}


def _set_problems(doc: Document, i: int, patch: dict, target: dict | None) -> list[Diagnostic]:
    """A `set` patch is part of an object of its target's kind (each candidate's, if they differ)."""
    if "set" not in patch or target is None:
        return []
    out: list[Diagnostic] = []
    for kind in sorted(_target_kinds(doc, target) & set(kubernetes_kinds())):
        for d in schema_diagnostics(doc, kind_schema(kind), at=("patches", i, "set"), partial=True):
            d = replace(d, hint=d.hint or f"see `kubectl explain {kind.lower()} --recursive`")
            if d not in out:
                out.append(d)
    return out


class Placeholders(string.Template):
    """`${name}`, `${name.key}` and `$name` in profile strings; `$$` is a literal `$`."""

    idpattern = r"[a-zA-Z][a-zA-Z0-9]*(?:\.[-a-zA-Z0-9_./]+)?"


# What render substitutes: everything but the profile's own metadata, its parameters, and the
# `when`/`forEach` switches (read as written).
_TEMPLATED = ("objects", "targets", "patches", "checks", "expect")


def _placeholder_problems(doc: Document, params: dict[str, dict], loop_vars: set[str]) -> list[Diagnostic]:
    problems = []
    for section in _TEMPLATED:
        for path, text in strings_in(doc.data.get(section), (section,)):
            if path[2:3] in (("when",), ("forEach",)):
                continue
            if "${" not in text:
                continue  # render templates only strings with a `${`: a lone `$` elsewhere is literal
            for m in Placeholders.pattern.finditer(text):
                if m.group("invalid") is not None:
                    problems.append(Diagnostic(f"broken placeholder at {text[m.start():m.start() + 12]!r}",
                                               file=doc.file, line=doc.line_of(path), field=dotted(path),
                                               hint="write ${name} with a declared parameter name, "
                                                    "or $$ for a literal $"))
                    break  # what follows a broken placeholder cannot be read reliably
                ref = m.group("named") or m.group("braced")
                if ref is None:
                    continue
                name, dot, key = ref.partition(".")
                if name == "graph":
                    continue  # ${graph.COMPONENT.FIELD}: checked by _graph_diagnostics
                if name not in params and name not in loop_vars:
                    problems.append(Diagnostic(f"reference to undeclared parameter ${{{ref}}}", file=doc.file,
                                               line=doc.line_of(path), field=dotted(path),
                                               hint="declare it under parameters, or use one of: "
                                                    + (", ".join(params) or "(none)")))
                elif dot and name in params and params[name]["type"] not in ("labelSelector", "peer"):
                    kind_of = params[name]["type"]
                    problems.append(Diagnostic(f"${{{ref}}}: parameter {name!r} is a {kind_of}, which has no keys",
                                               file=doc.file, line=doc.line_of(path), field=dotted(path),
                                               hint="only labelSelector and peer parameters have keys "
                                                    "(${peer.namespace})"))
    return problems


def strings_in(value: Any, path: PathT = ()) -> Iterator[tuple[PathT, str]]:
    """(path, text) of every string in a tree of mappings and lists."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings_in(v, path + (i,))


def parse_profile(doc: Document) -> Profile:
    problems = schema_diagnostics(doc, schema("profile"))
    if problems:
        raise Diagnostics(problems)
    data = doc.data
    params = {p["name"]: p for p in data.get("parameters", [])}
    profile = Profile(data["metadata"]["name"], data["metadata"]["title"], doc, params)
    # Defaults must themselves be valid values, and `${x}` references must name declared parameters.
    for i, decl in enumerate(data.get("parameters", [])):
        if "default" in decl:
            try:
                if decl["type"] in LIST_TYPES and not isinstance(decl["default"], list):
                    # `a,b` splits into a list only on the command line, where lists are awkward to type.
                    raise ValueError(f"expected a YAML list like [a, b], got {decl['default']!r}")
                coerce(decl, decl["default"])
            except ValueError as exc:
                problems.append(Diagnostic(f"default of parameter {decl['name']!r} is invalid: {exc}",
                                           file=doc.file, line=doc.line_of(("parameters", i, "default")),
                                           field=f"parameters[{i}].default", hint=TYPE_HINTS[decl["type"]]))
    loop_vars = {o["forEach"]["as"] for o in data.get("objects", []) if "forEach" in o}
    problems += _graph_diagnostics(doc)
    problems += _placeholder_problems(doc, params, loop_vars)
    for i, obj in enumerate(data.get("objects", [])):
        problems += _object_problems(doc, i, obj, params)
    targets = {t["id"]: t for t in data.get("targets", [])}
    for i, patch in enumerate(data.get("patches", [])):
        problems += _set_problems(doc, i, patch, targets.get(patch["target"]))
    for section in ("objects", "patches", "expect"):
        for i, item in enumerate(data.get(section, [])):
            if "when" in item and item["when"]["parameter"] not in params:
                at = (section, i, "when", "parameter")
                problems.append(Diagnostic(f"when: names undeclared parameter {item['when']['parameter']!r}",
                                           file=doc.file, line=doc.line_of(at), field=dotted(at),
                                           hint=f"use one of: {', '.join(params) or '(none declared)'}"))
    for i, c in enumerate(data.get("checks", [])):
        if c["check"] not in WITH_SCHEMAS:
            problems.append(Diagnostic(f"unknown check {c['check']!r}", file=doc.file,
                                       line=doc.line_of(("checks", i, "check")), field=f"checks[{i}].check",
                                       hint=f"checks: {', '.join(sorted(WITH_SCHEMAS))}"))
            continue
        with_doc = Document(c.get("with", {}), doc.file,
                            {p[3:]: n for p, n in doc.lines.items() if p[:3] == ("checks", i, "with")},
                            doc.line_of(("checks", i, "with") if "with" in c else ("checks", i)))
        for d in schema_diagnostics(with_doc, WITH_SCHEMAS[c["check"]], templated=True):
            problems.append(Diagnostic(d.summary, file=d.file, line=d.line,
                                       field=f"checks[{i}].with" + (f".{d.field}" if d.field else ""), hint=d.hint))
    target_ids = {t["id"] for t in data.get("targets", [])}
    # Secrets stay out of harden's reach: their values would land in plans and state.
    for i, obj in enumerate(data.get("objects", [])):
        # The one Secret harden may own: a service account's token Secret, which holds no value a
        # profile writes (the token controller fills it in; observe redacts it like any Secret).
        if obj.get("kind") == "Secret" and obj.get("type") == SA_TOKEN_TYPE and not ({"data", "stringData"} & set(obj)):
            continue
        if obj.get("kind") == "Secret":
            problems.append(Diagnostic("harden does not manage Secrets (their values would appear in plans and state)",
                                       file=doc.file, line=doc.line_of(("objects", i, "kind")),
                                       field=f"objects[{i}].kind",
                                       hint="create Secrets with your secret manager; reference them by name "
                                            "(harden owns only kubernetes.io/service-account-token Secrets, "
                                            "without data)"))
    for i, t in enumerate(data.get("targets", [])):
        for j, c in enumerate(t.get("candidates", [])):
            if c.get("kind") == "Secret":
                problems.append(Diagnostic("harden does not patch Secrets "
                                           "(their values would appear in plans and state)",
                                           file=doc.file, line=doc.line_of(("targets", i, "candidates", j, "kind")),
                                           field=f"targets[{i}].candidates[{j}].kind",
                                           hint="patch the objects that use the Secret instead"))
    targets_hint = f"declare it under targets ({', '.join(sorted(target_ids)) or 'none declared'})"
    for i, decl in enumerate(data.get("parameters", [])):
        detect = decl.get("detect") or {}
        if "detect" in decl and "target" not in detect and detect["from"] in ("podSelector", "namespace"):
            problems.append(Diagnostic(f"parameter {decl['name']!r} detects {detect['from']} but names no target",
                                       file=doc.file, line=doc.line_of(("parameters", i, "detect")),
                                       field=f"parameters[{i}].detect", hint="add target: ID"))
        elif "detect" in decl and "target" in detect and detect["target"] not in target_ids:
            problems.append(Diagnostic(f"parameter {decl['name']!r} detects from unknown target {detect['target']!r}",
                                       file=doc.file, line=doc.line_of(("parameters", i, "detect")),
                                       field=f"parameters[{i}].detect.target", hint=targets_hint))
    for i, patch in enumerate(data.get("patches", [])):
        if patch["target"] not in target_ids:
            problems.append(Diagnostic(f"patch names unknown target {patch['target']!r}", file=doc.file,
                                       line=doc.line_of(("patches", i, "target")), field=f"patches[{i}].target",
                                       hint=targets_hint))
    if problems:
        raise Diagnostics(problems)
    return profile


SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
_GRAPH_REF = re.compile(r"\$\{graph\.([-a-z0-9]+)\.([A-Za-z]+)\}")
GRAPH_FIELDS = ("subject", "serviceAccount", "namespace", "podLabels", "selector", "name")


def _graph_diagnostics(doc: Document) -> list[Diagnostic]:
    """`${graph.COMPONENT.FIELD}` and component targets must name a component of the profile's product."""
    from .needs import component_specs

    data = doc.data
    product = (data.get("metadata") or {}).get("product")
    known = {s.name for s in component_specs() if s.product == product}
    out: list[Diagnostic] = []

    def unknown(component: str, path: PathT) -> None:
        if not product:
            out.append(Diagnostic("a profile that uses the install graph must name its product",
                                  file=doc.file, line=doc.line_of(path), field=dotted(path),
                                  hint="add metadata.product: argo-workflows (or argo-cd)"))
        elif component not in known:
            out.append(Diagnostic(f"{product} has no component {component!r}", file=doc.file,
                                  line=doc.line_of(path), field=dotted(path),
                                  hint=f"use one of: {', '.join(sorted(known))}"))

    for path, text in strings_in(data, ()):
        for m in _GRAPH_REF.finditer(text):
            unknown(m.group(1), path)
            if m.group(2) not in GRAPH_FIELDS:
                out.append(Diagnostic(f"unknown graph field {m.group(2)!r}", file=doc.file, line=doc.line_of(path),
                                      field=dotted(path), hint=f"use one of: {', '.join(GRAPH_FIELDS)}"))
    for i, t in enumerate(data.get("targets") or []):
        if isinstance(t, dict) and "component" in t:
            unknown(str(t["component"]), ("targets", i, "component"))
    return out


def load_profile(ref: str) -> Profile:
    """A built-in profile by name, or a profile file by path."""
    path = Path(ref)
    if not (ref.endswith((".yaml", ".yml")) or "/" in ref):
        # A built-in name is a profile name (a DNS label): anything else, e.g. a name longer than a
        # file name may be, is no built-in, not a file system error.
        path = builtin_profiles_dir() / f"{ref}.yaml"
        if not (DNS_LABEL.match(ref) and len(ref) <= 63 and path.exists()):
            raise InputError(f"unknown profile {ref!r}",
                             hint=f"built-in profiles: {', '.join(builtin_profile_names())}; "
                                  "or pass a path to a profile file")
    docs = load_file(path)
    if len(docs) != 1:
        raise InputError(f"a profile file holds exactly one YAML document, found {len(docs)}", file=str(path),
                         line=docs[1].start_line if docs else 1, hint="put each profile in a file of its own")
    return parse_profile(docs[0])


def builtin_profile_names() -> list[str]:
    return sorted(p.stem for p in builtin_profiles_dir().glob("*.yaml"))


# -- parameter values -------------------------------------------------------------------------

def _cidr(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a CIDR string like 10.0.0.0/8, got {v!r}")
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(f"{v!r} is not a valid CIDR (write it like 10.0.0.0/8 or 2001:db8::/32)") from None
    if "/" not in v:
        raise ValueError(f"{v!r} has no prefix length (write it like {v}/32)")
    return v


def _port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        else:
            raise ValueError(f"expected a port number 1-65535, got {v!r}")
    if not 1 <= v <= 65535:
        raise ValueError(f"port {v} is out of range (1-65535)")
    return v


def _labels(v: Any) -> dict[str, str]:
    if isinstance(v, str):
        out = {}
        for part in filter(None, (p.strip() for p in v.split(","))):
            if "=" not in part:
                raise ValueError(f"{part!r} is not KEY=VALUE (write a selector like app=postgres,tier=db)")
            k, _, val = part.partition("=")
            out[k.strip()] = val.strip()
        v = out
    if not isinstance(v, dict):
        raise ValueError(f"expected labels as a mapping or KEY=VALUE[,KEY=VALUE], got {v!r}")
    for k, val in v.items():
        if not isinstance(k, str) or not LABEL_KEY.match(k):
            raise ValueError(f"{k!r} is not a valid label key")
        if not isinstance(val, str) or not LABEL_VALUE.match(val):
            raise ValueError(f"label {k}: {val!r} is not a valid label value (quote numbers: \"1\")")
    return dict(v)


def _namespace(v: Any) -> str:
    if not isinstance(v, str) or not DNS_LABEL.match(v) or len(v) > 63:
        raise ValueError(f"{v!r} is not a valid namespace name (lowercase letters, digits, '-')")
    return v


def _ip_block(v: dict) -> dict:
    cidr = _cidr(v["cidr"])
    excepts = v.get("except") or []
    if not isinstance(excepts, list):
        raise ValueError(f"'except' must be a list of CIDRs, got {excepts!r}")
    outer = ipaddress.ip_network(cidr, strict=False)
    out = []
    for x in excepts:
        inner = ipaddress.ip_network(_cidr(x), strict=False)
        # The API server rejects an except outside its cidr (networking validation of IPBlock).
        # typeshed types subnet_of per IP version; the version test before it keeps the pair matched.
        if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
            raise ValueError(f"except {x} is not inside cidr {cidr}")
        out.append(x)
    return {"cidr": cidr, **({"except": out} if out else {})}


def _peer(v: Any) -> dict:
    """A network peer: a CIDR string, or {namespace?, podSelector?} for in-cluster pods."""
    if isinstance(v, str):
        return {"cidr": _cidr(v)}
    if isinstance(v, dict):
        unknown = set(v) - {"namespace", "podSelector", "cidr", "except"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in peer (use cidr, except, namespace, podSelector)")
        if "cidr" in v:
            return _ip_block(v)
        if "except" in v:
            # Without a cidr the peer would fall through to the pod-selector branch and mean every
            # pod: the opposite of "everything except these ranges".
            raise ValueError("'except' needs a 'cidr' to carve the ranges out of, e.g. "
                             "{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}")
        out: dict[str, Any] = {}
        if "namespace" in v:
            out["namespace"] = _namespace(v["namespace"])
        out["podSelector"] = _labels(v.get("podSelector") or {})
        return out
    raise ValueError(f"expected a CIDR or {{namespace, podSelector}}, got {v!r}")


def _resource_filter(v: Any) -> dict:
    """An entry of Argo CD's `resource.exclusions` / `resource.inclusions`: `apiGroups` (globs),
    `kinds` (names or "*"), `clusters` (globs of cluster URLs), each a list of strings, an omitted
    or empty one matching everything (argoproj/argo-cd util/settings/filtered_resource.go,
    FilteredResource and its match* methods)."""
    if not isinstance(v, dict):
        raise ValueError(f"expected {{apiGroups, kinds, clusters}}, got {v!r}")
    unknown = set(v) - {"apiGroups", "kinds", "clusters"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in a resource filter (use apiGroups, kinds, clusters)")
    out: dict[str, list[str]] = {}
    for k in ("apiGroups", "kinds", "clusters"):
        if v.get(k) is None:
            continue
        items = v[k]
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError(f"{k} must be a list of strings, got {items!r} (quote globs: \"*\")")
        if items:
            out[k] = list(items)
    # An entry matching every group, kind and cluster would exclude everything Argo CD manages.
    if all(not out.get(k) or "*" in out[k] for k in ("apiGroups", "kinds", "clusters")):
        raise ValueError(f"{v!r} matches every resource on every cluster; name apiGroups and/or kinds")
    return out


def _typed(kind: type, what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, bool) and kind is not bool:
            raise ValueError(f"expected {what}, got {v!r}")
        if not isinstance(v, kind):
            raise ValueError(f"expected {what}, got {v!r}")
        return v
    return check


def _list_of(inner: Callable[[Any], Any], what: str) -> Callable[[Any], list[Any]]:
    def check(v: Any) -> list[Any]:
        if isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        if not isinstance(v, list):
            raise ValueError(f"expected a list of {what}, got {v!r}")
        return [inner(x) for x in v]
    return check


COERCE = {
    "string": _typed(str, "a string"),
    "namespace": _namespace,
    "cidr": _cidr,
    "cidrList": _list_of(_cidr, "CIDRs"),
    "port": _port,
    "portList": _list_of(_port, "ports"),
    "labelSelector": _labels,
    "peer": _peer,
    "peerList": _list_of(_peer, "peers"),
    "boolean": _typed(bool, "true or false"),
    "integer": _typed(int, "an integer"),
    "stringList": _list_of(_typed(str, "a string"), "strings"),
    "resourceFilterList": _list_of(_resource_filter, "resource filters"),
}


TYPE_HINTS = {
    "string": "give a string", "namespace": "give a namespace name like argo",
    "cidr": "give a CIDR like 10.0.0.0/8", "cidrList": "give CIDRs like [10.0.0.0/8, 192.168.0.0/16]",
    "port": "give a port number from 1 to 65535", "portList": "give port numbers like [443, 6443]",
    "labelSelector": "give labels like app=postgres or {app: postgres}",
    "peer": "give a CIDR like 10.0.0.0/8 or {namespace: argo, podSelector: {app: postgres}}",
    "peerList": "give a list of peers like [10.0.0.0/8, {namespace: apps, podSelector: {app: api}}]",
    "boolean": "give true or false", "integer": "give a whole number", "stringList": "give a list like [a, b]",
    "resourceFilterList": "give a list like [{apiGroups: [certificates.k8s.io], kinds: [CertificateSigningRequest]}]",
}


def coerce(decl: dict, value: Any) -> Any:
    return COERCE[decl["type"]](value)


@dataclass(frozen=True)
class Value:
    """A parameter value and where it was given, for error messages."""

    value: Any
    file: str | None
    line: int | None
    field: str
    raw: str | None = None  # the text of a --set value, before YAML parsing


TEXT_TYPES = {"string", "namespace"}


def resolve_values(profile: Profile, given: dict[str, Value], problems: list[Diagnostic]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, decl in profile.parameters.items():
        if name in given:
            v = given[name]
            # `--set minVersion=1.3` means the text "1.3" for a string parameter, not the number 1.3.
            value = v.value
            if v.raw is not None and decl["type"] in TEXT_TYPES and isinstance(v.value, (int, float, bool)):
                value = v.raw
            try:
                out[name] = coerce(decl, value)
            except ValueError as exc:
                problems.append(Diagnostic(f"parameter {name!r} of profile {profile.name!r}: {exc}",
                                           file=v.file, line=v.line, field=v.field,
                                           hint=decl.get("description") or TYPE_HINTS[decl["type"]]))
        elif "default" in decl:
            out[name] = coerce(decl, decl["default"])
        elif decl.get("required", False):
            i = list(profile.parameters).index(name)
            problems.append(Diagnostic(f"profile {profile.name!r} needs parameter {name!r} ({decl['type']})",
                                       file=profile.file, line=profile.line("parameters", i, "name"),
                                       field=f"parameters.{name}",
                                       hint=f"pass --set {name}=VALUE or set it under `with:` in the stack file"
                                            + (f"; {decl['description']}" if decl.get("description") else "")))
        else:
            out[name] = None
    return out


def parse_set(pairs: list[str], problems: list[Diagnostic]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            problems.append(Diagnostic(f"--set {pair!r} is not KEY=VALUE", field=f"--set {pair}",
                                       hint="write --set namespace=argo "
                                            "or --set metrics-ingress.prometheusNamespace=monitoring"))
            continue
        # Parsed by the same YAML reader as files (no aliases, tags or deep nesting); what it refuses
        # is taken as the text it is, which the parameter's type then accepts or reports.
        try:
            docs = load_documents(raw, f"--set {key}") if raw else []
        except InputError:
            docs = []
        value = docs[0].data if len(docs) == 1 else raw
        out[key.strip()] = Value(value, None, None, f"--set {key}", raw=raw)
    return out


def stack_name(stack_file: str | None) -> str:
    """The stack a selection belongs to (its state file and lock), read before anything else."""
    if not stack_file:
        return "default"
    docs = load_file(stack_file)
    meta = docs[0].data.get("metadata") if docs and isinstance(docs[0].data, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        raise InputError("stack file has no valid metadata.name", file=stack_file,
                         line=docs[0].line_of(("metadata", "name")) if docs else 1, field="metadata.name",
                         hint="name the stack with lowercase letters, digits and '-'")
    return name


def select(profile_refs: list[str], stack_file: str | None, sets: list[str]) -> Selection:
    """Resolve the user's selection (profiles, stack file, --set) into validated profiles and values."""
    problems: list[Diagnostic] = []
    cli_values = parse_set(sets, problems)
    entries: list[tuple[str, dict[str, Value], tuple[str | None, int | None, str]]] = []
    stack_name = "default"
    shared: dict[str, Value] = {}
    if stack_file:
        docs = load_file(stack_file)
        if len(docs) != 1:
            raise InputError(f"a stack file holds exactly one YAML document, found {len(docs)}", file=stack_file,
                             line=docs[1].start_line if docs else 1, hint="put each stack in a file of its own")
        doc = docs[0]
        problems += schema_diagnostics(doc, schema("stack"))
        if problems:
            raise Diagnostics(problems)
        stack_name = doc.data["metadata"]["name"]
        for k, v in (doc.data.get("parameters") or {}).items():
            shared[k] = Value(v, doc.file, doc.line_of(("parameters", k)), f"parameters.{k}")
        for i, entry in enumerate(doc.data["profiles"]):
            with_values = {k: Value(v, doc.file, doc.line_of(("profiles", i, "with", k)), f"profiles[{i}].with.{k}")
                           for k, v in (entry.get("with") or {}).items()}
            ref = entry["profile"]
            if ("/" in ref or ref.endswith((".yaml", ".yml"))) and not Path(ref).is_absolute():
                ref = str(Path(stack_file).parent / ref)  # profile paths are relative to the stack file
            where = (doc.file, doc.line_of(("profiles", i, "profile")), f"profiles[{i}].profile")
            entries.append((ref, with_values, where))
    for ref in profile_refs:
        entries.append((ref, {}, (None, None, f"--profile {ref}")))
    if not entries and stack_file:
        raise InputError("the stack selects no profiles", file=stack_file, line=doc.line_of(("profiles",)),
                         field="profiles", hint="list profiles under profiles: (see `harden profiles`)")
    if not entries:
        raise InputError("no profiles selected",
                         hint="pass --profile NAME (see `harden profiles`) or -f STACK.yaml")

    items: list[Selected] = []
    seen: set[str] = set()
    for ref, with_values, (file, line, fld) in entries:
        try:
            profile = load_profile(ref)
        except Diagnostics as exc:
            problems += exc.diagnostics
            continue
        except InputError as exc:
            d = exc.diagnostic
            if d.line is None:  # the profile file itself could not be read: point at who names it
                d = Diagnostic(d.summary, file=file, line=line, field=fld, hint=d.hint)
            problems.append(Diagnostic(d.summary, file=d.file or file, line=d.line or line,
                                       field=d.field or fld, hint=d.hint))
            continue
        if profile.name in seen:
            problems.append(Diagnostic(f"profile {profile.name!r} is selected twice", file=file, line=line, field=fld,
                                       hint="select each profile once"))
            continue
        seen.add(profile.name)
        given: dict[str, Value] = {}
        for k, v in shared.items():
            if k in profile.parameters:
                given[k] = v
        for k, v in with_values.items():
            if k not in profile.parameters:
                problems.append(Diagnostic(f"profile {profile.name!r} has no parameter {k!r}", file=v.file,
                                           line=v.line, field=v.field,
                                           hint=f"its parameters: {', '.join(profile.parameters) or '(none)'}"))
            else:
                given[k] = v
        for k, v in cli_values.items():
            pname, dot, pkey = k.rpartition(".")
            if dot and pname == profile.name and pkey in profile.parameters:
                given[pkey] = v
            elif not dot and k in profile.parameters:
                given[k] = v
        items.append(Selected(profile, resolve_values(profile, given, problems), frozenset(given)))

    known = ({f"{s.profile.name}.{p}" for s in items for p in s.profile.parameters}
             | {p for s in items for p in s.profile.parameters})
    for k, v in cli_values.items():
        if k not in known:
            problems.append(Diagnostic(f"no selected profile has parameter {k!r}", field=v.field,
                                       hint=f"known: {', '.join(sorted(known)) or '(none)'}"))
    for k, v in shared.items():
        if k not in known:
            problems.append(Diagnostic(f"no selected profile has parameter {k!r}", file=v.file, line=v.line,
                                       field=v.field,
                                       hint=f"known: {', '.join(sorted(p for p in known if '.' not in p))}"))
    if problems:
        raise Diagnostics(problems)
    return Selection(stack_name, tuple(items), {"profiles": [s.profile.name for s in items],
                                                "stackFile": stack_file, "set": list(sets)})
