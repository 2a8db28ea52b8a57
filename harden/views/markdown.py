"""The pull-request view: Markdown a reviewer reads in a PR comment.

It leads with the posture (what would break, who gains or loses what, which flows open or close,
with a Mermaid picture of the flows), then the object-level changes collapsed per profile, as
Atlantis's plan comments collapse each project's output. A comment has a size limit (GitHub
refuses bodies over 65,536 characters); a longer account is split into numbered parts at section
boundaries, each part a complete Markdown document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import yaml

from ..impact.netpol import FlowDirection
from ..impact.rbac import ChangeDirection
from ..model import Action, Change, Finding, Plan, Severity
from . import Output, View, by_profile, headline, summary_line, value_text

if TYPE_CHECKING:
    from ..review import Review

# Atlantis server/events/vcs/github_client.go: `const maxCommentLength = 65536`, GitHub's limit.
MAX_COMMENT = 65536
# Starts every part after splitting: a script posting the parts splits on it.
PART_MARKER = "<!-- harden:part "
MAX_EDGES = 40  # a diagram with more flows than this is no longer read; the table lists them all


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- flows as a Mermaid diagram ----------------------------------------------------------------------

Flow = tuple[str, str, str, str]  # src, dst, port label, opened | closed


def plan_flows(plan: Plan) -> list[Flow]:
    out = []
    for group in (plan.impact or {}).get("network") or []:
        for f in group.get("flows") or []:
            port = f"{f['port']}/{f['protocol']}" if f.get("port") is not None and f.get("protocol") else "any port"
            out.append((f["src"], f["dst"], port, f["direction"]))
    return out


def mermaid(flows: list[Flow]) -> list[str]:
    """A flowchart of the flows that open (solid) and close (dashed); GitHub and GitLab render it."""
    if not flows:
        return []
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"n{len(ids)}"
        return ids[name]

    edges = []
    for src, dst, port, direction in flows[:MAX_EDGES]:
        arrow = "-->" if direction == FlowDirection.OPENED.value else "-.->"
        edges.append(f'  {node(src)} {arrow}|"{_label(port)} {direction}"| {node(dst)}')
    lines = ["```mermaid", "flowchart LR"]
    lines += [f'  {i}["{_label(name)}"]' for name, i in ids.items()]
    lines += edges
    lines.append("```")
    if len(flows) > MAX_EDGES:
        lines.append(f"_The diagram shows {MAX_EDGES} of {len(flows)} flows; all are listed below._")
    return lines


def _label(text: str) -> str:
    # Mermaid ends a quoted label at a double quote and reads `#...;` as an entity.
    return re.sub(r'["#]', "'", text)


# -- a plan ------------------------------------------------------------------------------------------

def _breaks(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if not f.passed and f.severity is Severity.ERROR]


def _posture(plan: Plan) -> list[str]:
    impact = plan.impact or {}
    rbac = impact.get("rbac") or []
    network = impact.get("network") or []
    lines = ["### Posture", ""]
    broken = _breaks(plan.findings)
    if broken:
        lines.append("**⛔ What would break** (the plan fails; nothing would be applied):")
        lines += [f"- `{f.kind}` **{f.profile}/{f.id}**: {f.message}" for f in broken]
        lines.append("")
    gains = [c for c in rbac if c["direction"] == ChangeDirection.GAINS]
    opened = [c for c in network if c["direction"] == FlowDirection.OPENED]
    if gains or opened:
        lines.append("**⚠️ Widens access:**")
        lines += [f"- {c['text']}" for c in gains + opened]
        lines.append("")
    narrowed = [c for c in rbac if c["direction"] != ChangeDirection.GAINS] + \
               [c for c in network if c["direction"] != FlowDirection.OPENED]
    if narrowed:
        lines.append("**Narrows access:**")
        lines += [f"- {c['text']}" for c in narrowed]
        lines.append("")
    if not (broken or gains or opened or narrowed):
        lines += ["No permission or network flow changes, and no component need breaks.", ""]
    diagram = mermaid(plan_flows(plan))
    if diagram:
        lines += ["Flows that open (solid) and close (dashed):", ""] + diagram + [""]
    return lines


def _findings(plan: Plan) -> list[str]:
    failed = [f for f in plan.findings if not f.passed]
    if not plan.findings:
        return []
    lines = ["### Checks, expectations and component needs", "",
             f"{len(plan.findings) - len(failed)} pass, {len(failed)} do not.", ""]
    if failed:
        lines += ["| result | kind | profile | id | severity | message |", "|---|---|---|---|---|---|"]
        lines += [f"| FAIL | {f.kind} | {f.profile} | {f.id} | {f.severity.value} | {_cell(f.message)} |"
                  for f in failed]
        lines.append("")
    return lines


def _profile_block(profile: str, changes: list[Change]) -> list[str]:
    actions = [c.action for c in changes]
    counts = ", ".join(f"{actions.count(a)} {verb}" for a, verb in
                       ((Action.CREATE, "to add"), (Action.UPDATE, "to change"), (Action.RELEASE, "to release"),
                        (Action.DELETE, "to destroy")) if actions.count(a))
    lines = [f"<details><summary>Profile <code>{profile}</code>: {counts}</summary>", ""]
    for c in changes:
        where = f" ({c.source.file}:{c.source.line})" if c.source.file and c.source.line else ""
        lines.append(f"- `{c.action.value}` **{headline(c)}**: {c.reason}{where}")
        lines += [f"  - takes `{x.path}` over from field manager `{x.manager}`" for x in c.conflicts]
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
    lines += ["</details>", ""]
    return lines


def plan_blocks(plan: Plan) -> list[str]:
    """The plan as blocks that each stand alone, so a split between them keeps Markdown whole."""
    blocks = ["\n".join([f"## harden plan: stack `{plan.stack}`", "", f"**{summary_line(plan)}**", ""]
                        + _posture(plan) + _findings(plan))]
    grouped = by_profile(plan)
    if grouped:
        blocks.append("### Changes by profile\n")
    blocks += ["\n".join(_profile_block(p, cs)) for p, cs in grouped.items()]
    return blocks


def render(plan: Plan, limit: int | None = None) -> str:
    return "\n".join(paginate(plan_blocks(plan), limit or MAX_COMMENT))


# -- a review ----------------------------------------------------------------------------------------

def review_blocks(review: Review) -> list[str]:
    from ..review import Trend as Change

    c = review.counts()
    title = f"## harden review: `{review.base_ref}` → `{review.head_ref}` (stack `{review.stack}`)"
    if review.changed:
        parts = [f"{n} {one if n == 1 else many}" for n, one, many in (
            (c["permissionsGained"], "permission gained", "permissions gained"),
            (c["permissionsLost"], "permission lost", "permissions lost"),
            (c["flowsOpened"], "flow opened", "flows opened"), (c["flowsClosed"], "flow closed", "flows closed"),
            (c["statusesWorse"], "need or check broken", "needs or checks broken"),
            (c["statusesBetter"], "need or check fixed", "needs or checks fixed"),
            (c["objects"], "object planned differently", "objects planned differently")) if n]
        lead = f"**The posture changes: {', '.join(parts)}.**"
    else:
        lead = "**Same posture: both revisions plan the same permissions, flows, needs and objects.**"
    head = [title, "", lead, ""]
    worse = review.breaks
    if worse:
        head.append("### ⛔ What would break")
        head.append("")
        head += [f"- `{s.kind}` **{s.id}**: {s.base} → **{s.head}**: {s.message}" for s in worse]
        head.append("")
    if review.permissions:
        head += ["### Permissions", "", "| subject | change | verbs | resource | where |", "|---|---|---|---|---|"]
        for p in review.permissions:
            mark = "⚠️ gains" if p.direction is ChangeDirection.GAINS else "loses"
            target = p.target + (f" named {p.resource_name}" if p.resource_name else "")
            where = "cluster-wide" if p.namespace == "*" else p.namespace
            head.append(f"| {_cell(str(p.subject))} | {mark} | {', '.join(p.verbs)} | {_cell(target)} | {where} |")
        head.append("")
    if review.flows:
        head += ["### Flows", ""]
        head += [f"- {'⚠️ opened' if f.direction is FlowDirection.OPENED else 'closed'}: "
                 f"{f.src} → {f.dst} on {f.port_label}" for f in review.flows]
        head.append("")
        head += mermaid([(f.src, f.dst, f.port_label, f.direction.value) for f in review.flows]) + [""]
    others = [s for s in review.statuses if s.severity is not Change.WORSE]
    if others:
        head += ["### Needs, checks and expectations that change status", "",
                 "| kind | id | base | head | message |", "|---|---|---|---|---|"]
        head += [f"| {s.kind} | {_cell(s.id)} | {s.base} | {s.head} | {_cell(s.message)} |" for s in others]
        head.append("")
    blocks = ["\n".join(head)]
    if review.objects:
        blocks.append("### Objects whose plan differs\n")
        grouped: dict[str, list] = {}
        for o in review.objects:
            grouped.setdefault(", ".join(o.profiles) or "(no profile)", []).append(o)
        for profile, objs in grouped.items():
            noun = "object" if len(objs) == 1 else "objects"
            lines = [f"<details><summary>Profile <code>{profile}</code>: {len(objs)} {noun}</summary>", ""]
            for o in objs:
                where = f" ({o.source.file}:{o.source.line})" if o.source.file and o.source.line else ""
                only = "" if o.fields else " (only one revision leaves this object)"
                lines.append(f"- **{o.key.display()}**: base plan {o.base_action}, "
                             f"head plan {o.head_action}{where}{only}")
            rows = [(o, f) for o in objs for f in o.fields]
            if rows:
                lines += ["", "| object | field | base | head |", "|---|---|---|---|"]
            for o, f in rows:
                lines.append(f"| {_cell(o.key.display())} | `{_cell(f.path)}` | `{_cell(value_text(f.before, 80))}` "
                             f"| `{_cell(value_text(f.after, 80))}` |")
            lines += ["", "</details>", ""]
            blocks.append("\n".join(lines))
    return blocks


def render_review(review: Review, limit: int | None = None) -> str:
    return "\n".join(paginate(review_blocks(review), limit or MAX_COMMENT))


# -- splitting into comments -------------------------------------------------------------------------

def paginate(blocks: list[str], limit: int) -> list[str]:
    """One document when it fits in `limit` characters; otherwise numbered parts, each under the
    limit, each starting with the part marker, split between blocks (a block too long for one part
    is cut between lines and its open code fence and <details> closed)."""
    whole = "\n".join(blocks)
    if len(whole) <= limit:
        return [whole]
    room = limit - 200  # the part heading and closing tags
    pieces: list[str] = []
    for block in blocks:
        pieces += [block] if len(block) <= room else _cut(block, room)
    parts: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        if parts[-1] and size + len(piece) + 1 > room:
            parts.append([])
            size = 0
        parts[-1].append(piece)
        size += len(piece) + 1
    n = len(parts)
    return [f"{PART_MARKER}{i}/{n} -->\n_harden: part {i} of {n}_\n\n" + "\n".join(p) for i, p in enumerate(parts, 1)]


def _cut(block: str, room: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    fence = False
    details = 0
    for line in block.splitlines():
        line = line if len(line) <= room // 2 else line[: room // 2] + "…"
        if current and size + len(line) + 1 > room - 40:
            out.append("\n".join(current + (["```"] if fence else []) + ["</details>"] * details))
            current = (["```yaml"] if fence else []) + (["<details><summary>(continued)</summary>", ""] * details)
            size = sum(len(x) + 1 for x in current)
        current.append(line)
        size += len(line) + 1
        if line.startswith("```"):
            fence = not fence
        details += line.count("<details>") - line.count("</details>")
    out.append("\n".join(current))
    return out


class MarkdownView(View):
    """Plans and reviews: a PR comment has nothing to say about applying or querying."""

    output = Output.MARKDOWN
    limit = MAX_COMMENT

    def limit_size(self, characters: int) -> None:
        self.limit = characters

    def plan(self, plan: Plan, profile_files: dict[str, str]) -> None:
        self._print(render(plan, self.limit))

    def review(self, review: Review) -> None:
        self._print(render_review(review, self.limit))

    def _print(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)
