"""The commands: plain functions that take parsed values and a `View`, and return an exit code.

`cli.py` only parses arguments and calls these, so tests call them directly. Nothing here prints:
everything shown goes through the view, so one command serves every output format. Expected
failures are `HardenError`s, turned into diagnostics and exit code 1 by `cli`, in one place.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import exitfast
from .apply import apply_plan
from .engine import Planned, Request, build_plan, connect, open_backend, parse_duration, per_cluster
from .errors import Diagnostics, ExpectationFailed, HardenError, InputError
from .load import (
    builtin_profile_names,
    builtin_profiles_dir,
    builtin_profiles_from,
    load_profile,
    parse_profile,
    stack_name,
)
from .model import Plan
from .planfile import read_plan, write_plan
from .state import Backend, State, parse_state_url, state_from_data
from .views import View
from .yamlsrc import load_file

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def plan_cmd(view: View, req: Request, *, out_file: str | None, detailed_exitcode: bool,
             max_comment_size: int = 65536) -> int:
    view.require("plan", View.plan)
    view.limit_size(max_comment_size)
    targets = per_cluster(req)
    if len(targets) > 1:
        return _each_cluster(view, targets, lambda r, planned: _plan_one(
            view, planned, _out_for(out_file, r.context), detailed_exitcode))
    return _plan_one(view, build_plan(targets[0]), out_file, detailed_exitcode)


def _plan_one(view: View, planned: Planned, out_file: str | None, detailed_exitcode: bool) -> int:
    exitfast.keep(planned)  # freed with the process, not object by object (harden.exitfast)
    view.plan(planned.plan, planned.profile_files)
    if out_file:
        write_plan(planned.plan, out_file)
        view.plan_saved(out_file)
    if planned.plan.failed_findings:
        failed = ", ".join(f"{f.profile}/{f.id}" for f in planned.plan.failed_findings)
        raise ExpectationFailed(f"the plan would break: {failed}",
                                hint="fix the profile parameters; nothing was applied")
    return EXIT_CHANGES if (detailed_exitcode and planned.plan.has_changes) else EXIT_OK


def _out_for(out_file: str | None, context: str | None) -> str | None:
    """One plan file per cluster: plan.json -> plan@CONTEXT.json."""
    if not out_file:
        return None
    path = Path(out_file)
    return str(path.with_name(f"{path.stem}@{context}{path.suffix}"))


def worst(codes: list[int]) -> int:
    """One exit code for a run over several clusters: an error beats changes beats nothing to do."""
    for code in (EXIT_ERROR, EXIT_CHANGES):
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


def _each_cluster(view: View, targets: list[Request], show: Callable[[Request, Planned], int], *,
                  destroy: bool = False, lock: Callable[[Request], Any] | None = None,
                  then: Callable[[dict[str, Planned]], dict[str, int]] | None = None) -> int:
    """Lock (if `lock`) and plan every cluster in parallel (a failing cluster does not stop the
    others), `show` each in turn, then (`then`) act on those that planned cleanly, still under their
    locks; one summary and the worst exit code at the end."""
    codes: dict[str, int] = {}
    notes: dict[str, str] = {}

    def failed(context: str, exc: HardenError) -> None:
        view.diagnostics(exc.diagnostics)
        codes[context], notes[context] = exc.exit_code, exc.diagnostic.summary

    with ExitStack() as held:
        backends: dict[str, Any] = {}
        ready: list[Request] = []
        for r in targets:
            try:
                backends[str(r.context)] = held.enter_context(lock(r)) if lock else None
                ready.append(r)
            except HardenError as exc:
                view.cluster(str(r.context))
                failed(str(r.context), exc)
        with ThreadPoolExecutor(min(8, max(1, len(ready)))) as pool:
            futures = {str(r.context): pool.submit(build_plan, r, destroy=destroy, backend=backends[str(r.context)])
                       for r in ready}
        shown: dict[str, Planned] = {}
        for r in ready:
            context = str(r.context)
            view.cluster(context)
            try:
                planned = futures[context].result()
                codes[context] = show(r, planned)
                notes[context] = "changes" if planned.plan.has_changes else "no changes"
                shown[context] = planned
            except HardenError as exc:
                failed(context, exc)
        for context, code in (then(shown) if then else {}).items():
            codes[context] = code
            notes[context] = "applied" if code == EXIT_OK else "failed"
    view.clusters_summary([(str(r.context), codes[str(r.context)], notes[str(r.context)]) for r in targets])
    return worst(list(codes.values()))


def _parse_duration(text: str) -> float:
    return parse_duration(text, "--lock-timeout")


def _run_apply(view: View, planned: Planned, plan: Plan, parallelism: int = 8, preflight: bool = True) -> int:
    with view.apply_progress(len(plan.actionable)) as note:
        result = apply_plan(plan, planned.client, planned.backend, parallelism=parallelism, preflight=preflight,
                            progress=note)
    view.apply_result(plan, result)
    return EXIT_ERROR if result.failed else EXIT_OK


@contextmanager
def _locked(req: Request, client: Any, stack: str, timeout: float, what: str) -> Iterator[Backend]:
    backend = open_backend(req, stack, client)
    with backend.lock(timeout, what):
        yield backend


def apply_cmd(view: View, req: Request, *, plan_file: str | None, auto_approve: bool, lock_timeout: str,
              destroy: bool = False, parallelism: int = 8, preflight: bool = True) -> int:
    command = "destroy" if destroy else "apply"
    question = "destroy these objects" if destroy else "perform these actions"
    view.require(command, View.apply_result)
    if not plan_file and not auto_approve:
        view.require_confirm(question)
    timeout = _parse_duration(lock_timeout)
    if plan_file:
        plan = read_plan(plan_file)
        if plan.failed_findings:
            failed = ", ".join(f"{f.profile}/{f.id}" for f in plan.failed_findings)
            raise ExpectationFailed(f"this plan breaks {failed}; refusing to apply it", file=plan_file,
                                    hint="fix the profile parameters and plan again")
        if len(req.contexts) > 1:
            raise InputError("a saved plan is for one cluster; name one --context", field="--context",
                             hint="a plan over several clusters writes one file per cluster (plan@CONTEXT.json)")
        source, client = connect(req)
        req = replace(req, state_key=plan.source.get("stateKey") or req.state_key)
        with _locked(req, client, plan.stack, timeout, "apply") as backend:
            planned = Planned(plan, None, client, backend, backend.read())
            return _run_apply(view, planned, plan, parallelism, preflight)
    stack = stack_name(req.stack_file)
    targets = per_cluster(req)
    if len(targets) > 1:
        def show(r: Request, planned: Planned) -> int:
            view.apply_plan(planned.plan)
            if planned.plan.failed_findings:
                failed = ", ".join(f"{f.profile}/{f.id}" for f in planned.plan.failed_findings)
                raise ExpectationFailed(f"the plan would break: {failed}", hint="nothing was applied in this cluster")
            return EXIT_OK

        def then(shown: dict[str, Planned]) -> dict[str, int]:
            if any(p.plan.has_changes for p in shown.values()) and not auto_approve and not view.confirm(question):
                return {context: EXIT_ERROR for context in shown}
            out: dict[str, int] = {}
            for context, planned in shown.items():
                view.cluster(context)
                try:
                    out[context] = _run_apply(view, planned, planned.plan, parallelism, preflight)
                except HardenError as exc:
                    view.diagnostics(exc.diagnostics)
                    out[context] = exc.exit_code
            return out

        # Every cluster is locked, then planned; one confirmation; then applied cluster by cluster.
        return _each_cluster(view, targets, show, destroy=destroy, then=then,
                             lock=lambda r: _locked(r, None, stack, timeout, command))
    # Lock first, then plan: nobody can change state between this plan and its apply.
    with _locked(targets[0], None, stack, timeout, command) as backend:
        planned = build_plan(targets[0], destroy=destroy, backend=backend)
        plan = planned.plan
        view.apply_plan(plan)
        if plan.failed_findings:
            failed = ", ".join(f"{f.profile}/{f.id}" for f in plan.failed_findings)
            raise ExpectationFailed(f"the plan would break: {failed}", hint="nothing was applied")
        if plan.has_changes and not auto_approve and not view.confirm(question):
            return EXIT_ERROR
        return _run_apply(view, planned, plan, parallelism, preflight)


def show_cmd(view: View, plan_file: str) -> int:
    view.require("show", View.plan)
    plan = read_plan(plan_file)
    # The map of profile files exists only while planning; a saved plan's changes carry their own source.
    view.plan(plan, {})
    return EXIT_OK


def validate_cmd(view: View, paths: list[str]) -> int:
    """Validate profile and stack files (all of them, every problem reported)."""
    from .load import schema, schema_diagnostics

    view.require("validate", View.validate)
    targets = [Path(p) for p in paths] if paths else sorted(builtin_profiles_dir().glob("*.yaml"))
    files: list[Path] = []
    for p in targets:
        files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    problems = []
    for f in files:
        try:
            docs = load_file(f)
            for doc in docs:
                kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
                if kind == "Stack":
                    problems += schema_diagnostics(doc, schema("stack"))
                else:
                    parse_profile(doc)
        except HardenError as exc:  # Diagnostics too: every problem of every file, reported together
            problems += exc.diagnostics
    if problems:
        raise Diagnostics(problems)
    view.validate(len(files))
    return EXIT_OK


def profiles_cmd(view: View) -> int:
    view.require("profiles", View.profiles)
    rows = []
    for name in builtin_profile_names():
        p = load_profile(name)
        rows.append({"name": p.name, "title": p.title,
                     "parameters": [{"name": k, "type": v["type"],
                                     **({"default": v["default"]} if "default" in v else {}),
                                     "required": bool(v.get("required"))} for k, v in p.parameters.items()]})
    view.profiles(rows)
    return EXIT_OK


def state_list_cmd(view: View, req: Request, stack: str) -> int:
    view.require("state list", View.state_list)
    backend = open_backend(req, stack)
    view.state_list(backend.dir if hasattr(backend, "dir") else backend.describe(), backend.read())
    return EXIT_OK


def state_show_cmd(view: View, req: Request, stack: str, key: str) -> int:
    view.require("state show", View.state_show)
    state = open_backend(req, stack).read()
    rec = state.records.get(key)
    if rec is None:
        raise InputError(f"no state record {key!r} in stack {stack!r}", hint="list the keys with `harden state list`")
    view.state_show(state, rec)
    return EXIT_OK


def state_pull_cmd(view: View, req: Request, stack: str) -> int:
    """The stack's state (journal folded in) as JSON on stdout, like `terraform state pull`."""
    view.state_document(open_backend(req, stack).read().to_dict())
    return EXIT_OK


