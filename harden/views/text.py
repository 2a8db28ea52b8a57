"""The terminal view: reads like `terraform plan`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..model import Action, Plan
from . import by_profile, headline, summary_line, value_text

STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.RELEASE: "magenta"}


def render_plan(plan: Plan, console: Console, *, verbose_targets: bool = True) -> None:
    src = plan.source
    where = f"context {src.get('context')}" if src.get("kind") == "cluster" else f"snapshot {src.get('path')}"
    console.print(f"[bold]harden[/bold] plan for stack [bold]{escape(plan.stack)}[/bold] against {escape(where)}")
    if verbose_targets and plan.targets:
        console.print("\nTargets:")
        for t in plan.targets:
            chosen = escape(t.chosen) if t.chosen else (
                "[dim]none matched (optional; its patches are skipped)[/dim]" if t.optional else "[red]none matched[/red]")
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
                console.print(f"  [dim]# [/dim][bold yellow]{escape(conflict.path)}[/bold yellow][dim] is owned by field manager "
                              f"[/dim][bold]{escape(conflict.manager)}[/bold][dim] ({escape(conflict.operation)}); "
                              f"harden will take it over[/dim]")
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
    if not plan.findings:
        return
    console.print("\n[bold]Checks and expectations[/bold]")
    for f in plan.findings:
        mark = "[green]✓[/green]" if f.passed else ("[red]✗[/red]" if f.severity.value == "error" else "[yellow]![/yellow]")
        what = "expect" if f.kind == "expectation" else "check"
        console.print(f"  {mark} {escape(f.profile)}/{escape(f.id)} ({what}, {f.severity.value}): {escape(f.message)}")


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
            colour = "red" if change["direction"] == "gains" else "green"
            console.print(f"    [{colour}]{escape(change['text'])}[/{colour}]")
    if net:
        console.print("  [bold]Network[/bold]")
        for change in net:
            colour = "red" if change["direction"] == "opened" else "green"
            console.print(f"    [{colour}]{escape(change['text'])}[/{colour}]")
    matrix = impact.get("matrix")
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
