"""graph: find an install from its workloads, then follow what they really use. Pure.

harden never guesses an object by name. An install is found from its workloads: a Deployment or
StatefulSet whose pod template carries the labels of a known component (upstream labels, or the
Helm chart's `app.kubernetes.io/*` labels; see harden/needs/*.yaml for the label sets and their
upstream sources). From each workload the graph follows the edges Kubernetes itself follows:

    pod template -> serviceAccountName -> (Cluster)RoleBindings naming it -> their (Cluster)Roles
    container args -> the ConfigMap named by `--configmap`
    Services whose selector matches the pod labels

Profile targets and the subjects of expectations are read from this graph. Several installs in
one cluster are told apart by namespace and Helm instance (`app.kubernetes.io/instance`), and a
profile is pointed at exactly one of them: it never reaches into another install.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError
from .model import Live, Obj, ResourceKey

Labels = tuple[tuple[str, str], ...]
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
INSTANCE_LABEL = "app.kubernetes.io/instance"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class LabelMatch:
    """Pod labels that identify a component in one layout (upstream manifests, Helm chart)."""

    labels: Labels
    layout: str
    source: str = ""

    def matches(self, pod_labels: Mapping[str, str]) -> bool:
        return all(pod_labels.get(k) == v for k, v in self.labels)

    def text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.labels)


@dataclass(frozen=True)
class ComponentSpec:
    """How to recognise one component of a product, and what it needs (see harden/needs/)."""

    product: str
    name: str
    kind: str | None                 # Deployment | StatefulSet; None for pods a controller creates
    matches: tuple[LabelMatch, ...] = ()
    needs: tuple[Mapping[str, Any], ...] = ()
    pods: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Component:
    """One component of an install as found in the cluster, with the objects it really uses."""

    name: str
    workload: ResourceKey
    layout: str
    found_by: str                    # e.g. "pod labels app=argo-server (upstream)"
    pod_labels: Labels
    selector: Labels                 # the workload's spec.selector.matchLabels
    service_account: str
    args: tuple[str, ...]            # every container's command and args, in order
    bindings: tuple[ResourceKey, ...] = ()
    roles: tuple[ResourceKey, ...] = ()
    services: tuple[ResourceKey, ...] = ()
    config_map: ResourceKey | None = None

    @property
    def namespace(self) -> str:
        return self.workload.namespace

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def flag(self, name: str) -> str | None:
        """The value of `--name` in the container args (`--name=v` or `--name v`); the last wins."""
        value = None
        for i, a in enumerate(self.args):
            if a == name and i + 1 < len(self.args) and not self.args[i + 1].startswith("--"):
                value = self.args[i + 1]
            elif a.startswith(name + "="):
                value = a[len(name) + 1:]
            elif a == name:
                value = "true"
        return value

    def flag_values(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable flag (`--auth-mode server --auth-mode=client`)."""
        return flag_values(self.args, name)


def flag_values(args: Sequence[str], name: str) -> tuple[str, ...]:
    """Every value of a repeatable flag in container args (`--auth-mode server --auth-mode=client`)."""
    out = []
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(name + "="):
            out.append(a[len(name) + 1:])
    return tuple(out)


@dataclass(frozen=True)
class Install:
    product: str
    namespace: str
    instance: str | None             # the Helm release, or None for the upstream manifests
    components: tuple[Component, ...]

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.instance}" if self.instance else self.namespace

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def describe(self) -> str:
        what = ", ".join(f"{c.name} ({c.workload.kind.lower()}/{c.workload.name}, {c.found_by})"
                         for c in self.components)
        return f"{self.product} in {self.name}: {what}"

    def owned_keys(self) -> frozenset[ResourceKey]:
        """Every object the graph reached from this install's workloads."""
        keys: set[ResourceKey] = set()
        for c in self.components:
            keys |= {c.workload, *c.bindings, *c.roles, *c.services}
            if c.config_map:
                keys.add(c.config_map)
        return frozenset(keys)


def _labels(obj: Obj | None, *path: str) -> dict[str, str]:
    node: Any = obj or {}
    for p in path:
        node = (node or {}).get(p) if isinstance(node, dict) else None
    return {str(k): str(v) for k, v in (node or {}).items()} if isinstance(node, dict) else {}


