"""render: profile + parameter values -> desired objects and patch intents. Pure.

Parameters are substituted structurally, never by text templating: a string that is exactly
`${name}` becomes the typed value (a list, a mapping, a NetworkPolicy peer), and `${name}` inside a
longer string is interpolated with `string.Template`. This keeps YAML structure (and therefore the
profile's line numbers) intact, and a value can never inject YAML.

Patches that depend on the live object (reduce a Role's verbs, edit a container's args, merge YAML
inside a ConfigMap key) are rendered as intents here and materialized against the live object by
`materialize`, still a pure function of (intent, live object).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import InputError
from .fieldpath import get_at, path_text
from .graph import Install
from .load import Placeholders, Profile, Selected, strings_in, whole_reference
from .merge import merge_partial, missing_entries
from .mergekeys import ATOMIC_ONLY
from .model import LABEL_MANAGED_BY, LABEL_PROFILE, LABEL_STACK, MANAGER, Obj, ResourceKey
from .yamlsrc import dotted


@dataclass(frozen=True)
class DesiredObject:
    key: ResourceKey
    body: Obj
    profile: str
    line: int


@dataclass(frozen=True)
class Candidate:
    api_version: str
    kind: str
    namespace: str
    name: str | None
    labels: dict[str, str] | None
    layout: str | None

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        what = self.name if self.name else ",".join(f"{k}={v}" for k, v in (self.labels or {}).items())
        return f"{self.kind} {where}{what}" + (f" ({self.layout})" if self.layout else "")


@dataclass(frozen=True)
class Target:
    id: str
    profile: str
    description: str
    candidates: tuple[Candidate, ...]
    optional: bool
    many: bool = False  # every candidate that exists is a target (a component's roles), not the first
    line: int | None = None  # where the profile declares it, for "target not found"


@dataclass(frozen=True)
class PatchIntent:
    profile: str
    target: str
    op: str          # set | restrictVerbs | containerArgs | configMapYaml
    spec: Any
    reason: str
    line: int


@dataclass(frozen=True)
class Rendered:
    profile: str
    objects: tuple[DesiredObject, ...]
    targets: tuple[Target, ...]
    patches: tuple[PatchIntent, ...]
    checks: tuple[dict[str, Any], ...]
    expectations: tuple[dict[str, Any], ...]
    values: dict[str, Any] = field(default_factory=dict)


def substitute(value: Any, values: dict[str, Any], texts: dict[str, str] | None = None,
               static: frozenset[int] = frozenset()) -> Any:
    """Replace `${name}`: a whole-string reference by the typed value, an embedded one by its text.

    `static`: ids of the mappings and lists in `value` that hold no reference (`static_parts`);
    those are returned as they are, shared with `value`, instead of copied."""
    texts = texts if texts is not None else {k: _text(v) for k, v in values.items()}
    if id(value) in static:
        return value
    if isinstance(value, str):
        ref = whole_reference(value)
        if ref is not None:
            return copy.deepcopy(values.get(ref))
        if "${" in value:
            return Placeholders(value).substitute(texts)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, values, texts, static) for k, v in value.items()}
    if isinstance(value, list):
        out = []
        for item in value:
            rendered = substitute(item, values, texts, static)
            # `- ${peers}` where the parameter is a list splices the list in place.
            if isinstance(item, str) and item.strip().startswith("${") and isinstance(rendered, list):
                out.extend(rendered)
            else:
                out.append(rendered)
        return out
    return value


def static_parts(value: Any) -> frozenset[int]:
    """Ids of the mappings and lists within `value` (itself included) that hold no `${...}`."""
    out: set[int] = set()

    def walk(v: Any) -> bool:
        if isinstance(v, str):
            return "${" not in v
        if isinstance(v, dict):
            kids = [walk(x) for x in v.values()]
        elif isinstance(v, list):
            kids = [walk(x) for x in v]
        else:
            return True
        if all(kids):
            out.add(id(v))
            return True
        return False

    walk(value)
    return frozenset(out)


def _substitute(profile: Profile, at: tuple[Any, ...], value: Any, values: dict[str, Any], texts: dict[str, str],
                static: frozenset[int] = frozenset()) -> Any:
    """`substitute`, with a reference to a key the given value lacks (`${labels.tier}` when the
    labels have no `tier`) reported at the profile line that makes it."""
    try:
        return substitute(value, values, texts, static)
    except KeyError as exc:
        ref = exc.args[0]
        where = next((at + p for p, text in strings_in(value) if f"${{{ref}}}" in text or f"${ref}" in text), at)
        raise InputError(f"${{{ref}}} has no value: parameter {ref.partition('.')[0]!r} has no key {ref.partition('.')[2]!r}"
                         if "." in ref else f"${{{ref}}} has no value", file=profile.file, line=profile.line(*where),
                         field=dotted(where), hint="give the parameter a value that has this key") from None


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        return ",".join(f"{k}={x}" for k, x in v.items())  # label selectors read as app=argo-server
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def render_value(v: Any, kind: str) -> Any:
    """The Kubernetes shape of a typed parameter value.

    peer      -> a NetworkPolicy peer ({ipBlock} or {namespaceSelector, podSelector})
    peerList  -> a list of NetworkPolicy peers
    cidrList  -> a list of NetworkPolicy ipBlock peers ([] for 0.0.0.0/0 would mean "all" anyway)
    portList  -> a list of NetworkPolicy ports (TCP)
    anything else -> the value itself (labelSelector: the matchLabels mapping)
    """
    if v is None:
        return None
    if kind == "peer":
        if "cidr" in v:
            block: dict[str, Any] = {"cidr": v["cidr"]}
            if v.get("except"):
                block["except"] = list(v["except"])
            return {"ipBlock": block}
        peer: dict[str, Any] = {"podSelector": {"matchLabels": dict(v["podSelector"])} if v["podSelector"] else {}}
        if "namespace" in v:
            peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": v["namespace"]}}
        return peer
    if kind == "peerList":
        return [render_value(x, "peer") for x in v]
    if kind == "cidrList":
        return [{"ipBlock": {"cidr": c}} for c in v]
    if kind == "portList":
        return [{"protocol": "TCP", "port": p} for p in v]
    return v


def _peer_text(v: dict[str, Any]) -> str:
    if "cidr" in v:
        return str(v["cidr"])
    return f"{v.get('namespace', '')}/" + _text(v.get("podSelector") or {}) if "namespace" in v else _text(v.get("podSelector") or {})


def _when(cond: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    if not cond:
        return True
    v = values.get(cond["parameter"])
    # `contains` tests a list parameter for one item, e.g. a detected argo-server auth mode.
    test = cond.get("is", "set")
    return {
        "set": v not in (None, "", [], {}),
        "unset": v in (None, "", [], {}),
        "cidr": isinstance(v, dict) and "cidr" in v,
        "selector": isinstance(v, dict) and "podSelector" in v,
        "true": v is True,
        "false": v is False,
    }[test] if "contains" not in cond else isinstance(v, list) and cond["contains"] in v


PATCH_OPS = ("set", "restrictVerbs", "containerArgs", "configMapYaml")


class _Texts(dict[str, str]):
    """Texts of values; a `${graph.…}` reference before the install is known renders empty (the first
    render only tells observe which kinds to read)."""

    def __missing__(self, key: str) -> str:
        if key.startswith("graph."):
            return ""
        raise KeyError(key)


def _own_rule_lists(body: Obj) -> None:
    """A NetworkPolicy harden owns says `ingress: []` / `egress: []` for each direction it isolates
    without rules, so harden owns the (empty) list: a rule another actor adds is drift that the
    next apply removes, instead of a field nobody declared."""
    spec = body.get("spec") if body.get("kind") == "NetworkPolicy" else None
    if isinstance(spec, dict):
        missing = [key for kind, key in (("Ingress", "ingress"), ("Egress", "egress"))
                   if kind in (spec.get("policyTypes") or []) and key not in spec]
        if missing:
            body["spec"] = {**spec, **{key: [] for key in missing}}  # `spec` may be shared: not changed


def graph_values(install: Install | None) -> dict[str, Any]:
    """`${graph.COMPONENT.FIELD}` values: what the install graph found for each component."""
    out: dict[str, Any] = {}
    for c in install.components if install else ():
        base = f"graph.{c.name}"
        out.update({f"{base}.subject": c.subject, f"{base}.serviceAccount": c.service_account,
                    f"{base}.namespace": c.namespace, f"{base}.podLabels": dict(c.pod_labels),
                    f"{base}.selector": dict(c.selector), f"{base}.name": c.workload.name})
    return out


def _graph_candidates(t: dict[str, Any], install: Install | None) -> tuple[Candidate, ...]:
    comp = install.component(t["component"]) if install else None
    if comp is None:
        return ()
    how = f"{t['component']} {t['object']}, install graph: {comp.layout}"
    if t["object"] == "workload":
        keys = [comp.workload]
    elif t["object"] == "roles":
        keys = list(comp.roles)
    elif t["object"] == "clusterRoles":
        keys = [k for k in comp.roles if k.kind == "ClusterRole"]
    else:
        keys = [comp.config_map] if comp.config_map else []
    return tuple(Candidate(f"{k.group}/v1" if k.group else "v1", k.kind, k.namespace, k.name, None, how) for k in keys)


def render(selected: Selected, stack: str, install: Install | None = None) -> Rendered:
    profile, raw_values = selected.profile, selected.values
    values = {k: render_value(v, profile.parameters[k]["type"]) for k, v in raw_values.items()}
    texts = _Texts({k: (_peer_text(v) if profile.parameters[k]["type"] == "peer" and v else _text(v))
                    for k, v in raw_values.items()})
    for k, v in graph_values(install).items():
        values[k], texts[k] = v, _text(v)
    # `${param.field}` reaches into mapping values: a peer's namespace and podSelector, a label's value.
    for k, v in raw_values.items():
        if isinstance(v, dict):
            for sub, x in v.items():
                values[f"{k}.{sub}"] = x
                texts[f"{k}.{sub}"] = _text(x)
        if profile.parameters[k]["type"] == "peer" and isinstance(v, dict) and "podSelector" in v:
            ns = v.get("namespace") or raw_values.get("namespace")
            values.setdefault(f"{k}.namespace", ns)
            texts.setdefault(f"{k}.namespace", _text(ns))
    data = profile.data
    objects = []
    for i, raw in enumerate(data.get("objects", [])):
        if not _when(raw.get("when"), raw_values):
            continue
        template = {k: v for k, v in raw.items() if k not in ("when", "forEach")}
        # `forEach: {parameter: namespaces, as: ns}` renders the object once per list item, `${ns}` bound to it.
        loop = raw.get("forEach")
        items: list[Any] = [None]
        if loop:
            items = raw_values.get(loop["parameter"])  # type: ignore[assignment]  # not a list: refused below
            if not isinstance(items, list):
                # Load admits only list parameters; no value at all is no list either, and dropping
                # the object silently would hide that it is missing.
                raise InputError(f"forEach over parameter {loop['parameter']!r}, which has no list value",
                                 file=profile.file, line=profile.line("objects", i, "forEach", "parameter"),
                                 field=f"objects[{i}].forEach.parameter",
                                 hint=f"set {loop['parameter']} to a list (an empty list [] renders no object)")
            if not items and loop.get("ifEmpty"):
                items = [raw_values.get(loop["ifEmpty"])]  # e.g. no workflow namespaces: the install's
        # The parts of the template that hold no reference are the same in every object it renders:
        # those are shared, not copied (a `forEach` over 1,000 namespaces copied each spec 1,000
        # times). Nothing downstream changes a rendered body in place (normalization and merging
        # copy on write), and the two changes made here build new mappings along their way.
        static = static_parts(template) - {id(template)}
        line = profile.line("objects", i)
        for item in items:
            v, t = values, texts
            if loop:
                v, t = {**values, loop["as"]: item}, _Texts({**texts, loop["as"]: _text(item)})
            body = _substitute(profile, ("objects", i), template, v, t, static)
            _own_rule_lists(body)
            meta = body.get("metadata") or {}
            body["metadata"] = {**meta, "labels": {**(meta.get("labels") or {}), LABEL_MANAGED_BY: MANAGER,
                                                   LABEL_PROFILE: profile.name, LABEL_STACK: stack}}
            objects.append(DesiredObject(ResourceKey.of(body), body, profile.name, line))
    targets = []
    for ti, t in enumerate(data.get("targets", [])):
        cands = []
        for c in t.get("candidates", []):
            c = _substitute(profile, ("targets", ti), c, values, texts)
            cands.append(Candidate(c["apiVersion"], c["kind"], c.get("namespace", ""), c.get("name"),
                                   c.get("labels"), c.get("layout")))
        if "component" in t:
            cands = list(_graph_candidates(t, install))
        targets.append(Target(t["id"], profile.name, t.get("description", ""), tuple(cands), t.get("optional", False),
                              many=t.get("object") in ("roles", "clusterRoles"), line=profile.line("targets", ti)))
    patches = []
    for i, p in enumerate(data.get("patches", [])):
        if not _when(p.get("when"), raw_values):
            continue
        for op in PATCH_OPS:
            if op in p:
                patches.append(PatchIntent(profile.name, p["target"], op, _substitute(profile, ("patches", i), p[op], values, texts),
                                           p.get("reason", ""), profile.line("patches", i)))
    checks = tuple({**_substitute(profile, ("checks", i), c, values, texts), "line": profile.line("checks", i)}
                   for i, c in enumerate(data.get("checks", [])))
    # Endpoints in expectations are text (NS/KEY=VAL or a CIDR), so they take every value as text.
    expectations = tuple({**_substitute(profile, ("expect", i), {k: v for k, v in e.items() if k != "when"}, texts, texts),
                          "line": profile.line("expect", i)}
                         for i, e in enumerate(data.get("expect", [])) if _when(e.get("when"), raw_values))
    return Rendered(profile.name, tuple(objects), tuple(targets), tuple(patches), checks, expectations, raw_values)


# -- materializing patches against a live object ---------------------------------------------------

def identity(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    out: Obj = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": meta["name"]}}
    if meta.get("namespace"):
        out["metadata"]["namespace"] = meta["namespace"]
    return out


def restrict_rules(rules: list[dict[str, Any]], verbs: list[str],
                   drop_resources: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Keep only `verbs` in every rule, drop listed resources, and drop rules left empty."""
    allowed = set(verbs)
    out = []
    for rule in rules or []:
        rule = copy.deepcopy(rule)
        if "resources" in rule and drop_resources:
            rule["resources"] = [r for r in rule["resources"] if r not in drop_resources]
            if not rule["resources"]:
                continue
        kept = [v for v in rule.get("verbs", []) if v in allowed]
        if "*" in rule.get("verbs", []):
            kept = [v for v in verbs]
        seen: list[str] = []
        for v in kept:  # upstream roles list `watch` twice; keep the first
            if v not in seen:
                seen.append(v)
        if seen:
            rule["verbs"] = seen
            out.append(rule)
    return out


