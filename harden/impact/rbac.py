"""Effective RBAC permissions computed from plain Kubernetes object dicts.

The goal is to answer "who can do what" for a *predicted* state (manifests a
plan is about to apply) exactly the way the API server's RBAC authorizer
(``k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac``) would answer it for the
same objects, so ``harden plan`` can show permission changes and
``harden can-i`` can be checked against ``SubjectAccessReview``.

Design decisions (each mirrors the Go implementation; deviations are listed)
----------------------------------------------------------------------------
* **Which bindings are visited** (``DefaultRuleResolver.VisitRulesFor``): every
  ClusterRoleBinding, then -- only if the request has a namespace -- the
  RoleBindings *of that namespace*. A cluster-scoped request
  (``namespace=None``) and a non-resource request never see RoleBindings.
* **Role references** (``GetRoleReferenceRules``): a RoleBinding may reference
  a Role of its own namespace or a ClusterRole; a ClusterRoleBinding only a
  ClusterRole (a ``kind: Role`` ref from a ClusterRoleBinding would be looked
  up in namespace "" and never found). A reference to a missing role grants
  nothing, it is not an error.
* **Subjects** (``appliesToUser``): ``User`` by exact name, ``Group`` by
  membership, ``ServiceAccount`` by the username
  ``system:serviceaccount:<ns>:<name>`` where ``<ns>`` defaults to the
  binding's namespace (only a RoleBinding has one; a ClusterRoleBinding SA
  subject without namespace matches nobody). The subject's ``apiGroup`` is not
  consulted, like in Go.
* **Rule matching** (``RuleAllows`` + ``rbac/v1/helpers``): verbs and apiGroups
  match exactly or by ``*``; resources match ``*``, the exact combined
  ``resource/subresource`` string, or ``*/subresource``. ``resource/*`` is *not*
  a wildcard in Kubernetes -- it only matches the literal string -- so it is
  not one here either (the SubjectAccessReview comparison is the arbiter).
  ``resourceNames`` restricts a rule to requests whose name is in the list; a
  request without a name (``list``/``watch``/``create`` on a collection) never
  matches such a rule. The authorizer compares names only, not verbs: a
  ``create`` request *with* a name (possible in a SubjectAccessReview) does
  match, so we do the same. Non-resource requests match ``nonResourceURLs``
  exactly or by a trailing ``*`` prefix; resource rules never match them and
  vice versa.
* **Aggregation**: the clusterrole-aggregation controller replaces the
  ``rules`` of a ClusterRole that has an ``aggregationRule`` with the union of
  the rules of all *other* ClusterRoles matching any selector (walked in name
  order, deduplicated). In a predicted state the controller has not run, so we
  compute that union (transitively, with a cycle guard) and *keep* any rules
  already present, deduplicated. Keeping them is what makes a partial object
  set safe (a live ``admin`` role passed without the ``system:aggregate-to-*``
  roles it was filled from keeps its rules); on an up-to-date live cluster it
  is a no-op. The one overstatement: a manifest listing ``rules`` next to an
  ``aggregationRule`` -- the controller would discard those. A selector with
  an invalid operator makes the controller give up on that role, so we then
  use its stored rules too. Pass
  ``resolve_aggregation=False`` to use stored rules verbatim (e.g. against a
  bare kube-apiserver with no controller-manager, where aggregated roles such
  as ``admin`` really are empty).
* Only the RBAC authorizer is modelled: the API server's other authorizers
  (the ``system:masters`` privileged-group short-circuit, the Node authorizer,
  webhooks) are out of scope. In a real cluster ``system:masters`` is also
  bound to ``cluster-admin`` by a bootstrap ClusterRoleBinding, so listing
  the cluster's objects normally covers it anyway.
* Permissions keep wildcards (``*``) as written: expanding them would need the
  API server's discovery data, which a predicted state does not have. Diffs
  therefore compare with *coverage* (``get pods in argo`` is not "lost" while
  ``* * cluster-wide`` is still granted) rather than set difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harden.impact.selectors import flatten_objects, labels_of, selector_matches

__all__ = [
    "SubjectKind",
    "Subject",
    "Rule",
    "Request",
    "Grant",
    "Decision",
    "Permission",
    "ChangeDirection",
    "PermissionChange",
    "RbacIndex",
    "groups_for",
    "authorize",
    "check",
    "parse_resource_spec",
    "effective_permissions",
    "diff_permissions",
]

RBAC_GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"
ALL_NAMESPACES = "*"

# Display order for verbs: reads like the usual manifest order
# (get, list, watch, create, update, patch, delete) instead of alphabetical.
_VERB_ORDER = (
    "*", "get", "list", "watch", "create", "update", "patch", "delete",
    "deletecollection", "use", "bind", "escalate", "impersonate", "approve", "sign",
)


# --------------------------------------------------------------------------- subjects


class SubjectKind(str, Enum):
    USER = "User"
    GROUP = "Group"
    SERVICE_ACCOUNT = "ServiceAccount"


@dataclass(frozen=True, order=True)
class Subject:
    """A binding subject / request identity.

    ``namespace`` is only meaningful for ``ServiceAccount``. ``str(subject)``
    round-trips through :meth:`parse`.
    """

    kind: SubjectKind
    name: str
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str) -> Subject:
        """Parse ``system:serviceaccount:NS:NAME``, ``group:NAME``, ``user:NAME`` or a bare user name."""
        text = text.strip()
        if not text:
            raise ValueError("empty subject")
        if text.startswith(SA_PREFIX):
            parts = text[len(SA_PREFIX):].split(":")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"malformed service account user {text!r}; want system:serviceaccount:NS:NAME")
            return cls(SubjectKind.SERVICE_ACCOUNT, parts[1], parts[0])
        if text.startswith("group:"):
            name = text[len("group:"):]
            if not name:
                raise ValueError(f"malformed group subject {text!r}")
            return cls(SubjectKind.GROUP, name)
        if text.startswith("user:"):
            return cls.user(text[len("user:"):])
        return cls.user(text)

    @classmethod
    def user(cls, name: str) -> Subject:
        """A User; a user named ``system:serviceaccount:NS:NAME`` *is* that SA to the authorizer."""
        if name.startswith(SA_PREFIX):
            return cls.parse(name)
        if not name:
            raise ValueError("empty user name")
        return cls(SubjectKind.USER, name)

    @property
    def username(self) -> str:
        """The request user name ("" for a Group: a group is not a user)."""
        if self.kind is SubjectKind.SERVICE_ACCOUNT:
            return f"{SA_PREFIX}{self.namespace}:{self.name}"
        if self.kind is SubjectKind.USER:
            return self.name
        return ""

    def groups(self, extra: Iterable[str] = ()) -> tuple[str, ...]:
        """Groups a request by this subject carries (see :func:`groups_for`)."""
        if self.kind is SubjectKind.GROUP:
            return tuple(dict.fromkeys([self.name, *extra]))
        return groups_for(self.username, extra)

    def __str__(self) -> str:
        if self.kind is SubjectKind.SERVICE_ACCOUNT:
            return self.username
        if self.kind is SubjectKind.GROUP:
            return f"group:{self.name}"
        # Bare name unless it would parse back as something else.
        if self.name.startswith(("group:", "user:", SA_PREFIX)):
            return f"user:{self.name}"
        return self.name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "name": self.name}
        if self.namespace is not None:
            d["namespace"] = self.namespace
        return d


def groups_for(username: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Groups the authenticator attaches to ``username``.

    A service account token authenticates with ``system:serviceaccounts``,
    ``system:serviceaccounts:<ns>`` and ``system:authenticated``; any other
    authenticated user gets ``system:authenticated`` plus whatever groups its
    credential carries (``extra``). ``system:anonymous`` is the exception: it
    is in ``system:unauthenticated`` instead.
    """
    if username == "system:anonymous":
        return tuple(dict.fromkeys([*extra, "system:unauthenticated"]))
    groups: list[str] = []
    if username.startswith(SA_PREFIX):
        ns = username[len(SA_PREFIX):].split(":")[0]
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    groups += list(extra)
    groups.append("system:authenticated")
    return tuple(dict.fromkeys(groups))  # dedupe, keep order