def push_state(source: State, backend: Backend, *, force: bool) -> State:
    """Write `source` over the backend's state, refusing what `terraform state push` refuses: another
    lineage, or an older serial of this one (either would lose writes), unless forced."""
    dest = backend.read()
    if not force and dest.lineage and source.lineage != dest.lineage:
        raise InputError(f"cannot push: the state there has lineage {dest.lineage}, this one {source.lineage}",
                         hint="these are different states; --force overwrites the other one")
    if not force and dest.lineage and source.serial < dest.serial:
        raise InputError(f"cannot push: the state there is newer (serial {dest.serial} > {source.serial})",
                         hint="pull it first; --force overwrites it")
    pushed = replace(source, stack=dest.stack, serial=max(source.serial, dest.serial) + 1)
    backend.write(pushed)
    return pushed


def state_push_cmd(view: View, req: Request, stack: str, path: str, *, force: bool, lock_timeout: str) -> int:
    import json

    try:
        source = state_from_data(json.loads(Path(path).read_text()), path)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a harden state file ({type(exc).__name__}: {exc})", file=path,
                         hint="state files are written by `harden state pull`") from None
    backend = open_backend(req, stack)
    with backend.lock(_parse_duration(lock_timeout), "state push"):
        pushed = push_state(source, backend, force=force)
    view.state_moved(path, backend.describe(), pushed)
    return EXIT_OK


