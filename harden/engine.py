"""The pipeline, chained: select -> render -> observe -> plan -> findings and impact.

Commands call these functions; nothing here prints. Building the plan reads the cluster (or the
snapshot) once, in bulk; everything after that is pure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .checks import run_checks
from .errors import Diagnostic, Diagnostics, HardenError, InputError
from .gcpause import collector_paused
from .graph import Install, find_installs, select_install, shared_roles
from .impact import needs
from .load import Selection, builtin_profile_names, load_profile, select, stack_name
from .model import Action, Change, ChangeKind, Detected, Finding, Plan, Severity
from .needs import component_specs
from .observe import CLUSTER_SCOPED, ClusterSource, Live, SnapshotSource
from .plan import detect, kinds_needed, make_plan, predict
from .render import Rendered, render
from .state import Backend, FileBackend, State, StateURL, parse_state_url


@dataclass(frozen=True)
class Request:
    profiles: tuple[str, ...] = ()
    stack_file: str | None = None
    sets: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    snapshot: str | None = None
    snapshot_namespace: str = "default"
    state_dir: str = "state"
    request_timeout: str = "60s"  # per Kubernetes API request (`--request-timeout`)
    state: str | None = None      # a state URL (`--state`, or `--state-dir` given explicitly)
    lock_duration: str = "30s"    # the in-cluster lock's Lease duration (`--lock-duration`)
    state_key: str | None = None  # `<stack>@<context>` when one run spans several clusters
    contexts: tuple[str, ...] = ()  # `--context` given more than once


@dataclass
class Planned:
    plan: Plan
    live: Live | None  # None for a saved plan: it carries what was observed when it was made
    client: Any
    backend: Backend
    state: State
    profile_files: dict[str, str] = field(default_factory=dict)
    after: list[dict] = field(default_factory=list)  # the objects as the plan would leave them


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_duration(text: str, flag: str) -> float:
    """Seconds from `30s`, `2m`, `1h` or a plain number of seconds (a flag's value)."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise InputError(f"{flag} {text!r} is not a duration", field=flag, hint="write it like 30s, 2m or 0")
    return seconds


def connect(req: Request) -> tuple[Any, Any]:
    """(source, client): a snapshot needs no client; a cluster goes through `harden.kube`."""
    if req.snapshot:
        return SnapshotSource(req.snapshot, req.snapshot_namespace), None
    from .kube import KubeClient, Timeouts  # imported lazily: offline use never loads the client

    timeout = parse_duration(req.request_timeout, "--request-timeout")
    if timeout <= 0:
        raise InputError("--request-timeout must be more than 0", field="--request-timeout",
                         hint="a request that may wait forever hangs a pipeline on a half-open connection; "
                              "write e.g. 60s")
    client = KubeClient(req.kubeconfig, req.context, timeouts=Timeouts.of(timeout))
    return ClusterSource(client), client


def stack_settings(stack_file: str | None) -> dict[str, Any]:
    """What a stack file says about where it runs: `state` (a URL) and `clusters` (contexts)."""
    if not stack_file:
        return {}
    from .yamlsrc import load_file

    docs = load_file(stack_file)
    data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
    return {k: data[k] for k in ("state", "clusters") if k in data}


def state_location(req: Request) -> StateURL:
    """Where state lives: --state (or an explicit --state-dir), HARDEN_STATE, the stack file's
    `state:`, then the state directory (HARDEN_STATE_DIR, default `state/`)."""
    if req.state:
        return parse_state_url(req.state, "--state")
    if os.environ.get("HARDEN_STATE"):
        return parse_state_url(os.environ["HARDEN_STATE"], "HARDEN_STATE")
    settings = stack_settings(req.stack_file)
    if settings.get("state"):
        return parse_state_url(str(settings["state"]), "state")
    return parse_state_url(req.state_dir, "--state-dir")


def per_cluster(req: Request) -> list[Request]:
    """One request per cluster: several `--context`s, or the stack file's `clusters:` (unless one
    --context picks a cluster). Across clusters each keeps its own state and lock, under the key
    `<stack>@<context>`; a single cluster keeps the plain stack key."""
    names = list(req.contexts)
    listed = [str(c) for c in stack_settings(req.stack_file).get("clusters") or []]
    stack = stack_name(req.stack_file)
    if not names and req.context is not None:
        # One cluster of a multi-cluster stack keeps the key it has in a run over all of them.
        return [replace(req, state_key=f"{stack}@{req.context}") if listed else req]
    names = names or listed
    if not names:
        return [req]
    return [replace(req, context=c, contexts=(), state_key=f"{stack}@{c}") for c in names]


def open_backend(req: Request, stack: str, client: Any = None) -> Backend:
    """The stack's state backend; an in-cluster one talks to the cluster `req` names."""
    where = state_location(req)
    key = req.state_key or stack
    if where.scheme == "file":
        return FileBackend(where.location, stack, key)
    from .statebackend_kube import KubeBackend

    if client is None:
        from .kube import KubeClient, Timeouts

        client = KubeClient(req.kubeconfig, req.context,
                            timeouts=Timeouts.of(parse_duration(req.request_timeout, "--request-timeout")))
    seconds = parse_duration(req.lock_duration, "--lock-duration")
    if seconds < 1:
        raise InputError("--lock-duration must be at least 1s", field="--lock-duration",
                         hint="the lock is renewed every third of it; write e.g. 30s")
    return KubeBackend(client, where.location, stack, key, lease_seconds=int(seconds))


def rendered_for(selection: Selection) -> list[Rendered]:
    return [render(s, selection.stack) for s in selection.items]


def declared_kinds(stack_file: str | None, sets: list[str]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every object the stack's profiles (or the built-in ones) declare."""
    if stack_file:
        profiles = [s.profile for s in select([], stack_file, sets).items]
    else:
        profiles = [load_profile(name) for name in builtin_profile_names()]
    return {(str(o.get("apiVersion")), str(o.get("kind"))) for p in profiles for o in p.data.get("objects", [])}


def build_plan(req: Request, *, destroy: bool = False, with_impact: bool = True,
               backend: Backend | None = None) -> Planned:
    # Rendering, reading, diffing and indexing thousands of objects, the collector walked them
    # again and again: 0.12 s of a 1.45 s no-change plan at 10,000 objects. One collection at the
    # end (of what the read did not freeze) frees the cycles a diff leaves (harden.gcpause).
    with collector_paused(collect=True):
        return _build_plan(req, destroy=destroy, with_impact=with_impact, backend=backend)


def _build_plan(req: Request, *, destroy: bool, with_impact: bool, backend: Backend | None) -> Planned:
    names = {load_profile(p).name for p in req.profiles} if destroy else set()
    if destroy and req.stack_file and names:
        # Destroying some profiles of a stack = planning the stack without them, keeping only what
        # touches them: their objects go, and a patch they share with others keeps the others' fields.
        full = select([], req.stack_file, list(req.sets))
        selection = replace(full, items=tuple(i for i in full.items if i.profile.name not in names))
    elif destroy:
        # Destroy needs no parameter values: it removes what state (and the stack label) say the
        # stack manages; --profile narrows it to those profiles, otherwise it is the whole stack.
        selection = Selection(stack_name(req.stack_file), ())
    else:
        selection = select(list(req.profiles), req.stack_file, list(req.sets))
    rendered = rendered_for(selection)
    source, client = connect(req)
    backend = backend or open_backend(req, selection.stack, client)
    state = backend.read()
    kinds = kinds_needed(rendered, state)
    if destroy:
        # With its state lost, what a stack owns is found by label: every kind its profiles (or, with
        # no stack file, any built-in profile) can create must be read.
        kinds |= declared_kinds(req.stack_file, list(req.sets))
    live = source.observe(kinds)
    keys = source.merge_keys(kinds)
    # Each profile is pointed at one install, found from its workloads; its targets and subjects
    # come from that install's graph. Then the profile is rendered again, with the graph known.
    installs = find_installs(live, component_specs())
    chosen = choose_installs(selection, installs)
    rendered = [render(sel, selection.stack, chosen.get(sel.profile.name)) if sel.profile.name in chosen else r
                for sel, r in zip(selection.items, rendered, strict=True)]
    # Parameters the install can tell us are read from the targets found, unless the user set
    # them; then the profile is rendered again.
    detected: list[Detected] = []
    items, again = [], []
    for sel, r in zip(selection.items, rendered, strict=True):
        changed, report = detect(sel, r, live)
        detected += report
        sel = replace(sel, values={**sel.values, **changed}) if changed else sel
        items.append(sel)
        again.append(render(sel, selection.stack, chosen.get(sel.profile.name)) if changed else r)
    selection = replace(selection, items=tuple(items))
    rendered = again
    files = {s.profile.name: s.profile.file for s in selection.items}
    if destroy and selection.items:
        plan = make_plan(rendered, live, state, selection.stack, selection={"destroy": sorted(names)},
                         profile_files=files, created_at=_now(), keys=keys)
        touched = {k for k, r in state.records.items() if names & set(r.profiles)}
        plan = replace(plan, changes=tuple(c for c in plan.changes
                                           if str(c.key) in touched or names & set(c.profiles)))
    elif destroy:
        plan = make_plan([], live, state, selection.stack, selection={"destroy": sorted(names) or "all"},
                         destroy_profiles=names, created_at=_now(), keys=keys)
    else:
        plan = make_plan(rendered, live, state, selection.stack, selection=selection.description, profile_files=files,
                         created_at=_now(), keys=keys)
    refuse_shared_roles(plan, selection, chosen, installs, live)
    findings: list[Finding] = missing_namespaces(plan, live)
    after = predict(live, plan, keys)
    if not destroy:
        # Checks and expectations speak of the state the plan promises: the cluster after apply.
        for r in rendered:
            findings += run_checks(r.profile, r.checks, after, files.get(r.profile))
        findings += evaluate_expectations(rendered, after, files)
    used = sorted({i for i in chosen.values()}, key=lambda i: (i.product, i.name))
    # Both states are indexed once (RBAC, NetworkPolicies) for the needs and the security impact.
    # A plan that changes nothing predicts the state it started from: one index serves both sides.
    before_state = needs.State(live.all())
    states = before_state, (needs.State(after) if plan.actionable else before_state)
    results = needs.evaluate([(i, [s for s in component_specs() if s.product == i.product]) for i in used],
                             live.all(), after, plan.actionable,
                             {k: v for sel in selection.items for k, v in sel.values.items()}, states)
    findings += need_findings(results, selection)
    impact = security_impact(live.all(), after, states) if with_impact else {}
    impact = {**impact, "installs": [install_report(i, i in used) for i in installs],
              "needs": [r.to_dict() for r in results]}
    plan = replace(plan, findings=tuple(findings), impact=impact, detected=tuple(detected),
                   source={**plan.source, **({"stateKey": req.state_key} if req.state_key else {})})
    return Planned(plan, live, client, backend, state, files, after)


def choose_installs(selection: Selection, installs: list[Install]) -> dict[str, Install]:
    """The install each profile of a product hardens: the one in its `namespace` (and, when the user
    names a `release`, that Helm instance). Every profile that cannot be pointed at exactly one
    install is reported, all at once."""
    chosen: dict[str, Install] = {}
    problems: list[Diagnostic] = []
    for sel in selection.items:
        product = (sel.profile.data.get("metadata") or {}).get("product")
        if not product:
            continue
        instance = sel.values.get("release") if "release" in sel.given else None
        try:
            chosen[sel.profile.name] = select_install(installs, product, str(sel.values.get("namespace")), instance,
                                                      file=sel.profile.file)
        except HardenError as exc:
            problems += [replace(d, summary=f"profile {sel.profile.name!r}: {d.summary}") for d in exc.diagnostics]
    if problems:
        raise Diagnostics(problems)
    return chosen


def refuse_shared_roles(plan: Plan, selection: Selection, chosen: dict[str, Install], installs: list[Install],
                        live: Live) -> None:
    """A profile never edits a role that subjects outside its install are bound to as well: that
    would change another install's (or another team's) permissions."""
    problems: list[Diagnostic] = []
    files = {s.profile.name: s.profile.file for s in selection.items}
    for c in plan.actionable:
        if c.kind is not ChangeKind.PATCH or c.key.kind not in ("Role", "ClusterRole"):
            continue
        for profile in c.profiles:
            install = chosen.get(profile)
            if install is None:
                continue
            others = shared_roles(install, installs, live).get(c.key)
            if others:
                problems.append(Diagnostic(
                    f"profile {profile!r}: {c.key.display()} is bound to {', '.join(sorted(others))} as well as to "
                    f"the {install.product} install in {install.name}; editing it would change their permissions too",
                    file=files.get(profile), line=c.source.line,
                    hint="give the install a role of its own (as its upstream manifests do), then plan again"))
    if problems:
        raise Diagnostics(problems)


def missing_namespaces(plan: Plan, live: Live) -> list[Finding]:
    """An object is created only in a namespace that exists: the API server would refuse it
    mid-apply, after the writes before it had landed. harden does not create namespaces (profiles
    cannot declare them); whoever owns them does. Against a cluster the plan is refused; a
    snapshot may just not hold the namespace, so there it is a warning."""
    present = {o["metadata"]["name"] for o in live.of_kind("Namespace")}
    missing: dict[str, list[Change]] = {}
    for c in plan.actionable:
        if (c.action is Action.CREATE and c.key.namespace and c.key.namespace not in present
                and c.key.kind not in CLUSTER_SCOPED):
            missing.setdefault(c.key.namespace, []).append(c)
    problems = []
    for ns, cs in sorted(missing.items()):
        what = (f"{len(cs)} object(s) there ({', '.join(c.key.display() for c in cs[:3])}"
                f"{', ...' if len(cs) > 3 else ''}) for {', '.join(sorted({p for c in cs for p in c.profiles}))}")
        problems.append((ns, cs[0], what))
    if live.source.get("kind") == "snapshot":
        return [Finding(c.profiles[0], f"namespace-{ns}", False, Severity.WARNING,
                        f"namespace {ns!r} is not in the snapshot; the plan creates {what}: apply fails unless it "
                        "exists", source=c.source.file, line=c.source.line) for ns, c, what in problems]
    if problems:
        raise Diagnostics([Diagnostic(f"namespace {ns!r} does not exist; the plan would create {what}",
                                      file=c.source.file, line=c.source.line,
                                      hint=f"create it first (kubectl create namespace {ns}), or remove it from "
                                           "the parameter that names it")
                           for ns, c, what in problems])
    return []


def install_report(install: Install, selected: bool) -> dict:
    return {"product": install.product, "name": install.name, "selected": selected,
            "components": [{"name": c.name, "workload": c.workload.display(), "foundBy": c.found_by,
                            "serviceAccount": c.service_account, "roles": [r.display() for r in c.roles],
                            "configMap": c.config_map.display() if c.config_map else None}
                           for c in install.components]}


def need_findings(results: list[needs.NeedResult], selection: Selection) -> list[Finding]:
    """A broken need fails the plan (an error finding); one unmet before the plan is a warning.
    An allow-profile selected without the profile it `requires` is named as the likely cause."""
    out: list[Finding] = []
    selected = {s.profile.name for s in selection.items}
    missing = sorted({f"{s.profile.name} needs {r}" for s in selection.items
                      for r in (s.profile.data.get("metadata") or {}).get("requires") or [] if r not in selected})
    if missing and any(r.status is needs.NeedStatus.BROKEN for r in results):
        for sel in selection.items:
            for needed in (sel.profile.data.get("metadata") or {}).get("requires") or []:
                if needed not in selected:
                    out.append(Finding(sel.profile.name, f"requires-{needed}", False, Severity.ERROR,
                                       f"{sel.profile.name} relies on {needed}, which is not selected: its policies "
                                       f"isolate the pods they select, and {needed} keeps DNS and the API server "
                                       f"reachable for them; add --profile {needed}", kind="check",
                                       source=sel.profile.file, line=sel.profile.line("metadata", "requires")))
    for r in results:
        if r.status is needs.NeedStatus.BROKEN:
            by = f"; changed by {', '.join(r.broken_by)}" if r.broken_by else ""
            hint = f"; select the profiles it relies on ({', '.join(missing)})" if missing else ""
            out.append(Finding("install", f"{r.component}/{r.need}", False, Severity.ERROR,
                               f"{r.component} of {r.install} needs this ({r.why}): {r.message}{by}{hint} "
                               f"[{r.source}]", kind="need"))
        elif r.status is needs.NeedStatus.UNMET:
            out.append(Finding("install", f"{r.component}/{r.need}", False, Severity.WARNING,
                               f"{r.component} of {r.install} needs this ({r.why}) and did not have it before the "
                               f"plan either: {r.message} [{r.source}]", kind="need"))
    return out


def evaluate_expectations(rendered: list[Rendered], objs: list[dict], files: dict[str, str]) -> list[Finding]:
    from .impact import expectations

    out: list[Finding] = []
    for r in rendered:
        for e in r.expectations:
            ok, message = expectations.evaluate(objs, e)
            out.append(Finding(r.profile, e["id"], ok, Severity.ERROR, message, kind="expectation",
                               source=files.get(r.profile), line=e.get("line")))
    return out


def security_impact(before: list[dict], after: list[dict],
                    states: tuple[needs.State, needs.State] | None = None) -> dict:
    from .impact import summary

    if states is None:
        return summary.impact(before, after)
    b, a = states
    return summary.impact(before, after, rbac_indexes=(b.rbac, a.rbac), networks=(b.net, a.net))
