"""The pipeline, chained: select -> render -> observe -> plan -> findings and impact.

Commands call these functions; nothing here prints. Building the plan reads the cluster (or the
snapshot) once, in bulk; everything after that is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from .checks import run_checks
from .errors import InputError
from .load import Selection, load_profile, select, stack_name
from .model import Finding, Plan, Severity
from .observe import ClusterSource, Live, SnapshotSource
from .plan import detect, kinds_needed, make_plan, predict
from .render import Rendered, render
from .state import FileBackend, State


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


@dataclass
class Planned:
    plan: Plan
    live: Live
    client: Any
    backend: FileBackend
    state: State
    profile_files: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
                         hint="a request that may wait forever hangs a pipeline on a half-open connection; write e.g. 60s")
    client = KubeClient(req.kubeconfig, req.context, timeouts=Timeouts.of(timeout))
    return ClusterSource(client), client


def rendered_for(selection: Selection) -> list[Rendered]:
    return [render(s, selection.stack) for s in selection.items]


def build_plan(req: Request, *, destroy: bool = False, with_impact: bool = True) -> Planned:
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
    backend = FileBackend(req.state_dir, selection.stack)
    state = backend.read()
    source, client = connect(req)
    live = source.observe(kinds_needed(rendered, state))
    # Parameters the install can tell us (which labels argo-server's pods carry in this layout) are
    # read from the targets found, unless the user set them; then the profile is rendered again.
    detected: list[dict] = []
    items, again = [], []
    for sel, r in zip(selection.items, rendered):
        changed, report = detect(sel, r, live)
        detected += report
        sel = replace(sel, values={**sel.values, **changed}) if changed else sel
        items.append(sel)
        again.append(render(sel, selection.stack) if changed else r)  # only what detection changed
    selection = replace(selection, items=tuple(items))
    rendered = again
    files = {s.profile.name: s.profile.file for s in selection.items}
    if destroy and selection.items:
        plan = make_plan(rendered, live, state, selection.stack, selection={"destroy": sorted(names)},
                         profile_files=files, created_at=_now())
        touched = {k for k, r in state.records.items() if names & set(r.profile.split(", "))}
        plan = replace(plan, changes=tuple(c for c in plan.changes
                                           if str(c.key) in touched or names & set(c.profile.split(", "))))
    elif destroy:
        plan = make_plan([], live, state, selection.stack, selection={"destroy": sorted(names) or "all"},
                         destroy_profiles=names, created_at=_now())
    else:
        plan = make_plan(rendered, live, state, selection.stack, selection=selection.description, profile_files=files,
                         created_at=_now())
    findings: list[Finding] = []
    after = predict(live, plan)
    if not destroy:
        # Checks and expectations speak of the state the plan promises: the cluster after apply.
        for r in rendered:
            findings += run_checks(r.profile, r.checks, after, files.get(r.profile))
        findings += evaluate_expectations(rendered, after, files)
    impact = security_impact(live.all(), after) if with_impact else {}
    plan = replace(plan, findings=tuple(findings), impact=impact, detected=tuple(detected))
    return Planned(plan, live, client, backend, state, files)


def evaluate_expectations(rendered: list[Rendered], objs: list[dict], files: dict[str, str]) -> list[Finding]:
    from .impact import expectations

    out: list[Finding] = []
    for r in rendered:
        for e in r.expectations:
            ok, message = expectations.evaluate(objs, e)
            out.append(Finding(r.profile, e["id"], ok, Severity.ERROR, message, kind="expectation",
                               source=files.get(r.profile), line=e.get("line")))
    return out


def security_impact(before: list[dict], after: list[dict]) -> dict:
    from .impact import summary

    return summary.impact(before, after)
