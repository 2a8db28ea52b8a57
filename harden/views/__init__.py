"""Views: one account of a plan, rendered for a terminal (text), a machine (JSON), a pull request
(Markdown) and code-scanning bots (SARIF). Only views and the CLI import rich/typer."""

from __future__ import annotations

import json
from typing import Any

from ..model import Action, Change, Plan


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
    noun = "fields of " if c.kind.value == "patch" and c.action is Action.UPDATE else ""
    return f"{noun}{c.key.display()} will be {c.action.verb}"