def state_migrate_cmd(view: View, req: Request, stack: str, to: str, *, force: bool, lock_timeout: str) -> int:
    """Copy the stack's state from the current backend to `to`, both locked; the old copy stays."""
    parse_state_url(to, "--to")
    timeout = _parse_duration(lock_timeout)
    source_backend = open_backend(req, stack)
    target = open_backend(replace(req, state=to), stack)
    with source_backend.lock(timeout, "state migrate"), target.lock(timeout, "state migrate"):
        pushed = push_state(source_backend.read(), target, force=force)
    view.state_moved(source_backend.describe(), target.describe(), pushed)
    return EXIT_OK


def force_unlock_cmd(view: View, req: Request, stack: str, lock_id: str) -> int:
    backend = open_backend(req, stack)
    backend.force_unlock(lock_id)
    view.unlocked(backend.describe(), lock_id)
    return EXIT_OK


def _objects_for_query(req: Request, plan_file: str | None) -> list[dict]:
    """Live objects (cluster or snapshot), or the state a saved plan would produce from them."""
    from .observe import BASE_KINDS
    from .plan import predict

    source, _ = connect(req)
    live = source.observe(BASE_KINDS)
    if plan_file:
        return predict(live, read_plan(plan_file), source.merge_keys(BASE_KINDS))
    return live.all()