def edit_args(args: list[str], set_flags: dict[str, Any], remove: list[str],
              remove_values: dict[str, list[str]] | None = None, ensure: dict[str, str] | None = None,
              defaults: dict[str, str] | None = None) -> list[str]:
    """Remove flags (both `--f v` and `--f=v` forms) and set flags as `--f=v` (or bare `--f`).

    Flags that take a value in the separate-token form are the ones being removed, set or edited,
    so a following token that is not itself a flag is that flag's value. A repeatable flag (argo-server's
    `--auth-mode`) is edited value by value: `remove_values` drops only the listed values and `ensure`
    adds `--f=v` unless v is already among the values left, so other values (e.g. `sso`) stay.
    `defaults` writes out `--f=v` only where the flag is absent: an explicit value, whatever it is, stays.
    """
    remove_values, ensure, defaults = remove_values or {}, ensure or {}, defaults or {}
    drop = set(remove) | set(set_flags)
    edited = set(remove_values) | set(ensure) | set(defaults)
    out: list[str] = []
    kept: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        name = tok.split("=", 1)[0]
        if name in drop or name in edited:
            value: str | None = tok.split("=", 1)[1] if "=" in tok else None
            if "=" not in tok and i + 1 < len(args) and not args[i + 1].startswith("-") and set_flags.get(name) is not True:
                value = args[i + 1]
                i += 1  # the separate value token goes with its flag
            i += 1
            if name in drop or value in remove_values.get(name, ()):
                continue
            kept.setdefault(name, []).append(value or "")
            # A value that stays is written `--f=v`, the form harden writes, so a second plan reads the
            # same args back and changes nothing.
            out.append(f"{name}={value}" if value is not None else name)
            continue
        out.append(tok)
        i += 1
    for flag, value in set_flags.items():
        out.append(flag if value is True else f"{flag}={value}")
    for flag, value in ensure.items():
        if value not in kept.get(flag, []):
            out.append(f"{flag}={value}")
    for flag, value in defaults.items():
        if flag not in kept:
            out.append(f"{flag}={value}")
    return out