# --------------------------------------------------------------------------- rules


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in (value or ()))


@dataclass(frozen=True)
class Rule:
    """A ``PolicyRule`` as an immutable, hashable value (so rules can be deduped)."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        return cls(
            verbs=_strs(d.get("verbs")),
            api_groups=_strs(d.get("apiGroups")),
            resources=_strs(d.get("resources")),
            resource_names=_strs(d.get("resourceNames")),
            non_resource_urls=_strs(d.get("nonResourceURLs")),
        )

    def to_dict(self) -> dict[str, list[str]]:
        d: dict[str, list[str]] = {"verbs": list(self.verbs)}
        if self.api_groups or not self.non_resource_urls:
            d["apiGroups"] = list(self.api_groups)
        if self.resources or not self.non_resource_urls:
            d["resources"] = list(self.resources)
        if self.resource_names:
            d["resourceNames"] = list(self.resource_names)
        if self.non_resource_urls:
            d["nonResourceURLs"] = list(self.non_resource_urls)
        return d

    def allows(self, request: Request) -> bool:
        """``RuleAllows``: does this rule grant ``request``?"""
        if not _verb_matches(self.verbs, request.verb):
            return False
        if request.is_resource_request:
            return (
                _api_group_matches(self.api_groups, request.group)
                and _resource_matches(self.resources, request.combined_resource, request.subresource or "")
                and _resource_name_matches(self.resource_names, request.name or "")
            )
        return _non_resource_url_matches(self.non_resource_urls, request.path or "")


def _verb_matches(verbs: Sequence[str], verb: str) -> bool:
    return "*" in verbs or verb in verbs


def _api_group_matches(groups: Sequence[str], group: str) -> bool:
    return "*" in groups or group in groups


def _resource_matches(resources: Sequence[str], combined: str, subresource: str) -> bool:
    for res in resources:
        if res == "*" or res == combined:
            return True
        # "*/scale" matches any resource's "scale" subresource -- and only that
        # form; "pods/*" has no special meaning in Kubernetes.
        if subresource and res == f"*/{subresource}":
            return True
    return False


def _resource_name_matches(names: Sequence[str], name: str) -> bool:
    # Empty list = any name; otherwise the request must name one of them. A
    # request without a name ("") therefore only matches if "" is listed,
    # exactly like the Go helper.
    return not names or name in names


def _non_resource_url_matches(urls: Sequence[str], path: str) -> bool:
    for url in urls:
        if url == "*" or url == path:
            return True
        # Go trims *all* trailing stars (strings.TrimRight), so "/api**" is "/api*".
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


# --------------------------------------------------------------------------- requests & decisions


@dataclass(frozen=True)
class Request:
    """Attributes of one authorization request (what a SubjectAccessReview carries).

    ``namespace=None`` (or "") means cluster scope / all namespaces. Setting
    ``path`` makes it a non-resource request (``/healthz``, ``/apis``...).
    """

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    path: str | None = None

    @property
    def is_resource_request(self) -> bool:
        return self.path is None

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def text(self) -> str:
        if not self.is_resource_request:
            return f"{self.verb} {self.path}"
        target = self.combined_resource if not self.group else f"{self.group}/{self.combined_resource}"
        if self.name:
            target += f" {self.name!r}"
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {target} {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verb": self.verb, "group": self.group, "resource": self.resource,
            "subresource": self.subresource, "namespace": self.namespace,
            "name": self.name, "path": self.path,
        }


@dataclass(frozen=True)
class Grant:
    """One (binding, role, rule) triple that allows a request."""

    binding_kind: str
    binding_name: str
    binding_namespace: str | None
    role_kind: str
    role_name: str
    rule_index: int
    rule: Rule

    @property
    def text(self) -> str:
        binding = f"{self.binding_kind}/{self.binding_name}"
        if self.binding_namespace:
            binding = f"{self.binding_kind}/{self.binding_namespace}/{self.binding_name}"
        return f"{binding} -> {self.role_kind}/{self.role_name} rule #{self.rule_index}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "binding": {"kind": self.binding_kind, "name": self.binding_name, "namespace": self.binding_namespace},
            "role": {"kind": self.role_kind, "name": self.role_name},
            "ruleIndex": self.rule_index,
            "rule": self.rule.to_dict(),
        }


@dataclass(frozen=True)
class Decision:
    """Result of :func:`authorize`. ``reasons`` lists *every* grant, not just the first."""

    allowed: bool
    request: Request
    user: str
    groups: tuple[str, ...]
    reasons: tuple[Grant, ...] = ()

    @property
    def text(self) -> str:
        who = self.user or ",".join(self.groups)
        if not self.allowed:
            return f"no: {who} cannot {self.request.text} (no RBAC rule grants it)"
        return f"yes: {who} can {self.request.text} via " + "; ".join(g.text for g in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "user": self.user,
            "groups": list(self.groups),
            "request": self.request.to_dict(),
            "reasons": [g.to_dict() for g in self.reasons],
        }


# --------------------------------------------------------------------------- object index


@dataclass(frozen=True)
class _RoleRef:
    kind: str
    name: str


@dataclass(frozen=True)
class _Binding:
    kind: str  # RoleBinding | ClusterRoleBinding
    name: str
    namespace: str | None  # None for ClusterRoleBinding
    role_ref: _RoleRef
    subjects: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class _ClusterRole:
    name: str
    labels: Mapping[str, str]
    rules: tuple[Rule, ...]
    selectors: tuple[Mapping[str, Any], ...] | None  # None = not an aggregated role


def _is_rbac(obj: Mapping[str, Any]) -> bool:
    api_version = str(obj.get("apiVersion") or f"{RBAC_GROUP}/v1")
    return api_version.split("/")[0] == RBAC_GROUP


def _dedupe(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(dict.fromkeys(rules))


class RbacIndex:
    """RBAC objects of one state, indexed for authorization.

    Build once with :meth:`from_objects` and reuse for many queries (the
    random-query comparison against SubjectAccessReview makes hundreds).
    """

    def __init__(
        self,
        roles: Mapping[tuple[str, str], tuple[Rule, ...]],
        cluster_roles: Mapping[str, _ClusterRole],
        bindings: Sequence[_Binding],
        *,
        resolve_aggregation: bool = True,
    ) -> None:
        self._roles = dict(roles)
        self._cluster_roles = dict(cluster_roles)
        self.cluster_role_bindings = tuple(b for b in bindings if b.kind == "ClusterRoleBinding")
        self._role_bindings: dict[str, list[_Binding]] = defaultdict(list)
        for b in bindings:
            if b.kind == "RoleBinding" and b.namespace:
                self._role_bindings[b.namespace].append(b)
        self.resolve_aggregation = resolve_aggregation
        self._resolved: dict[str, tuple[Rule, ...]] = {}

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]], *, resolve_aggregation: bool = True) -> RbacIndex:
        roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        cluster_roles: dict[str, _ClusterRole] = {}
        bindings: list[_Binding] = []
        for obj in flatten_objects(objects):
            kind = obj.get("kind")
            if kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding") or not _is_rbac(obj):
                continue
            meta = obj.get("metadata") or {}
            name = str(meta.get("name") or "")
            # Namespaced RBAC objects without a namespace land in "default",
            # as `kubectl apply` would put them.
            namespace = str(meta.get("namespace") or "default")
            rules = tuple(Rule.from_dict(r) for r in (obj.get("rules") or ()))
            if kind == "Role":
                roles[(namespace, name)] = rules
            elif kind == "ClusterRole":
                agg = obj.get("aggregationRule")
                selectors = None
                if agg is not None:
                    selectors = tuple((agg or {}).get("clusterRoleSelectors") or ())
                cluster_roles[name] = _ClusterRole(name, labels_of(obj), rules, selectors)
            else:
                ref = obj.get("roleRef") or {}
                bindings.append(_Binding(
                    kind=str(kind),
                    name=name,
                    namespace=namespace if kind == "RoleBinding" else None,
                    role_ref=_RoleRef(str(ref.get("kind") or ""), str(ref.get("name") or "")),
                    subjects=tuple(obj.get("subjects") or ()),
                ))
        return cls(roles, cluster_roles, bindings, resolve_aggregation=resolve_aggregation)

    # -- roles

    def cluster_role_rules(self, name: str) -> tuple[Rule, ...] | None:
        """Effective rules of a ClusterRole (aggregation resolved), None if missing."""
        if name not in self._cluster_roles:
            return None
        return self._resolve(name, frozenset())

    def _resolve(self, name: str, visiting: frozenset[str]) -> tuple[Rule, ...]:
        if name in self._resolved:
            return self._resolved[name]
        role = self._cluster_roles[name]
        if role.selectors is None or not self.resolve_aggregation or name in visiting:
            # On a cycle fall back to stored rules: the controller likewise only
            # ever copies what is currently stored in the other role.
            return role.rules
        rules = list(role.rules)
        visiting = visiting | {name}
        try:
            matched = [
                other_name
                for selector in role.selectors
                # The controller walks matching roles sorted by name and skips itself.
                for other_name in sorted(self._cluster_roles)
                if other_name != name and selector_matches(selector, self._cluster_roles[other_name].labels)
            ]
        except ValueError:
            return role.rules  # invalid selector: the controller leaves the role alone
        for other_name in matched:
            rules.extend(self._resolve(other_name, visiting))
        resolved = _dedupe(rules)
        if not visiting - {name}:  # only memoise top-level results (cycle-safe)
            self._resolved[name] = resolved
        return resolved

    def role_ref_rules(self, ref: _RoleRef, binding_namespace: str | None) -> tuple[Rule, ...]:
        """``GetRoleReferenceRules``; a missing role yields no rules."""
        if ref.kind == "ClusterRole":
            return self.cluster_role_rules(ref.name) or ()
        if ref.kind == "Role" and binding_namespace:
            return self._roles.get((binding_namespace, ref.name), ())
        return ()

    # -- bindings

    def bindings_for_namespace(self, namespace: str | None) -> Iterable[_Binding]:
        """ClusterRoleBindings, then (for a namespaced request) that namespace's RoleBindings."""
        yield from self.cluster_role_bindings
        if namespace:
            yield from self._role_bindings.get(namespace, ())

    def all_bindings(self) -> Iterable[_Binding]:
        yield from self.cluster_role_bindings
        for ns in sorted(self._role_bindings):
            yield from self._role_bindings[ns]

    # -- authorization

    def authorize(self, user: str, groups: Iterable[str], request: Request) -> Decision:
        groups_t = tuple(groups)
        group_set = frozenset(groups_t)
        # Non-resource requests carry no namespace in the authorizer.
        namespace = request.namespace if request.is_resource_request else None
        reasons: list[Grant] = []
        for binding in self.bindings_for_namespace(namespace):
            if not _applies_to(binding, user, group_set):
                continue
            for index, rule in enumerate(self.role_ref_rules(binding.role_ref, binding.namespace)):
                if rule.allows(request):
                    reasons.append(Grant(
                        binding.kind, binding.name, binding.namespace,
                        binding.role_ref.kind, binding.role_ref.name, index, rule,
                    ))
        return Decision(bool(reasons), request, user, groups_t, tuple(reasons))


