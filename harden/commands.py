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
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from .apply import apply_plan
from .engine import Planned, Request, build_plan, connect, parse_duration
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
from .state import FileBackend
from .views import View
from .yamlsrc import load_file

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def plan_cmd(view: View, req: Request, *, out_file: str | None, detailed_exitcode: bool,
             max_comment_size: int = 65536) -> int:
    view.require("plan", View.plan)
    view.limit_size(max_comment_size)
    planned = build_plan(req)
    view.plan(planned.plan, planned.profile_files)
    if out_file:
        write_plan(planned.plan, out_file)
        view.plan_saved(out_file)
    if planned.plan.failed_findings:
        failed = ", ".join(f"{f.profile}/{f.id}" for f in planned.plan.failed_findings)
        raise ExpectationFailed(f"the plan would break: {failed}",
                                hint="fix the profile parameters; nothing was applied")
    return EXIT_CHANGES if (detailed_exitcode and planned.plan.has_changes) else EXIT_OK


def _parse_duration(text: str) -> float:
    return parse_duration(text, "--lock-timeout")


def _run_apply(view: View, planned: Planned, plan: Plan, parallelism: int = 8) -> int:
    with view.apply_progress(len(plan.actionable)) as note:
        result = apply_plan(plan, planned.client, planned.backend, parallelism=parallelism, progress=note)
    view.apply_result(plan, result)
    return EXIT_ERROR if result.failed else EXIT_OK


def apply_cmd(view: View, req: Request, *, plan_file: str | None, auto_approve: bool, lock_timeout: str,
              destroy: bool = False, parallelism: int = 8) -> int:
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
        source, client = connect(req)
        backend = FileBackend(req.state_dir, plan.stack)
        with backend.lock(timeout, "apply"):
            planned = Planned(plan, None, client, backend, backend.read())
            return _run_apply(view, planned, plan, parallelism)
    # Lock first, then plan: nobody can change state between this plan and its apply.
    backend = FileBackend(req.state_dir, stack_name(req.stack_file))
    with backend.lock(timeout, command):
        planned = build_plan(req, destroy=destroy)
        plan = planned.plan
        view.apply_plan(plan)
        if plan.failed_findings:
            failed = ", ".join(f"{f.profile}/{f.id}" for f in plan.failed_findings)
            raise ExpectationFailed(f"the plan would break: {failed}", hint="nothing was applied")
        if plan.has_changes and not auto_approve and not view.confirm(question):
            return EXIT_ERROR
        return _run_apply(view, planned, plan, parallelism)


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


def state_list_cmd(view: View, state_dir: str, stack: str) -> int:
    view.require("state list", View.state_list)
    view.state_list(state_dir, FileBackend(state_dir, stack).read())
    return EXIT_OK


def state_show_cmd(view: View, state_dir: str, stack: str, key: str) -> int:
    view.require("state show", View.state_show)
    state = FileBackend(state_dir, stack).read()
    rec = state.records.get(key)
    if rec is None:
        raise InputError(f"no state record {key!r} in stack {stack!r}", hint="list the keys with `harden state list`")
    view.state_show(state, rec)
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
