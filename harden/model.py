"""The vocabulary every stage shares: resource keys, actions, field changes, plans.

Values are frozen dataclasses; anything that is serialized (actions, change kinds) is a `str`
enum so a saved plan is plain JSON that round-trips without pickle. `Action` values are the
glyphs the plan prints, as in Terraform's `plans.Action`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from . import __version__

MANAGER = "harden"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PROFILE = "harden.dev/profile"
LABEL_STACK = "harden.dev/stack"
# On an object harden patches: what its fields held before harden, and who owned them (JSON), written
# in the same request as the patch, so the original survives a lost state directory.
ANNOTATION_ORIGINAL = "harden.dev/original"
PLAN_FORMAT = 2


def field_manager(stack: str) -> str:
    """Each stack applies under its own field manager, so one stack's apply can never prune the
    fields another stack set (server-side apply removes fields a manager stops sending)."""
    return MANAGER if stack == "default" else f"{MANAGER}-{stack}"

Obj = dict[str, Any]


class ResourceKey(NamedTuple):
    """Identity of an object: group, kind, namespace, name (as gitops-engine's ResourceKey).

    A named tuple, not a frozen dataclass: every index of the live state is keyed by it, and a
    tuple hashes and compares in C where a dataclass calls Python `__hash__` and `__eq__` on each
    lookup (a third of the cost of indexing 13,000 objects).
    """

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Obj) -> ResourceKey:
        api_version = obj.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        meta = obj.get("metadata") or {}
        return cls(group, obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""))

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        """Inverse of `str()`: `[group/]Kind/[namespace/]name`, e.g. `networking.k8s.io/NetworkPolicy/argo/x`."""
        parts = text.split("/")
        if len(parts) == 4:
            return cls(*parts)
        if len(parts) == 3:
            # Ambiguous without the group; `str()` always writes 4 parts for namespaced objects
            # and `group/Kind//name` for cluster-scoped ones, so 3 parts means core-group Kind/ns/name.
            return cls("", parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return cls("", parts[0], "", parts[1])
        raise ValueError(f"not a resource key: {text!r}")

    def __str__(self) -> str:
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}"

    def display(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{kind} {where}"

    def to_dict(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace, "name": self.name}


class Action(str, enum.Enum):
    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"
    RELEASE = "<"  # give fields harden set back to their previous owner and value
    NOOP = " "

    @property
    def verb(self) -> str:
        return {"+": "created", "~": "updated in place", "-": "destroyed",
                "<": "released (restored to its value before harden)", " ": "unchanged"}[self.value]


class ChangeKind(str, enum.Enum):
    OBJECT = "object"  # an object harden owns outright
    PATCH = "patch"    # fields harden sets on an object another actor owns


class Phase(str, enum.Enum):
    """When a change is written, decided by the plan; apply runs the phases in this order.

    A default-deny NetworkPolicy lands only after the allowances written in the same run and is
    the first thing removed, so no run opens a window in which traffic Argo needs is dropped.
    Writes go before removals.
    """

    PREPARE = "prepare"      # service accounts, before the token Secrets and bindings naming them
    WRITE = "write"          # objects and patches that grant or allow
    ISOLATE = "isolate"      # default-deny policies, once their allowances are in
    UNISOLATE = "unisolate"  # default-deny policies going away, before their allowances
    REMOVE = "remove"        # everything else harden stops managing

    @property
    def order(self) -> int:
        return list(Phase).index(self)


@dataclass(frozen=True)
class SourceRef:
    """Where a change comes from: the profile (or stack) file and line that asked for it."""

    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SourceRef:
        d = d or {}
        return cls(d.get("file"), d.get("line"))


@dataclass(frozen=True)
class Restore:
    """What a patch hands back on release: the fields' earlier values (a partial object) and the
    field manager that owned them."""

    body: Obj
    manager: str

    def to_dict(self) -> dict[str, Any]:
        return {"body": self.body, "manager": self.manager}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Restore | None:
        if d is None:
            return None
        return cls(d.get("body") or {}, d.get("manager") or f"{MANAGER}-release")


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class FieldConflict:
    """A field harden will change that another field manager owns (server-side apply conflict)."""

    path: str
    manager: str
    operation: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "manager": self.manager, "operation": self.operation}


@dataclass(frozen=True)
class Change:
    key: ResourceKey
    api_version: str
    action: Action
    kind: ChangeKind
    profiles: tuple[str, ...]
    reason: str
    body: Obj | None = None                 # what apply sends (SSA config, or restore patch)
    fields: tuple[FieldChange, ...] = ()
    conflicts: tuple[FieldConflict, ...] = ()
    observed_resource_version: str | None = None  # None: the object did not exist
    restore: Restore | None = None          # for patches: what release puts back, and as whom
    field_paths: tuple[str, ...] = ()       # for patches: the fields harden sets
    release_first: Obj | None = None        # for patches: fields harden stops setting, put back first
    phase: Phase = Phase.WRITE
    source: SourceRef = SourceRef()
    in_sync: str | None = None              # no-op objects: what apply records (`Record.in_sync`)

    @property
    def profile(self) -> str:
        """The profiles as one label, for display."""
        return ", ".join(self.profiles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key.to_dict(),
            "address": str(self.key),
            "apiVersion": self.api_version,
            "action": self.action.name.lower(),
            "kind": self.kind.value,
            "profiles": list(self.profiles),
            "reason": self.reason,
            "phase": self.phase.value,
            "source": self.source.to_dict(),
            "body": self.body,
            "fields": [f.to_dict() for f in self.fields],
            "conflicts": [c.to_dict() for c in self.conflicts],
            "observedResourceVersion": self.observed_resource_version,
            "restore": self.restore.to_dict() if self.restore else None,
            "fieldPaths": list(self.field_paths),
            "releaseFirst": self.release_first,
        } | ({"inSync": self.in_sync} if self.in_sync else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        return cls(
            key=ResourceKey(**d["key"]),
            api_version=d["apiVersion"],
            action=Action[d["action"].upper()],
            kind=ChangeKind(d["kind"]),
            profiles=tuple(d["profiles"]),
            reason=d["reason"],
            phase=Phase(d.get("phase", Phase.WRITE.value)),
            source=SourceRef.from_dict(d.get("source")),
            body=d.get("body"),
            fields=tuple(FieldChange(**f) for f in d.get("fields", [])),
            conflicts=tuple(FieldConflict(**c) for c in d.get("conflicts", [])),
            observed_resource_version=d.get("observedResourceVersion"),
            restore=Restore.from_dict(d.get("restore")),
            field_paths=tuple(d.get("fieldPaths", [])),
            release_first=d.get("releaseFirst"),
            in_sync=d.get("inSync"),
        )


@dataclass(frozen=True)
class TargetReport:
    """Which live object a profile target resolved to, and how (shown in the plan)."""

    profile: str
    target: str
    description: str
    chosen: str | None          # the candidate that matched, described
    key: str | None             # the object it matched
    candidates: tuple[str, ...]
    optional: bool

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "target": self.target, "description": self.description,
                "chosen": self.chosen, "key": self.key, "candidates": list(self.candidates),
                "optional": self.optional}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetReport:
        return cls(d["profile"], d["target"], d.get("description", ""), d.get("chosen"), d.get("key"),
                   tuple(d.get("candidates", ())), bool(d.get("optional")))


@dataclass(frozen=True)
class Detected:
    """A parameter value read from the install rather than given by the user."""

    profile: str
    parameter: str
    value: Any
    source: str  # the target it was read from, described

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "parameter": self.parameter, "value": self.value, "from": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detected:
        return cls(d["profile"], d["parameter"], d.get("value"), d.get("from", ""))


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """The result of a profile check or expectation, evaluated on the live or predicted state."""

    profile: str
    id: str
    passed: bool
    severity: Severity
    message: str
    kind: str = "check"  # check | expectation
    source: str | None = None  # profile file, for SARIF locations
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"profile": self.profile, "id": self.id, "passed": self.passed,
             "severity": self.severity.value, "message": self.message, "kind": self.kind}
        if self.source:
            d["source"] = self.source
        if self.line:
            d["line"] = self.line
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(profile=d["profile"], id=d["id"], passed=d["passed"], severity=Severity(d["severity"]),
                   message=d["message"], kind=d.get("kind", "check"), source=d.get("source"),
                   line=d.get("line"))


@dataclass(frozen=True)
class Plan:
    stack: str
    lineage: str | None
    serial: int
    changes: tuple[Change, ...]
    findings: tuple[Finding, ...] = ()
    targets: tuple[TargetReport, ...] = ()  # which object each profile target resolved to (or none)
    detected: tuple[Detected, ...] = ()     # parameter values read from the install (detect:)
    impact: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    harden_version: str = ""

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    def counts(self) -> dict[str, int]:
        acts = [c.action for c in self.actionable]
        return {"add": acts.count(Action.CREATE), "change": acts.count(Action.UPDATE),
                "release": acts.count(Action.RELEASE), "destroy": acts.count(Action.DELETE)}

    @property
    def failed_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.passed and f.severity is Severity.ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "formatVersion": PLAN_FORMAT,
            "hardenVersion": self.harden_version,
            "createdAt": self.created_at,
            "stack": self.stack,
            "lineage": self.lineage,
            "serial": self.serial,
            "source": self.source,
            "selection": self.selection,
            "summary": self.counts(),
            "changes": [c.to_dict() for c in self.changes],
            "targets": [t.to_dict() for t in self.targets],
            "detected": [d.to_dict() for d in self.detected],
            "findings": [f.to_dict() for f in self.findings],
            "impact": self.impact,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            stack=d["stack"], lineage=d.get("lineage"), serial=d["serial"],
            changes=tuple(Change.from_dict(c) for c in d["changes"]),
            findings=tuple(Finding.from_dict(f) for f in d.get("findings", [])),
            targets=tuple(TargetReport.from_dict(t) for t in d.get("targets", [])),
            detected=tuple(Detected.from_dict(x) for x in d.get("detected", [])), impact=d.get("impact", {}),
            source=d.get("source", {}), selection=d.get("selection", {}),
            created_at=d.get("createdAt", ""), harden_version=d.get("hardenVersion", ""),
        )


@dataclass
class Live:
    """The observed objects, indexed by key."""

    objects: dict[ResourceKey, Obj] = field(default_factory=dict)
    kinds: set[tuple[str, str]] = field(default_factory=set)
    source: dict[str, Any] = field(default_factory=dict)

    def get(self, key: ResourceKey) -> Obj | None:
        return self.objects.get(key)

    def of_kind(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return [o for k, o in self.objects.items()
                if k.kind == kind and (namespace is None or k.namespace == namespace)]

    def all(self) -> list[Obj]:
        return list(self.objects.values())


STATE_FORMAT = 2


@dataclass(frozen=True)
class Record:
    key: str
    api_version: str
    kind: ChangeKind
    profiles: tuple[str, ...]
    digest: str
    field_paths: tuple[str, ...] = ()
    restore: Restore | None = None  # patches: the fields' values and owner before harden
    # Objects: `RESOURCEVERSION/UID@HARDENVERSION` of the object when this harden found it in sync
    # with the body of `digest`, from what the server returned for its write or from a plan's diff
    # (see `harden.plan.in_sync_token`). A plan that finds the same resourceVersion of the same
    # object and the same body needs no diff: every write moves the resourceVersion on. None: the
    # plan compares field by field.
    in_sync: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "apiVersion": self.api_version, "kind": self.kind.value,
                             "profiles": list(self.profiles), "digest": self.digest}
        if self.field_paths:
            d["fieldPaths"] = list(self.field_paths)
        if self.restore is not None:
            d["restore"] = self.restore.to_dict()
        if self.in_sync is not None:
            d["inSync"] = self.in_sync
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        # State format 1 joined several profiles into one string: "a, b".
        profiles = tuple(d["profiles"]) if "profiles" in d else tuple(d["profile"].split(", "))
        in_sync = d.get("inSync")
        return cls(d["key"], d["apiVersion"], ChangeKind(d["kind"]), profiles, d["digest"],
                   tuple(d.get("fieldPaths", [])), Restore.from_dict(d.get("restore")),
                   in_sync if isinstance(in_sync, str) else None)


@dataclass(frozen=True)
class State:
    stack: str
    lineage: str | None = None
    serial: int = 0
    records: dict[str, Record] = field(default_factory=dict)
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"formatVersion": STATE_FORMAT, "hardenVersion": __version__, "stack": self.stack,
                "lineage": self.lineage, "serial": self.serial, "updatedAt": self.updated_at,
                "records": {k: r.to_dict() for k, r in sorted(self.records.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        return cls(d["stack"], d.get("lineage"), d.get("serial", 0),
                   {k: Record.from_dict(r) for k, r in d.get("records", {}).items()}, d.get("updatedAt", ""))

    def with_records(self, records: dict[str, Record]) -> State:
        """The next serial of this state (a new lineage on first write)."""
        return replace(self, lineage=self.lineage or str(uuid.uuid4()), serial=self.serial + 1,
                       records=dict(records), updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