def _subject_applies(subject: Mapping[str, Any], user: str, groups: frozenset[str], binding_ns: str | None) -> bool:
    kind = subject.get("kind")
    name = str(subject.get("name") or "")
    if kind == "User":
        return user == name
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or binding_ns
        if not sa_ns:
            return False
        return user == f"{SA_PREFIX}{sa_ns}:{name}"
    return False


def _applies_to(binding: _Binding, user: str, groups: frozenset[str]) -> bool:
    return any(_subject_applies(s, user, groups, binding.namespace) for s in binding.subjects)


def _binding_subject(subject: Mapping[str, Any], binding_ns: str | None) -> Subject | None:
    """Normalise a binding subject to a :class:`Subject` (None if it can match nobody)."""
    kind = subject.get("kind")
    name = str(subject.get("name") or "")
    if not name:
        return None
    if kind == "User":
        try:
            return Subject.user(name)
        except ValueError:
            # e.g. "system:serviceaccount:oops": a valid (odd) user name all the same.
            return Subject(SubjectKind.USER, name)
    if kind == "Group":
        return Subject(SubjectKind.GROUP, name)
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return Subject(SubjectKind.SERVICE_ACCOUNT, name, str(ns)) if ns else None
    return None


def _index(objects: Iterable[Mapping[str, Any]] | RbacIndex, resolve_aggregation: bool) -> RbacIndex:
    if isinstance(objects, RbacIndex):
        return objects
    return RbacIndex.from_objects(objects, resolve_aggregation=resolve_aggregation)


