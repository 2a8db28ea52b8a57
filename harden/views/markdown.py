"""The pull-request view: a Markdown account a reviewer reads in a PR comment."""

from __future__ import annotations

import yaml

from ..impact.netpol import FlowDirection
from ..impact.rbac import ChangeDirection
from ..model import Action, Plan
from . import Output, View, by_profile, headline, summary_line, value_text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(plan: Plan) -> str:
    lines = [f"## harden plan: stack `{plan.stack}`", "", f"**{summary_line(plan)}**", ""]
    for profile, changes in by_profile(plan).items():
        lines += [f"### Profile `{profile}`", ""]
        for c in changes:
            lines += [f"- `{c.action.value}` **{headline(c)}**: {c.reason}"]
            for conflict in c.conflicts:
                lines.append(f"  - takes `{conflict.path}` over from field manager `{conflict.manager}`")
        lines.append("")
        # New objects read best whole; changes to existing ones read best field by field.
        for c in changes:
            if c.action is Action.CREATE and c.body:
                lines += [f"<details><summary>{c.key.display()}</summary>", "", "```yaml",
                          yaml.safe_dump(c.body, sort_keys=False).rstrip(), "```", "", "</details>", ""]
        rows = [(c, f) for c in changes if c.action is not Action.CREATE for f in c.fields]
        if rows:
            lines += ["| object | field | before | after |", "|---|---|---|---|"]
            for c, f in rows:
                lines.append(f"| {_cell(c.key.display())} | `{_cell(f.path)}` | `{_cell(value_text(f.before, 80))}` "
                             f"| `{_cell(value_text(f.after, 80))}` |")
            lines.append("")
    if plan.findings:
        lines += ["### Checks and expectations", "", "| result | profile | id | severity | message |",
                  "|---|---|---|---|---|"]
        for finding in plan.findings:
            result = "pass" if finding.passed else "FAIL"
            lines.append(f"| {result} | {finding.profile} | {finding.id} | {finding.severity.value} "
                         f"| {_cell(finding.message)} |")
        lines.append("")
    impact = plan.impact or {}
    if impact.get("rbac") or impact.get("network"):
        lines += ["### Security impact", ""]
        for change in impact.get("rbac") or []:
            lines.append(f"- {'⚠️ ' if change['direction'] == ChangeDirection.GAINS else ''}{change['text']}")
        for change in impact.get("network") or []:
            lines.append(f"- {'⚠️ ' if change['direction'] == FlowDirection.OPENED else ''}{change['text']}")
        lines.append("")
    return "\n".join(lines)


class MarkdownView(View):
    """Plans only: a PR comment has nothing to say about applying or querying."""

    output = Output.MARKDOWN

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        self.out.print(render(plan), markup=False, highlight=False, soft_wrap=True)