def _container(live: Obj, name: str) -> tuple[list[str], dict[str, Any]]:
    pod = ["spec"] if live["kind"] == "Pod" else ["spec", "template", "spec"]
    c = get_at(live, pod + ["containers", ("name", name)])
    if c is None:
        raise KeyError(name)
    return pod + ["containers"], c


def materialize(intent: PatchIntent, live: Obj) -> tuple[Obj, list[str]]:
    """The fields harden sets on `live` for this intent, as a partial object, and their paths."""
    op, spec = intent.op, intent.spec
    if op == "set":
        paths = [path_text(list(p)) for p in _leaf_map_paths(spec, ())]
        return copy.deepcopy(spec), paths
    if op == "restrictVerbs":
        return {"rules": restrict_rules(live.get("rules") or [], spec["verbs"], spec.get("dropResources", []))}, ["rules"]
    if op == "containerArgs":
        _, c = _container(live, spec["container"])
        args = edit_args(list(c.get("args") or []), spec.get("set") or {}, spec.get("remove") or [],
                         spec.get("removeValues") or {}, spec.get("ensure") or {}, spec.get("default") or {})
        partial = {"spec": {"template": {"spec": {"containers": [{"name": spec["container"], "args": args}]}}}}
        return partial, [path_text(["spec", "template", "spec", "containers", ("name", spec["container"]), "args"])]
    if op == "configMapYaml":
        current = (live.get("data") or {}).get(spec["key"]) or ""
        try:
            if "append" in spec:
                text = append_yaml_list(current, spec["append"])
            else:
                parsed = yaml.safe_load(current) or {}
                if not isinstance(parsed, dict):
                    raise YamlShapeError(f"holds a YAML {_yaml_kind(parsed)}, not the mapping the profile merges into")
                merged = merge_partial(parsed, spec["merge"], ATOMIC_ONLY)
                text = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
        except yaml.YAMLError as exc:
            raise ConfigMapYamlError(f"does not hold valid YAML: {exc}", intent) from None
        except YamlShapeError as exc:
            raise ConfigMapYamlError(str(exc), intent) from None
        return {"data": {spec["key"]: text}}, [path_text(["data", spec["key"]])]
    raise ValueError(op)


