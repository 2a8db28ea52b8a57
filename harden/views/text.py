"""The terminal view: reads like `terraform plan`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ..errors import InputError
from ..impact.netpol import FlowDirection
from ..impact.rbac import ChangeDirection
from ..model import Action, Change, Plan, Severity
from . import Output, View, by_profile, headline, summary_line, value_text

if TYPE_CHECKING:
    from ..apply import Progress as Note
    from ..apply import Result
    from ..impact import netpol, rbac
    from ..model import Record, State
    from ..review import Review

STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.RELEASE: "magenta"}


def render_plan(plan: Plan, console: Console, *, verbose_targets: bool = True) -> None:
    src = plan.source
    where = f"context {src.get('context')}" if src.get("kind") == "cluster" else f"snapshot {src.get('path')}"
    console.print(f"[bold]harden[/bold] plan for stack [bold]{escape(plan.stack)}[/bold] against {escape(where)}")
    installs = plan.impact.get("installs") or []
    if verbose_targets and installs:
        console.print("\nInstalls found (from their workloads):")
        for i in installs:
            mark = "[bold]*[/bold]" if i.get("selected") else " "
            console.print(f"  {mark} {escape(i['product'])} in {escape(i['name'])}"
                          + ("" if i.get("selected") else " [dim](not selected: nothing here touches it)[/dim]"))
            for c in i["components"]:
                console.print(f"      {escape(c['name'])}: {escape(c['workload'])} [dim]({escape(c['foundBy'])}; "
                              f"service account {escape(c['serviceAccount'])})[/dim]")
    if verbose_targets and plan.targets:
        console.print("\nTargets:")
        for t in plan.targets:
            none = "[dim]none matched (optional; its patches are skipped)[/dim]" if t.optional \
                else "[red]none matched[/red]"
            chosen = escape(t.chosen) if t.chosen else none
            console.print(f"  {escape(t.profile)}.{escape(t.target)} -> {chosen}")
    if verbose_targets and plan.detected:
        console.print("\nDetected from the install:")
        for d in plan.detected:
            value = ",".join(f"{k}={v}" for k, v in d.value.items()) if isinstance(d.value, dict) else d.value
            console.print(f"  {escape(d.profile)}.{escape(d.parameter)} = {escape(str(value))} "
                          f"[dim](from {escape(d.source)})[/dim]")
    if plan.has_changes:
        console.print("\nharden will perform the following actions:")
        console.print("  [green]+[/green] create  [yellow]~[/yellow] update in place  "
                      "[red]-[/red] destroy  [magenta]<[/magenta] release fields")
    for profile, changes in by_profile(plan).items():
        console.print(f"\n[bold]── profile {escape(profile)}[/bold]")
        for c in changes:
            style = STYLE[c.action]
            console.print(f"\n  [dim]# {escape(headline(c))}[/dim]")
            console.print(f"  [dim]# {escape(c.reason)}[/dim]")
            for conflict in c.conflicts:
                console.print(f"  [dim]# [/dim][bold yellow]{escape(conflict.path)}[/bold yellow][dim] "
                              f"is owned by field manager [/dim][bold]{escape(conflict.manager)}[/bold][dim] "
                              f"({escape(conflict.operation)}); harden will take it over[/dim]")
            glyph = c.action.value
            console.print(f"  [{style}]{escape(glyph)} {escape(c.key.display())}[/{style}]")
            for f in c.fields:
                if c.action is Action.CREATE:
                    console.print(f"      [green]+[/green] {escape(f.path)}: {escape(value_text(f.after))}")
                elif c.action is Action.DELETE:
                    console.print(f"      [red]-[/red] {escape(f.path)}: {escape(value_text(f.before))}")
                elif f.before is None:
                    console.print(f"      [green]+[/green] {escape(f.path)}: {escape(value_text(f.after))}")
                elif f.after is None:
                    console.print(f"      [red]-[/red] {escape(f.path)}: {escape(value_text(f.before))}")
                else:
                    console.print(f"      [yellow]~[/yellow] {escape(f.path)}: {escape(value_text(f.before))} "
                                  f"[bold]->[/bold] {escape(value_text(f.after))}")
    render_findings(plan, console)
    render_impact(plan.impact, console)
    console.print()
    console.print(f"[bold]{escape(summary_line(plan))}[/bold]")


def render_findings(plan: Plan, console: Console) -> None:
    render_needs(plan, console)
    findings = [f for f in plan.findings if f.kind != "need"]
    if not findings:
        return
    console.print("\n[bold]Checks and expectations[/bold]")
    for f in findings:
        failed = "[red]✗[/red]" if f.severity is Severity.ERROR else "[yellow]![/yellow]"
        mark = "[green]✓[/green]" if f.passed else failed
        what = "expect" if f.kind == "expectation" else "check"
        console.print(f"  {mark} {escape(f.profile)}/{escape(f.id)} ({what}, {f.severity.value}): {escape(f.message)}")


def render_needs(plan: Plan, console: Console) -> None:
    """What each component of the selected installs needs, on the state after apply: a count, then
    every need the plan breaks (these fail it) and every one that was unmet already."""
    needs = plan.impact.get("needs") or []
    if not needs:
        return
    counts = {s: sum(n["status"] == s for n in needs) for s in ("kept", "broken", "unmet", "unknown")}
    broken = f"[red]{counts['broken']} broken[/red]" if counts["broken"] else f"{counts['broken']} broken"
    console.print(f"\n[bold]Component needs[/bold] (on the state after apply): {counts['kept']} kept, {broken}, "
                  f"{counts['unmet']} unmet before the plan, {counts['unknown']} not decidable here")
    for n in needs:
        if n["status"] == "broken":
            by = f"; changed by {', '.join(n['brokenBy'])}" if n["brokenBy"] else ""
            console.print(f"  [red]✗[/red] {escape(n['component'])}/{escape(n['need'])}: "
                          f"{escape(n['message'])}{escape(by)} [dim]({escape(n['why'])}; {escape(n['source'])})[/dim]")
    for n in needs:
        if n["status"] == "unmet":
            console.print(f"  [yellow]![/yellow] {escape(n['component'])}/{escape(n['need'])}: {escape(n['message'])} "
                          f"[dim](already so before the plan)[/dim]")


def render_impact(impact: dict, console: Console) -> None:
    rbac, net = impact.get("rbac") or [], impact.get("network") or []
    if not impact:
        return
    console.print("\n[bold]Security impact[/bold] (effective permissions and reachability, before -> after)")
    if not rbac and not net:
        console.print("  no change to who can do what or who can reach what")
    if rbac:
        console.print("  [bold]RBAC[/bold]")
        for change in rbac:
            colour = "red" if change["direction"] == ChangeDirection.GAINS else "green"
            console.print(f"    [{colour}]{escape(change['text'])}[/{colour}]")
    if net:
        console.print("  [bold]Network[/bold]")
        for change in net:
            colour = "red" if change["direction"] == FlowDirection.OPENED else "green"
            console.print(f"    [{colour}]{escape(change['text'])}[/{colour}]")
    matrix = impact.get("matrix")
    if matrix and matrix.get("omitted"):
        console.print(f"  reachability table left out: {escape(matrix['omitted'])}")
    if matrix and matrix.get("groups"):
        table = Table(title="reachability after apply (row -> column, ports)", title_justify="left", show_lines=False)
        table.add_column("from \\ to")
        for g in matrix["groups"]:
            table.add_column(g, overflow="fold")
        for src in matrix["groups"]:
            row = [src]
            for dst in matrix["groups"]:
                cell = matrix["cells"].get(f"{src} -> {dst}", "")
                row.append(cell)
            table.add_row(*row)
        console.print(table)


class TextView(View):
    """Human output on a terminal; progress and failures on stderr, results on stdout."""

    output = Output.TEXT

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        render_plan(plan, self.out)

    def review(self, review: Review) -> None:
        # The terminal reads the same account as the PR comment; rich prints it as plain text.
        from .markdown import render_review

        self.out.print(render_review(review, 10**9), markup=False, highlight=False)

    def plan_saved(self, path: str) -> None:
        self.out.print(f"\nSaved the plan to: {path}\nTo perform exactly these actions, run: harden apply {path}")

    def apply_plan(self, plan: Plan) -> None:
        render_plan(plan, self.out)

    def confirm(self, question: str) -> bool:
        if not sys.stdin.isatty():
            raise InputError(f"refusing to {question} without confirmation: no terminal to ask on",
                             hint="pass --auto-approve in pipelines, or apply a saved plan file")
        self.out.print(f"\nDo you want to {question}? Only 'yes' will be accepted.")
        if input("  Enter a value: ").strip() != "yes":
            self.err.print(f"{question.capitalize()} cancelled.")
            return False
        return True

    @contextmanager
    def apply_progress(self, total: int) -> Iterator[Note]:
        # A bar only where someone watches and there is enough to watch; otherwise a line per
        # write, which is what a pipeline log wants.
        show_bar = self.err.is_terminal and total > 3
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=self.err,
                            disable=not show_bar)
        with progress:
            # Each bar appears with its first event: with --no-preflight there is no dry run to show.
            tasks: dict[str, TaskID] = {}

            def advance(name: str) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=total)
                progress.advance(tasks[name])

            def note(event: str, change: Change) -> None:
                if event == "validated":
                    advance("server dry-run")
                    return
                advance("applying")
                if not show_bar:
                    verb = "failed" if event == "failed" else change.action.verb
                    self.err.print(f"{change.key.display()}: {verb}", highlight=False)

            yield note

    def apply_result(self, plan: Plan, result: Result) -> None:
        if not plan.has_changes:
            self.out.print("\n[bold green]Apply complete![/bold green] No changes were needed.")
            return
        for change, exc in result.failed:
            self.err.print(f"[red]Error:[/red] {change.key.display()}: {exc.render()}", highlight=False)
        if result.failed:
            self.err.print(f"Apply failed after {len(result.done)} of {len(plan.actionable)} changes; "
                           "state records what was done. Run `harden plan` to see what is left.")
            return
        c = plan.counts()
        released = f", {c['release']} released" if c["release"] else ""
        self.out.print(f"\n[bold green]Apply complete![/bold green] Resources: {c['add']} added, "
                       f"{c['change']} changed, {c['destroy']} destroyed{released}.")

    def validate(self, files: int) -> None:
        self.out.print(f"[green]Success![/green] {files} file(s) valid.")

    def profiles(self, rows: list[dict[str, Any]]) -> None:
        width = max((len(r["name"]) for r in rows), default=10)
        for r in rows:
            self.out.print(f"{r['name']:<{width}}  {r['title']}", highlight=False)

    def state_list(self, state_dir: str, state: State) -> None:
        if not state.records:
            self.out.print(f"No state for stack {state.stack!r} in {state_dir}/.")
            return
        for key, rec in sorted(state.records.items()):
            self.out.print(f"{key}  ({rec.kind.value}, profile {', '.join(rec.profiles)})", highlight=False)

    def state_show(self, state: State, record: Record) -> None:
        # A record is structured data; a terminal reads it best as the JSON it is stored as.
        self.out.print_json(json.dumps({"lineage": state.lineage, "serial": state.serial, **record.to_dict()}))

    def reach(self, decision: netpol.FlowDecision) -> None:
        verdict = "[green]allowed[/green]" if decision.allowed else "[red]denied[/red]"
        self.out.print(f"{verdict}: {decision.reason}")

    def can_i(self, decision: rbac.Decision) -> None:
        self.out.print(decision.text, highlight=False)