def _frozen(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _pod_spec(workload: Obj) -> Mapping[str, Any]:
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def workload_args(workload: Obj) -> tuple[str, ...]:
    out: list[str] = []
    for c in _pod_spec(workload).get("containers") or []:
        out += [str(x) for x in (c.get("command") or [])] + [str(x) for x in (c.get("args") or [])]
    return tuple(out)


def _binds(binding: Obj, namespace: str, service_account: str) -> bool:
    for s in binding.get("subjects") or []:
        if s.get("kind") == "ServiceAccount" and s.get("name") == service_account and \
                (s.get("namespace") or (binding.get("metadata") or {}).get("namespace")) == namespace:
            return True
    return False


def _role_key(binding: Obj) -> ResourceKey | None:
    ref = binding.get("roleRef") or {}
    if ref.get("kind") == "ClusterRole":
        return ResourceKey(RBAC_GROUP, "ClusterRole", "", ref.get("name", ""))
    if ref.get("kind") == "Role":
        ns = (binding.get("metadata") or {}).get("namespace", "")
        return ResourceKey(RBAC_GROUP, "Role", ns, ref.get("name", ""))
    return None


class _Index:
    """The live objects the graph walks, indexed once (a cluster has thousands of them)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.bindings = [(k, o) for k, o in live.objects.items() if k.kind in ("RoleBinding", "ClusterRoleBinding")]
        self.services = [(k, o) for k, o in live.objects.items() if k.kind == "Service"]

    def component(self, spec: ComponentSpec, match: LabelMatch, key: ResourceKey, obj: Obj) -> Component:
        ns = key.namespace
        pod_labels = _labels(obj, "spec", "template", "metadata", "labels")
        pod = _pod_spec(obj)
        sa = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
        bindings = tuple(sorted(k for k, b in self.bindings
                                if (k.kind == "ClusterRoleBinding" or k.namespace == ns) and _binds(b, ns, sa)))
        roles = tuple(sorted({r for k in bindings if (r := _role_key(self.live.objects[k])) is not None
                              and r in self.live.objects}))
        services = tuple(sorted(k for k, s in self.services
                                if k.namespace == ns and (sel := _labels(s, "spec", "selector"))
                                and all(pod_labels.get(a) == b for a, b in sel.items())))
        comp = Component(spec.name, key, match.layout, f"pod labels {match.text()} ({match.layout})",
                         _frozen(pod_labels), _frozen(_labels(obj, "spec", "selector", "matchLabels")), sa,
                         workload_args(obj), bindings, roles, services)
        # The ConfigMap a component reads is the one its args name (`--configmap`), with the
        # upstream default when the flag is absent: both come from the component's needs.
        for need in spec.needs:
            obj_need = need.get("object") or {}
            if obj_need.get("kind") == "ConfigMap":
                cm_key = ResourceKey("", "ConfigMap", ns, resolve_name(str(obj_need.get("name", "")), comp))
                if cm_key in self.live.objects:
                    comp = replace(comp, config_map=cm_key)
                break
        return comp


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def resolve_name(template: str, comp: Component, extra: Mapping[str, str] | None = None) -> str:
    """A name from the needs data: `${arg:--configmap|workflow-controller-configmap}` is the value of
    a container flag (or its upstream default), `${serviceAccount}` the component's service account."""

    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith("arg:"):
            flag, _, default = ref[4:].partition("|")
            return comp.flag(flag) or default
        if ref == "serviceAccount":
            return comp.service_account
        return (extra or {}).get(ref, m.group(0))

    return _PLACEHOLDER.sub(one, template)


def find_installs(live: Live, specs: Iterable[ComponentSpec]) -> list[Install]:
    """Every install in `live`: components grouped by product, namespace and Helm instance."""
    index = _Index(live)
    specs = [s for s in specs if s.kind]
    found: dict[tuple[str, str, str | None], list[Component]] = {}
    for key, obj in sorted(live.objects.items()):
        if key.kind not in WORKLOAD_KINDS:
            continue
        pod_labels = _labels(obj, "spec", "template", "metadata", "labels")
        for spec in specs:
            if spec.kind != key.kind:
                continue
            # The most specific label set wins: Helm's pods carry the upstream `app` label too.
            match = max((m for m in spec.matches if m.matches(pod_labels)), key=lambda m: len(m.labels), default=None)
            if match is None:
                continue
            comp = index.component(spec, match, key, obj)
            group = (spec.product, key.namespace, pod_labels.get(INSTANCE_LABEL))
            found.setdefault(group, []).append(comp)
            break
    return [Install(p, ns, inst, tuple(comps)) for (p, ns, inst), comps in sorted(found.items(), key=lambda kv: (
        kv[0][0], kv[0][1], kv[0][2] or ""))]


def select_install(installs: list[Install], product: str, namespace: str, instance: str | None = None,
                   *, file: str | None = None) -> Install:
    """The one install of `product` in `namespace` (and Helm `instance`, when several share it).

    No install, or two that the selector cannot tell apart, is an input error listing what was
    found, so the user can point the profile at the right one.
    """
    of_product = [i for i in installs if i.product == product]
    here = [i for i in of_product if i.namespace == namespace and (instance is None or i.instance == instance)]
    elsewhere = "; ".join(i.describe() for i in of_product) or "none"
    if not here:
        raise InputError(f"no {product} install in namespace {namespace!r}"
                         + (f" with Helm instance {instance!r}" if instance else "") + f"; found: {elsewhere}",
                         file=file, field="namespace",
                         hint="point the profile at an install with --set namespace=NS (and --set install=NS/RELEASE "
                              "when several share a namespace)")
    if len(here) > 1:
        raise InputError(f"{len(here)} {product} installs in namespace {namespace!r}: "
                         + "; ".join(i.describe() for i in here), file=file, field="install",
                         hint="choose one with --set install=NS/RELEASE")
    install = here[0]
    for c in install.components:
        twins = [x for x in install.components if x.name == c.name]
        if len(twins) > 1:
            raise InputError(f"{product} install {install.name} has {len(twins)} {c.name} workloads: "
                             + ", ".join(f"{x.workload.kind.lower()}/{x.workload.name}" for x in twins),
                             file=file, field="install",
                             hint="harden cannot tell which one the profile should harden; remove the extra one, "
                                  "or give each its own app.kubernetes.io/instance label and choose with --set install")
    return install


def shared_roles(install: Install, installs: list[Install], live: Live) -> dict[ResourceKey, list[str]]:
    """Roles of `install` that a subject outside the install is also bound to, with those subjects.

    Patching such a role would change another install's (or another user's) permissions too.
    """
    ours = {c.subject for c in install.components}
    out: dict[ResourceKey, list[str]] = {}
    for key, b in live.objects.items():
        if key.kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        role = _role_key(b)
        if role is None or role not in {r for c in install.components for r in c.roles}:
            continue
        for s in b.get("subjects") or []:
            if s.get("kind") == "ServiceAccount":
                subject = f"system:serviceaccount:{s.get('namespace') or key.namespace}:{s.get('name')}"
            else:
                subject = f"{str(s.get('kind', '')).lower()}:{s.get('name')}"
            if subject not in ours:
                out.setdefault(role, []).append(subject)
    return out