def authorize(
    objects: Iterable[Mapping[str, Any]] | RbacIndex,
    user: str,
    groups: Iterable[str],
    request: Request,
    *,
    resolve_aggregation: bool = True,
) -> Decision:
    """Authorize ``request`` for ``user`` with exactly ``groups`` (nothing is added).

    ``objects`` may be an :class:`RbacIndex` to avoid re-indexing per query.
    """
    return _index(objects, resolve_aggregation).authorize(user, groups, request)


def parse_resource_spec(spec: str) -> tuple[str, str, str | None]:
    """``RESOURCE[.GROUP][/SUBRESOURCE]`` -> (resource, group, subresource).

    ``pods`` -> ("pods", "", None); ``deployments.apps/scale`` ->
    ("deployments", "apps", "scale"); ``workflows.argoproj.io`` ->
    ("workflows", "argoproj.io", None). Resource names never contain dots, so
    everything after the first dot is the group. No discovery is done:
    short names (``po``, ``deploy``) are not expanded.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("empty resource")
    head, _, sub = spec.partition("/")
    resource, _, group = head.partition(".")
    if not resource:
        raise ValueError(f"malformed resource {spec!r}; want RESOURCE[.GROUP][/SUBRESOURCE]")
    return resource, group, (sub or None)


def check(
    objects: Iterable[Mapping[str, Any]] | RbacIndex,
    subject: str | Subject,
    verb: str,
    resource_spec: str,
    namespace: str | None = None,
    name: str | None = None,
    *,
    groups: Iterable[str] = (),
    resolve_aggregation: bool = True,
) -> Decision:
    """``kubectl auth can-i``-style check.

    ``subject``: ``system:serviceaccount:NS:NAME`` | ``group:NAME`` |
    ``user:NAME`` | bare user name. ``resource_spec``:
    ``RESOURCE[.GROUP][/SUBRESOURCE]``, or a non-resource URL starting with
    ``/``. ``groups`` adds credential groups to the ones implied by the subject.
    """
    subj = subject if isinstance(subject, Subject) else Subject.parse(subject)
    if resource_spec.startswith("/"):
        request = Request(verb=verb, path=resource_spec)
    else:
        resource, group, sub = parse_resource_spec(resource_spec)
        request = Request(verb=verb, group=group, resource=resource, subresource=sub,
                          namespace=namespace or None, name=name or None)
    return authorize(objects, subj.username, subj.groups(groups), request,
                     resolve_aggregation=resolve_aggregation)


# --------------------------------------------------------------------------- effective permissions


@dataclass(frozen=True, order=True)
class Permission:
    """One granted (verb, group, resource, namespace, name) tuple.

    ``resource`` includes ``/subresource``; wildcards stay ``*``. ``namespace``
    is ``"*"`` for grants via ClusterRoleBindings. Non-resource grants are
    encoded with ``group=""`` and ``resource`` = the URL (always starts with
    ``/``, which no resource name can).
    """

    verb: str
    group: str
    resource: str
    namespace: str
    resource_name: str | None = None

    @property
    def is_non_resource(self) -> bool:
        return self.resource.startswith("/")

    @property
    def key(self) -> tuple[str, str, str, str, str | None]:
        return (self.verb, self.group, self.resource, self.namespace, self.resource_name)

    def covers(self, other: Permission) -> bool:
        """Does holding ``self`` imply holding ``other`` (wildcard-aware)?"""
        if self.verb not in ("*", other.verb):
            return False
        if self.namespace not in (ALL_NAMESPACES, other.namespace):
            return False
        if self.is_non_resource or other.is_non_resource:
            if not (self.is_non_resource and other.is_non_resource):
                return False
            return _non_resource_url_matches((self.resource,), other.resource)
        if self.group not in ("*", other.group):
            return False
        if self.resource_name is not None and self.resource_name != other.resource_name:
            return False
        if self.resource in ("*", other.resource):
            return True
        sub = other.resource.partition("/")[2]
        return bool(sub) and self.resource == f"*/{sub}"


# Internally permissions are plain tuples: a live cluster gives controllers
# thousands each, and tuple hashing/equality runs in C where a dataclass's
# generated __eq__ runs in Python (a 10x difference in a diff).
_PermKey = tuple[str, str, str, str, "str | None"]


def _rule_keys(rule: Rule, namespace: str) -> Iterable[_PermKey]:
    names: tuple[str | None, ...] = rule.resource_names or (None,)
    for verb in rule.verbs:
        for group in rule.api_groups:
            for resource in rule.resources:
                for name in names:
                    yield (verb, group, resource, namespace, name)
        for url in rule.non_resource_urls:
            # Non-resource rules only ever apply via ClusterRoleBindings.
            if namespace == ALL_NAMESPACES:
                yield (verb, "", url, ALL_NAMESPACES, None)


def _effective_keys(index: RbacIndex) -> dict[Subject, frozenset[_PermKey]]:
    bindings = list(index.all_bindings())
    # Inverted index user/group -> bindings, built with the same rules as
    # _subject_applies, so each subject only touches the bindings naming it.
    by_user: dict[str, set[int]] = defaultdict(set)
    by_group: dict[str, set[int]] = defaultdict(set)
    subjects: set[Subject] = set()
    for i, b in enumerate(bindings):
        for s in b.subjects:
            subj = _binding_subject(s, b.namespace)
            if subj is None:
                continue
            subjects.add(subj)
            if subj.kind is SubjectKind.GROUP:
                by_group[subj.name].add(i)
            else:
                by_user[subj.username].add(i)

    # Expand each binding once: bindings to system:authenticated apply to
    # every user and would otherwise be re-expanded per subject.
    granted: dict[int, frozenset[_PermKey]] = {}

    def grants(i: int) -> frozenset[_PermKey]:
        if i not in granted:
            b = bindings[i]
            ns = b.namespace or ALL_NAMESPACES
            granted[i] = frozenset(
                k for rule in index.role_ref_rules(b.role_ref, b.namespace) for k in _rule_keys(rule, ns)
            )
        return granted[i]

    result: dict[Subject, frozenset[_PermKey]] = {}
    for subj in sorted(subjects):
        applicable = set(by_user.get(subj.username, ())) if subj.username else set()
        for g in subj.groups():
            applicable |= by_group.get(g, set())
        result[subj] = frozenset().union(*(grants(i) for i in sorted(applicable)))
    return result


def effective_permissions(
    objects: Iterable[Mapping[str, Any]] | RbacIndex,
    *,
    resolve_aggregation: bool = True,
) -> dict[Subject, frozenset[Permission]]:
    """Permissions of every subject named in any binding.

    Users and service accounts also get what their implied groups grant
    (``system:authenticated``, ``system:serviceaccounts[:NS]``), since that is
    what they can effectively do; a Group subject gets only its own bindings.
    """
    keys = _effective_keys(_index(objects, resolve_aggregation))
    return {s: frozenset(Permission(*k) for k in ks) for s, ks in keys.items()}


# --------------------------------------------------------------------------- diff


class ChangeDirection(str, Enum):
    GAINS = "gains"
    LOSES = "loses"


def _verb_key(verb: str) -> tuple[int, str]:
    try:
        return (_VERB_ORDER.index(verb), verb)
    except ValueError:
        return (len(_VERB_ORDER), verb)


@dataclass(frozen=True)
class PermissionChange:
    """Verbs a subject gains or loses on one (group, resource, namespace, name)."""

    subject: Subject
    direction: ChangeDirection
    verbs: tuple[str, ...]
    group: str
    resource: str
    namespace: str
    resource_name: str | None = None

    @property
    def target(self) -> str:
        """``group/resource``; core-group (and non-resource URL) targets are written bare."""
        return self.resource if not self.group else f"{self.group}/{self.resource}"

    @property
    def text(self) -> str:
        target = self.target
        if self.resource_name is not None:
            target += f" named {self.resource_name!r}"
        where = "cluster-wide" if self.namespace == ALL_NAMESPACES else f"in {self.namespace}"
        return f"{self.subject} {self.direction.value} {', '.join(self.verbs)} on {target} {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": str(self.subject),
            "subjectRef": self.subject.to_dict(),
            "direction": self.direction.value,
            "verbs": list(self.verbs),
            "group": self.group,
            "resource": self.resource,
            "namespace": self.namespace,
            "resourceName": self.resource_name,
            "text": self.text,
        }


def _generalizations(p: _PermKey) -> Iterable[_PermKey]:
    """Every resource permission that could cover ``p`` (same result as :meth:`Permission.covers`).

    Enumerating the few wildcard forms and probing a set is O(1) per
    permission, where comparing against every held permission would be
    quadratic.
    """
    verb, group, resource, ns, name = p
    resources = {resource, "*"}
    sub = resource.partition("/")[2]
    if sub:
        resources.add(f"*/{sub}")
    for v in {verb, "*"}:
        for g in {group, "*"}:
            for r in resources:
                for n in {ns, ALL_NAMESPACES}:
                    for rn in {name, None}:
                        yield (v, g, r, n, rn)


def _uncovered(perms: frozenset[_PermKey], others: frozenset[_PermKey]) -> set[_PermKey]:
    """Permissions of ``perms`` that nothing in ``others`` covers."""
    candidates = perms - others  # fast path: most permissions are unchanged
    urls: list[Permission] | None = None
    out: set[_PermKey] = set()
    for p in candidates:
        if p[2].startswith("/"):
            # Non-resource URLs are few and their prefix wildcards ("/api**")
            # do not enumerate well, so they are compared pairwise.
            if urls is None:
                urls = [Permission(*o) for o in others if o[2].startswith("/")]
            wanted = Permission(*p)
            if not any(o.covers(wanted) for o in urls):
                out.add(p)
        elif not any(g in others for g in _generalizations(p)):
            out.add(p)
    return out


def _group_changes(subject: Subject, direction: ChangeDirection, perms: Iterable[_PermKey]) -> list[PermissionChange]:
    grouped: dict[tuple[str, str, str, str | None], set[str]] = defaultdict(set)
    for verb, group, resource, ns, name in perms:
        grouped[(group, resource, ns, name)].add(verb)
    return [
        PermissionChange(subject, direction, tuple(sorted(verbs, key=_verb_key)), g, r, ns, rn)
        for (g, r, ns, rn), verbs in grouped.items()
    ]


def diff_permissions(
    before_objects: Iterable[Mapping[str, Any]] | RbacIndex,
    after_objects: Iterable[Mapping[str, Any]] | RbacIndex,
    *,
    resolve_aggregation: bool = True,
) -> list[PermissionChange]:
    """What each subject gains and loses between two states.

    A permission counts as lost only if nothing in the after-state *covers* it
    (and symmetrically for gains), so moving ``get pods`` from cluster-wide to
    a namespace reads as "loses get on pods cluster-wide" while re-granting it
    through another binding is no change at all.
    """
    if before_objects is after_objects:
        return []  # one state on both sides (a plan that changes nothing): no permission can change
    before = _effective_keys(_index(before_objects, resolve_aggregation))
    after = _effective_keys(_index(after_objects, resolve_aggregation))
    changes: list[PermissionChange] = []
    empty: frozenset[_PermKey] = frozenset()
    for subj in sorted(set(before) | set(after)):
        b = before.get(subj, empty)
        a = after.get(subj, empty)
        changes += _group_changes(subj, ChangeDirection.LOSES, _uncovered(b, a))
        changes += _group_changes(subj, ChangeDirection.GAINS, _uncovered(a, b))
    changes.sort(key=lambda c: (
        str(c.subject), c.direction.value != "loses", c.namespace != ALL_NAMESPACES,
        c.namespace, c.group, c.resource, c.resource_name or "",
    ))
    return changes
