"""Views: one interface for everything a command shows, with one implementation per output format
(as Terraform's `command/views`): human text for a terminal, JSON for a machine, Markdown for a pull
request, SARIF for code-scanning bots. Only views and the CLI import rich/typer.

Commands call `View` methods and never print. A format implements the methods that make sense for
it; the others refuse with an `InputError` naming the formats that do, and a command asks
(`View.require`) before it does any work, so `apply -o markdown` is refused before it plans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import Diagnostic, InputError
from ..model import Action, Change, ChangeKind, Plan
from ..output import Output

if TYPE_CHECKING:
    from rich.console import Console

    from ..apply import Progress, Result
    from ..impact import netpol, rbac
    from ..model import Record, State
    from ..review import Review


class View:
    """What commands show. Methods a format does not implement refuse (see `require`)."""

    output: Output

    def __init__(self, out: Console, err: Console) -> None:
        self.out, self.err = out, err

    # -- the checks, before a command does any work ----------------------------------------------

    def require(self, command: str, method: Callable[..., Any]) -> None:
        """Refuse this format for `command` unless it implements `method` (a `View` method)."""
        if not _implements(type(self), method):
            raise InputError(f"`harden {command}` cannot write -o {self.output.value}", field="--output",
                             hint=f"`harden {command}` writes: {_formats(method)}")

    def require_confirm(self, question: str) -> None:
        """Refuse up front, before planning, a format that cannot ask `question`."""
        if not _implements(type(self), View.confirm):
            raise self._cannot_ask(question)

    def _refuse(self, method: Callable[..., Any]) -> NoReturn:
        raise InputError(f"-o {self.output.value} cannot show {method.__name__.replace('_', ' ')}",
                         field="--output", hint=f"use one of: {_formats(method)}")

    def _cannot_ask(self, question: str) -> InputError:
        # As `terraform apply -json` (internal/command/arguments/apply.go): a machine reading the
        # output cannot answer a prompt, and taking silence for "yes" would be dangerous.
        return InputError(f"cannot ask whether to {question} with -o {self.output.value}", field="--output",
                          hint="apply a saved plan file, or pass --auto-approve")

    # -- results: one per command; refused unless a format implements them -----------------------

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        self._refuse(View.plan)

    def apply_result(self, plan: Plan, result: Result) -> None:
        self._refuse(View.apply_result)

    def review(self, review: Review) -> None:
        self._refuse(View.review)

    def validate(self, files: int) -> None:
        self._refuse(View.validate)

    def profiles(self, rows: list[dict[str, Any]]) -> None:
        self._refuse(View.profiles)

    def state_list(self, state_dir: str, state: State) -> None:
        self._refuse(View.state_list)

    def state_show(self, state: State, record: Record) -> None:
        self._refuse(View.state_show)

    def reach(self, decision: netpol.FlowDecision) -> None:
        self._refuse(View.reach)

    def can_i(self, decision: rbac.Decision) -> None:
        self._refuse(View.can_i)

    def confirm(self, question: str) -> bool:
        """Ask before applying; False when the answer is not 'yes'."""
        raise self._cannot_ask(question)

    # -- along the way: formats that have nothing to say here say nothing -------------------------

    def limit_size(self, characters: int) -> None:
        """The most one document (a PR comment) may hold; formats without such a limit ignore it."""

    def plan_saved(self, path: str) -> None:
        """The plan was written to `path`."""

    def apply_plan(self, plan: Plan) -> None:
        """The plan `apply` is about to carry out (before confirmation)."""

    @contextmanager
    def apply_progress(self, total: int) -> Iterator[Progress]:
        yield lambda event, change: None

    # -- state backends and runs over several clusters: the same in every format ------------------
    # (rich's Text is imported where it is used: importing the views loads no rich.)

    def state_document(self, data: dict[str, Any]) -> None:
        """A whole state (`harden state pull`): JSON whatever the format, as it is stored."""
        write_document(self.out, json.dumps(data, indent=2), color_json=False)

    def state_moved(self, source: str, target: str, state: State) -> None:
        from rich.text import Text

        self.err.print(Text(f"State of stack {state.stack!r} copied from {source} to {target} "
                            f"(lineage {state.lineage}, serial {state.serial})."))

    def unlocked(self, where: str, lock_id: str) -> None:
        from rich.text import Text

        self.err.print(Text(f"Lock {lock_id} in {where} released. Another run may now take it."))

    def cluster(self, context: str) -> None:
        """A run over several clusters: what follows is about this one (on stderr, so stdout stays
        each cluster's document in the chosen format)."""
        from rich.text import Text

        self.err.print(Text(f"\n=== cluster {context} ===", style="bold"))

    def clusters_summary(self, rows: list[tuple[str, int, str]]) -> None:
        from rich.text import Text

        self.err.print(Text("\nClusters:", style="bold"))
        for context, code, note in rows:
            self.err.print(Text(f"  {context}: exit {code} ({note})"))

    # -- failures: every format reports them, on stderr -------------------------------------------

    def diagnostics(self, diagnostics: list[Diagnostic]) -> None:
        from rich.text import Text  # here, not at the top: `harden version` never loads rich

        for d in diagnostics:
            self.err.print(Text("Error: ", style="bold red") + Text(d.render()))

    def interrupted(self) -> None:
        self.err.print("Interrupted. State records every write that completed; run `harden plan` to see what is left.")


def write_document(console: Console, text: str, color_json: bool = True) -> None:
    """A whole document (JSON, SARIF, a state) on `console`. On a terminal rich prints it (JSON
    colored); elsewhere (a pipe, a file, CI) it is written as is: what rich would write there too,
    without rendering it line by line, which took 0.8-2 s for the JSON of a 1,000-object apply (issue 10)."""
    if not console.is_terminal:
        console.file.write(text + "\n")
    elif color_json:
        console.print_json(text)
    else:
        from rich.text import Text

        console.print(Text(text), soft_wrap=True)


def _implements(cls: type[View], method: Callable[..., Any]) -> bool:
    return getattr(cls, method.__name__) is not getattr(View, method.__name__)


def _formats(method: Callable[..., Any]) -> str:
    return ", ".join(o.value for o, cls in _classes().items() if _implements(cls, method))


def _classes() -> dict[Output, type[View]]:
    # Imported here, not at the top: the implementations import this module's helpers.
    from .jsonview import JsonView
    from .markdown import MarkdownView
    from .sarif import SarifView
    from .text import TextView

    return {Output.TEXT: TextView, Output.JSON: JsonView, Output.MARKDOWN: MarkdownView, Output.SARIF: SarifView}


def make(output: Output, out: Console, err: Console) -> View:
    return _classes()[Output(output)](out, err)


# -- helpers the formats share ---------------------------------------------------------------------

def value_text(v: Any, limit: int = 120) -> str:
    if v is None:
        return "(none)"
    text = json.dumps(v, sort_keys=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        return "No changes. The cluster matches the selected profiles."
    c = plan.counts()
    extra = f", {c['release']} to release" if c["release"] else ""
    return f"Plan: {c['add']} to add, {c['change']} to change, {c['destroy']} to destroy{extra}."


def by_profile(plan: Plan) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for c in plan.actionable:
        out.setdefault(c.profile, []).append(c)
    return out


def headline(c: Change) -> str:
    noun = "fields of " if c.kind is ChangeKind.PATCH and c.action is Action.UPDATE else ""
    return f"{noun}{c.key.display()} will be {c.action.verb}"