def reach_cmd(view: View, req: Request, *, src: str, dst: str, port: str, plan_file: str | None) -> int:
    """Would a pod with these labels reach that pod (or CIDR) on this port? Exit 0 either way."""
    from .impact import netpol

    view.require("reach", View.reach)
    objs = _objects_for_query(req, plan_file)
    try:
        source = netpol.parse_endpoint(src, objs)
        dest = netpol.parse_endpoint(dst, objs)
        number, proto = netpol.parse_port(port)
        decision = netpol.evaluate(objs, source, dest, number, proto)
    except ValueError as exc:
        raise InputError(str(exc), field="--from/--to/--port",
                         hint="write pods as NS/KEY=VAL[,KEY=VAL], addresses as a CIDR, "
                              "ports as 9090 or 53/UDP") from None
    view.reach(decision)
    return EXIT_OK


def can_i_cmd(view: View, req: Request, *, verb: str, resource: str, subject: str, namespace: str | None,
              plan_file: str | None) -> int:
    """Like `kubectl auth can-i`, with the bindings and rules that decide it: exit 0 if allowed, 1 if not."""
    from .impact import rbac

    view.require("can-i", View.can_i)
    objs = _objects_for_query(req, plan_file)
    try:
        decision = rbac.check(objs, subject, verb, resource, namespace)
    except ValueError as exc:
        raise InputError(str(exc), field="RESOURCE", hint="write it like workflows.argoproj.io or pods/log") from None
    view.can_i(decision)
    return EXIT_OK if decision.allowed else EXIT_ERROR


# -- review: two revisions of a git checkout, planned against one target -------------------------

def _git(args: list[str], cwd: str, what: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed", hint="`harden review` reads the revisions with git") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"{what}: {detail[-1] if detail else 'git failed'}",
                         hint="run `harden review` inside a git checkout, with --base and --head naming commits")
    return done.stdout