class YamlShapeError(ValueError):
    """A ConfigMap value that is valid YAML of the wrong shape (a mapping where a list is edited)."""


class ConfigMapYamlError(ValueError):
    """A `configMapYaml` patch that cannot read the value it edits; `intent` names the patch."""

    def __init__(self, message: str, intent: PatchIntent) -> None:
        super().__init__(message)
        self.intent = intent


def _yaml_kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def append_yaml_list(text: str, wanted: list[Any]) -> str:
    """`text` (a YAML list, or empty) with the entries of `wanted` it lacks appended.

    Nothing present is dropped, reordered or rewritten: when nothing is missing the text comes back
    unchanged, and otherwise the missing entries are appended as text below it, so the comments and
    layout of what someone else wrote survive. Only when plain appending would not read back as the
    same list (a flow-style `[...]` list, an indented one) is the whole list written out anew.
    Raises yaml.YAMLError for text that is no YAML, YamlShapeError for YAML that is no list.
    """
    parsed = yaml.safe_load(text) if text.strip() else None
    if parsed is None:
        parsed = []
    if not isinstance(parsed, list):
        raise YamlShapeError(f"holds a YAML {_yaml_kind(parsed)}, not the list the profile appends to")
    missing = missing_entries(parsed, wanted)
    if not missing:
        return text
    addition = yaml.safe_dump(missing, sort_keys=False, default_flow_style=False)
    if not parsed and not text.strip():
        return addition
    appended = text.rstrip("\n") + "\n" + addition
    try:
        if yaml.safe_load(appended) == parsed + missing:
            return appended
    except yaml.YAMLError:
        pass
    return yaml.safe_dump(parsed + missing, sort_keys=False, default_flow_style=False)


def _leaf_map_paths(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Paths of the fields a `set` patch declares: mapping keys down to the first non-mapping."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_map_paths(v, path + (k,))
    else:
        yield path
