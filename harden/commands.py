"""The commands: plain functions that take parsed values and return an exit code.

`cli.py` only parses arguments and calls these, so tests call them directly. Expected failures are
`HardenError`s and are turned into a message and exit code 1 by `cli.main`, in one place.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .apply import apply_plan
from .engine import Planned, Request, build_plan, connect, parse_duration
from .errors import Diagnostics, ExpectationFailed, HardenError, InputError
from .load import builtin_profile_names, builtin_profiles_dir, load_profile, parse_profile, stack_name
from .model import PLAN_FORMAT, Plan
from .state import FileBackend
from .views import markdown, sarif
from .views.text import render_plan
from .yamlsrc import load_file

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _emit(planned: Planned, output: str, out: Console) -> None:
    plan = planned.plan
    if output == "json":
        out.print_json(json.dumps(plan.to_dict()))
    elif output == "markdown":
        out.print(markdown.render(plan), markup=False, highlight=False, soft_wrap=True)
    elif output == "sarif":
        out.print_json(json.dumps(sarif.render(plan, planned.profile_files)))
    else:
        render_plan(plan, out)


def write_plan(plan: Plan, path: str) -> None:
    data = json.dumps(plan.to_dict(), indent=2)
    tmp = Path(path + ".tmp")
    try:
        tmp.write_text(data + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the plan file: {exc.strerror}", file=path, field="--out",
                         hint="point --out at a writable file in an existing directory") from None


def read_plan(path: str) -> Plan:
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or "formatVersion" not in data:
            raise InputError("not a harden plan file (no formatVersion)", file=path,
                             hint="plan files are written by `harden plan --out`")
        if data["formatVersion"] != PLAN_FORMAT:
            raise InputError(f"plan file format {data['formatVersion']} is not the format this harden reads "
                             f"({PLAN_FORMAT})", file=path, hint="make the plan again with this version of harden")
        return Plan.from_dict(data)
    except FileNotFoundError:
        raise InputError(f"plan file not found: {path}", file=path, hint="create one with `harden plan --out FILE`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a harden plan file ({type(exc).__name__}: {exc})", file=path,
                         hint="plan files are written by `harden plan --out`") from None


def plan_cmd(req: Request, *, out_file: str | None, detailed_exitcode: bool, output: str, out: Console) -> int:
    planned = build_plan(req)
    _emit(planned, output, out)
    if out_file:
        write_plan(planned.plan, out_file)
        if output == "text":
            out.print(f"\nSaved the plan to: {out_file}\nTo perform exactly these actions, run: harden apply {out_file}")
    if planned.plan.failed_findings:
        failed = ", ".join(f"{f.profile}/{f.id}" for f in planned.plan.failed_findings)
        raise ExpectationFailed(f"the plan would break: {failed}", hint="fix the profile parameters; nothing was applied")
    return EXIT_CHANGES if (detailed_exitcode and planned.plan.has_changes) else EXIT_OK


def _confirm(auto_approve: bool, out: Console, err: Console, what: str) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"refusing to {what} without confirmation: no terminal to ask on",
                         hint="pass --auto-approve in pipelines, or apply a saved plan file")
    out.print(f"\nDo you want to {what}? Only 'yes' will be accepted.")
    answer = input("  Enter a value: ").strip()
    if answer != "yes":
        err.print(f"{what.capitalize()} cancelled.")
        return False
    return True


def _parse_duration(text: str) -> float:
    return parse_duration(text, "--lock-timeout")


def _run_apply(planned: Planned, plan: Plan, out: Console, err: Console, parallelism: int = 8) -> int:
    if not plan.has_changes:
        out.print("\n[bold green]Apply complete![/bold green] No changes were needed.")
    total = len(plan.actionable)
    show_bar = err.is_terminal and total > 3
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                        disable=not show_bar)
    with progress:
        validate = progress.add_task("server dry-run", total=total)
        write = progress.add_task("applying", total=total)

        def note(event: str, change) -> None:
            if event == "validated":
                progress.advance(validate)
            else:
                progress.advance(write)
                if not show_bar:
                    verb = "failed" if event == "failed" else change.action.verb
                    err.print(f"{change.key.display()}: {verb}", highlight=False)

        result = apply_plan(plan, planned.client, planned.backend, parallelism=parallelism, progress=note)
    for change, exc in result.failed:
        err.print(f"[red]Error:[/red] {change.key.display()}: {exc.render()}", highlight=False)
    c = plan.counts()
    if result.failed:
        err.print(f"Apply failed after {len(result.done)} of {total} changes; state records what was done. "
                  "Run `harden plan` to see what is left.")
        return EXIT_ERROR
    if plan.has_changes:
        out.print(f"\n[bold green]Apply complete![/bold green] Resources: {c['add']} added, {c['change']} changed, "
                  f"{c['destroy']} destroyed" + (f", {c['release']} released" if c["release"] else "") + ".")
    return EXIT_OK


def apply_cmd(req: Request, *, plan_file: str | None, auto_approve: bool, lock_timeout: str,
              out: Console, err: Console, destroy: bool = False, parallelism: int = 8) -> int:
    backend_dir = req.state_dir
    if plan_file:
        plan = read_plan(plan_file)
        if plan.failed_findings:
            failed = ", ".join(f"{f.profile}/{f.id}" for f in plan.failed_findings)
            raise ExpectationFailed(f"this plan breaks {failed}; refusing to apply it", file=plan_file,
                                    hint="fix the profile parameters and plan again")
        source, client = connect(req)
        backend = FileBackend(backend_dir, plan.stack)
        with backend.lock(_parse_duration(lock_timeout), "apply"):
            planned = Planned(plan, None, client, backend, backend.read())  # type: ignore[arg-type]
            return _run_apply(planned, plan, out, err, parallelism)
    # Lock first, then plan: nobody can change state between this plan and its apply.
    backend = FileBackend(backend_dir, stack_name(req.stack_file))
    with backend.lock(_parse_duration(lock_timeout), "destroy" if destroy else "apply"):
        planned = build_plan(req, destroy=destroy)
        plan = planned.plan
        render_plan(plan, out)
        if plan.failed_findings:
            failed = ", ".join(f"{f.profile}/{f.id}" for f in plan.failed_findings)
            raise ExpectationFailed(f"the plan would break: {failed}", hint="nothing was applied")
        if plan.has_changes and not _confirm(auto_approve, out, err,
                                             "destroy these objects" if destroy else "perform these actions"):
            return EXIT_ERROR
        return _run_apply(planned, plan, out, err, parallelism)


def show_cmd(plan_file: str, output: str, out: Console) -> int:
    plan = read_plan(plan_file)
    planned = Planned(plan, None, None, None, None)  # type: ignore[arg-type]
    _emit(planned, output, out)
    return EXIT_OK


def validate_cmd(paths: list[str], out: Console) -> int:
    """Validate profile and stack files (all of them, every problem reported)."""
    from .load import schema, schema_diagnostics

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
        except Diagnostics as exc:
            problems += exc.diagnostics
        except HardenError as exc:
            problems += exc.diagnostics
    if problems:
        raise Diagnostics(problems)
    out.print(f"[green]Success![/green] {len(files)} file(s) valid.")
    return EXIT_OK


def profiles_cmd(out: Console, output: str = "text") -> int:
    rows = []
    for name in builtin_profile_names():
        p = load_profile(name)
        rows.append({"name": p.name, "title": p.title,
                     "parameters": [{"name": k, "type": v["type"], **({"default": v["default"]} if "default" in v else {}),
                                     "required": bool(v.get("required"))} for k, v in p.parameters.items()]})
    if output == "json":
        out.print_json(json.dumps(rows))
        return EXIT_OK
    width = max((len(r["name"]) for r in rows), default=10)
    for r in rows:
        out.print(f"{r['name']:<{width}}  {r['title']}", highlight=False)
    return EXIT_OK


def state_list_cmd(state_dir: str, stack: str, out: Console) -> int:
    state = FileBackend(state_dir, stack).read()
    if not state.records:
        out.print(f"No state for stack {stack!r} in {state_dir}/.")
        return EXIT_OK
    for key, rec in sorted(state.records.items()):
        out.print(f"{key}  ({rec.kind}, profile {rec.profile})", highlight=False)
    return EXIT_OK


def state_show_cmd(state_dir: str, stack: str, key: str, out: Console) -> int:
    state = FileBackend(state_dir, stack).read()
    rec = state.records.get(key)
    if rec is None:
        raise InputError(f"no state record {key!r} in stack {stack!r}", hint="list the keys with `harden state list`")
    out.print_json(json.dumps({"lineage": state.lineage, "serial": state.serial, **rec.to_dict()}))
    return EXIT_OK



def _objects_for_query(req: Request, plan_file: str | None) -> list[dict]:
    """Live objects (cluster or snapshot), or the state a saved plan would produce from them."""
    from .observe import BASE_KINDS
    from .plan import predict

    source, _ = connect(req)
    live = source.observe(BASE_KINDS)
    if plan_file:
        return predict(live, read_plan(plan_file))
    return live.all()


def reach_cmd(req: Request, *, src: str, dst: str, port: str, plan_file: str | None, output: str, out: Console) -> int:
    """Would a pod with these labels reach that pod (or CIDR) on this port? Exit 0 either way."""
    from .impact import netpol

    objs = _objects_for_query(req, plan_file)
    try:
        source = netpol.parse_endpoint(src, objs)
        dest = netpol.parse_endpoint(dst, objs)
        number, proto = netpol.parse_port(port)
        decision = netpol.evaluate(objs, source, dest, number, proto)
    except ValueError as exc:
        raise InputError(str(exc), field="--from/--to/--port",
                         hint="write pods as NS/KEY=VAL[,KEY=VAL], addresses as a CIDR, ports as 9090 or 53/UDP") from None
    if output == "json":
        out.print_json(json.dumps(decision.to_dict()))
    else:
        verdict = "[green]allowed[/green]" if decision.allowed else "[red]denied[/red]"
        out.print(f"{verdict}: {decision.reason}")
    return EXIT_OK


def can_i_cmd(req: Request, *, verb: str, resource: str, subject: str, namespace: str | None,
              plan_file: str | None, output: str, out: Console) -> int:
    """Like `kubectl auth can-i`, with the bindings and rules that decide it: exit 0 if allowed, 1 if not."""
    from .impact import rbac

    objs = _objects_for_query(req, plan_file)
    try:
        decision = rbac.check(objs, subject, verb, resource, namespace)
    except ValueError as exc:
        raise InputError(str(exc), field="RESOURCE", hint="write it like workflows.argoproj.io or pods/log") from None
    if output == "json":
        out.print_json(json.dumps(decision.to_dict()))
    else:
        out.print(decision.text, highlight=False)
    return EXIT_OK if decision.allowed else EXIT_ERROR