def _export(top: str, ref: str, into: Path) -> None:
    """The files of revision `ref`, as `git archive` writes them (no work tree, no checkout)."""
    _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top, f"unknown revision {ref!r}")
    data = _git(["archive", "--format=tar", ref], top, f"cannot read revision {ref!r}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def _in_revision(path: str, top: Path, root: Path) -> Path | None:
    """Where a path of the checkout lies in a revision's copy; None when it is outside the repository."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(top)
    except ValueError:
        return None
    return root / rel


def _plan_revision(req: Request, top: Path, root: Path) -> Planned | None:
    """Plan revision `root` (exported into a temp dir): its stack, its profile files and, when the
    built-in profiles are part of this repository, its built-ins. None when it selects nothing."""
    stack = None
    if req.stack_file:
        stack = _in_revision(req.stack_file, top, root)
        if stack is None:
            raise InputError(f"the stack {req.stack_file} is outside the repository", field="--file",
                             hint="review a stack file that is part of the git checkout")
        if not stack.exists():
            stack = None
    profiles = []
    for p in req.profiles:
        if "/" in p or p.endswith((".yaml", ".yml")):
            there = _in_revision(p, top, root)
            if there is not None and there.exists():
                profiles.append(str(there))
        else:
            profiles.append(p)
    if stack is None and not profiles:
        return None
    builtins = _in_revision(str(builtin_profiles_dir()), top, root)
    use = builtin_profiles_from(builtins) if builtins is not None and builtins.is_dir() else nullcontext()
    try:
        with use:
            return build_plan(replace(req, stack_file=str(stack) if stack else None, profiles=tuple(profiles)))
    except HardenError as exc:
        # Name the files as the repository does, with the revision, not as the temporary copy.
        def rel(file: str | None) -> str | None:
            if file and file.startswith(str(root) + "/"):
                return f"{root.name}:{file[len(str(root)) + 1:]}"
            return file

        raise Diagnostics([replace(d, file=rel(d.file)) for d in exc.diagnostics]) from None


def review_cmd(view: View, req: Request, *, base: str, head: str, max_comment_size: int = 65536) -> int:
    """Plan two revisions against the same target and show the difference in posture: exit 0 when
    it is the same, 2 when it changed."""
    from .review import compare, relocate

    view.require("review", View.review)
    view.limit_size(max_comment_size)
    top = Path(_git(["rev-parse", "--show-toplevel"], os.getcwd(), "not a git checkout").decode().strip())
    # One target for both: the snapshot and state of the working directory, never of a revision.
    req = replace(req, snapshot=os.path.abspath(req.snapshot) if req.snapshot else None,
                  state_dir=os.path.abspath(req.state_dir))
    sides: list[tuple[Plan, list[dict], list[dict]] | None] = []  # plan, objects after it, live objects
    with tempfile.TemporaryDirectory(prefix="harden-review-") as tmp:
        for name, ref in (("base", base), ("head", head)):
            root = Path(tmp) / name
            root.mkdir()
            _export(str(top), ref, root)
            planned = _plan_revision(req, top, root)
            # Files of the revision are named as in the repository; built-ins of the installed harden
            # (when the repository does not hold them) as `builtin:NAME.yaml`.
            sides.append(None if planned is None else
                         (relocate(relocate(planned.plan, str(root)), str(builtin_profiles_dir()), "builtin:"),
                          planned.after, planned.live.all() if planned.live else []))
    present = [side for side in sides if side is not None]
    if not present:
        raise InputError("neither revision selects a profile", hint="pass -f STACK.yaml or --profile at least once")
    # A revision that selects nothing leaves the target as it is.
    plan, _, live = present[-1]
    empty = (Plan(plan.stack, None, 0, ()), live, live)
    b, h = sides[0] or empty, sides[1] or empty
    result = compare(b[0], b[1], h[0], h[1], base_ref=base, head_ref=head)
    view.review(result)
    return EXIT_CHANGES if result.changed else EXIT_OK
