"""views: one plan rendered as JSON (round-trips), Markdown (summary, a row per field change), SARIF."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from harden.apply import Result
from harden.engine import Request, build_plan
from harden.errors import ClusterError, InputError
from harden.model import (
    Action,
    Change,
    ChangeKind,
    FieldChange,
    Finding,
    Phase,
    Plan,
    ResourceKey,
    Restore,
    Severity,
    SourceRef,
)
from harden.views import Output, View, headline, make, markdown, sarif, summary_line
from harden.views.text import TextView, render_plan

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "examples" / "snapshot"

STACK = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: views}
profiles:
  - profile: read-only-server
  - profile: namespace-isolation
  - profile: db-egress
    with:
      database: {namespace: argo, podSelector: {app: postgres}}
  - profile: server-auth-tls
"""


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    stack = d / "stack.yaml"
    stack.write_text(STACK)
    return build_plan(Request(stack_file=str(stack), snapshot=str(SNAPSHOT), state_dir=str(d / "state")))


def line_in(file: str, needle: str) -> int:
    for i, line in enumerate(Path(file).read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


# -- JSON ------------------------------------------------------------------------------------------

def test_json_plan_round_trips(planned):
    plan = planned.plan
    assert plan.has_changes and plan.findings
    data = json.loads(json.dumps(plan.to_dict()))
    again = Plan.from_dict(data)
    assert again == plan
    assert again.to_dict() == plan.to_dict()


def test_json_summary_matches_changes(planned):
    d = planned.plan.to_dict()
    actions = [c["action"] for c in d["changes"]]
    assert d["summary"] == {"add": actions.count("create"), "change": actions.count("update"),
                            "release": actions.count("release"), "destroy": actions.count("delete")}
    assert d["formatVersion"] == 2 and d["stack"] == "views"


def test_change_round_trip_keeps_every_field():
    c = Change(ResourceKey("", "ConfigMap", "argo", "c"), "v1", Action.RELEASE, ChangeKind.PATCH, ("a", "b"), "why",
               body={"data": {"k": None}}, fields=(FieldChange("data.k", "x", None),),
               observed_resource_version="9", restore=Restore({}, "m"), field_paths=("data.k",),
               phase=Phase.REMOVE, source=SourceRef("profiles/x.yaml", 7))
    assert Change.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# -- Markdown --------------------------------------------------------------------------------------

def test_markdown_has_summary_line(planned):
    md = markdown.render(planned.plan)
    c = planned.plan.counts()
    assert f"**Plan: {c['add']} to add, {c['change']} to change, {c['destroy']} to destroy.**" in md
    assert "## harden plan: stack `views`" in md


def test_markdown_has_a_table_row_per_field_change(planned):
    md = markdown.render(planned.plan)
    rows = [line for line in md.splitlines() if line.startswith("| ") and "`" in line and not line.startswith("| pass")
            and not line.startswith("| FAIL")]
    expected = [(c, f) for c in planned.plan.actionable if c.action is not Action.CREATE for f in c.fields]
    assert expected, "the plan has field changes to existing objects"
    assert len(rows) == len(expected)
    for c, f in expected:
        assert any(f"`{f.path}`" in row and c.key.display() in row for row in rows), f.path


def test_markdown_escapes_pipes_in_cells():
    plan = Plan("s", None, 0, (Change(ResourceKey("", "ConfigMap", "a", "c"), "v1", Action.UPDATE, ChangeKind.OBJECT,
                                      "p", "r", fields=(FieldChange("data.k", "a|b", "c"),)),))
    rows = [line for line in markdown.render(plan).splitlines() if line.startswith("| ConfigMap")]
    assert len(rows) == 1
    assert rows[0].count(" | ") == 3  # four cells: the pipe in the value is escaped
    assert "a\\|b" in rows[0]


def test_markdown_create_shows_object_yaml(planned):
    md = markdown.render(planned.plan)
    assert "<summary>NetworkPolicy.networking.k8s.io argo/harden-default-deny</summary>" in md


def test_no_changes_summary():
    assert summary_line(Plan("s", None, 0, ())) == "No changes. The cluster matches the selected profiles."


# -- SARIF -----------------------------------------------------------------------------------------

def change_results(doc: dict, plan: Plan) -> list[dict]:
    rules = {f"harden/{c.profiles[0]}" for c in plan.actionable}
    return [r for r in doc["runs"][0]["results"] if r["ruleId"] in rules]


def test_sarif_version_and_result_counts(planned):
    doc = sarif.render(planned.plan, planned.profile_files, str(ROOT))
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    assert run["tool"]["driver"]["name"] == "harden"
    results = run["results"]
    finding_results = [r for r in results if r["ruleId"].startswith(("harden/check/", "harden/expectation/",
                                                                     "harden/need/"))]
    assert len(change_results(doc, planned.plan)) == len(planned.plan.actionable)
    assert len(finding_results) == len([f for f in planned.plan.findings if not f.passed])
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rule_ids


def test_sarif_locations_are_repository_relative_at_the_profile_line(planned):
    doc = sarif.render(planned.plan, planned.profile_files, str(ROOT))
    results = doc["runs"][0]["results"]
    changes = change_results(doc, planned.plan)
    assert len(changes) == len(planned.plan.actionable)
    for c, r in zip(planned.plan.actionable, changes, strict=False):  # one result per change, in plan order
        assert c.key.display() in r["message"]["text"]
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"] == {"uri": f"profiles/{c.profiles[0]}.yaml", "uriBaseId": "%SRCROOT%"}
        assert loc["region"]["startLine"] == c.source.line
        assert not loc["artifactLocation"]["uri"].startswith("/")
    check = next(r for r in results if r["ruleId"] == "harden/check/managed-namespace-separate")
    loc = check["locations"][0]["physicalLocation"]
    profile_file = planned.profile_files["namespace-isolation"]
    assert loc["artifactLocation"]["uri"] == "profiles/namespace-isolation.yaml"
    assert loc["region"]["startLine"] == line_in(profile_file, "id: managed-namespace-separate")
    assert check["level"] == "warning"


def test_sarif_rules_name_the_recommendation_of_their_profile(planned):
    doc = sarif.render(planned.plan, planned.profile_files, str(ROOT))
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    help_text = rules["harden/db-egress"]["help"]["text"]
    # profiles/db-egress.yaml metadata.recommendation: the seed document and its section
    import yaml
    recs = yaml.safe_load(Path(planned.profile_files["db-egress"]).read_text())["metadata"]["recommendation"]
    for rec in recs:
        assert rec["section"] in help_text and rec["document"] in help_text


def test_sarif_fingerprints_are_stable_and_distinct(planned):
    a = sarif.render(planned.plan, planned.profile_files, str(ROOT))["runs"][0]["results"]
    # The same plan made again at another time, with every line moved: the identities stay.
    moved = replace(planned.plan, created_at="later", changes=tuple(
        replace(c, source=SourceRef(c.source.file, (c.source.line or 0) + 5)) for c in planned.plan.changes))
    b = sarif.render(moved, planned.profile_files, str(ROOT))["runs"][0]["results"]
    prints = [r["partialFingerprints"]["harden/v1"] for r in a]
    assert prints == [r["partialFingerprints"]["harden/v1"] for r in b]
    assert len(set(prints)) == len(prints)


def test_sarif_failed_error_finding_is_an_error():
    f = Finding("p", "x", False, Severity.ERROR, "broken", kind="expectation", source="p.yaml", line=7)
    doc = sarif.render(Plan("s", None, 0, (), findings=(f,)), {"p": "p.yaml"})
    (r,) = doc["runs"][0]["results"]
    assert (r["ruleId"], r["level"]) == ("harden/expectation/x", "error")
    assert r["locations"][0]["physicalLocation"]["region"]["startLine"] == 7


def test_sarif_note_finding_is_a_note():
    f = Finding("p", "x", False, Severity.NOTE, "fyi", source="p.yaml", line=3)
    (r,) = sarif.render(Plan("s", None, 0, (), findings=(f,)), {"p": "p.yaml"})["runs"][0]["results"]
    assert r["level"] == "note"


def test_sarif_passed_findings_are_not_results():
    f = Finding("p", "x", True, Severity.ERROR, "fine")
    assert sarif.render(Plan("s", None, 0, (), findings=(f,)), {})["runs"][0]["results"] == []


# -- text ------------------------------------------------------------------------------------------

def text_of(plan: Plan) -> str:
    buf = io.StringIO()
    render_plan(plan, Console(file=buf, width=400, no_color=True, highlight=False))
    return buf.getvalue()


def test_text_shows_summary_and_each_change(planned):
    text = text_of(planned.plan)
    assert summary_line(planned.plan) in text
    for c in planned.plan.actionable:
        assert f"{c.action.value} {c.key.display()}" in text


def test_text_shows_before_and_after_of_updates():
    plan = Plan("s", None, 0, (Change(ResourceKey("", "ConfigMap", "a", "c"), "v1", Action.UPDATE, ChangeKind.OBJECT,
                                      "p", "drift", fields=(FieldChange("data.k", "old", "new"),
                                                            FieldChange("data.gone", "x", None),
                                                            FieldChange("data.added", None, 1))),),
                source={"kind": "snapshot", "path": "snap"})
    text = text_of(plan)
    assert '~ data.k: "old" -> "new"' in text
    assert '- data.gone: "x"' in text
    assert "+ data.added: 1" in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text


def test_text_does_not_interpret_markup_in_values():
    plan = Plan("s", None, 0, (Change(ResourceKey("", "ConfigMap", "a", "c"), "v1", Action.UPDATE, ChangeKind.OBJECT,
                                      "p", "[bold]r[/bold]", fields=(FieldChange("data.k", "[red]x[/red]", "y"),)),))
    text = text_of(plan)
    assert "[red]x[/red]" in text and "[bold]r[/bold]" in text


# -- one interface, a view per format --------------------------------------------------------------

def consoles() -> tuple[io.StringIO, io.StringIO, Console, Console]:
    out, err = io.StringIO(), io.StringIO()
    return out, err, Console(file=out, width=400, no_color=True), Console(file=err, width=400, no_color=True)


@pytest.mark.parametrize("output", list(Output))
def test_every_format_has_a_view_that_writes_plans(output, planned):
    out, _, o, e = consoles()
    view = make(output, o, e)
    assert isinstance(view, View) and view.output is output
    view.require("plan", View.plan)  # every format can show a plan
    view.plan(planned.plan, planned.profile_files)
    if output in (Output.JSON, Output.SARIF):
        assert json.loads(out.getvalue())
    else:
        assert summary_line(planned.plan) in out.getvalue()


@pytest.mark.parametrize("output,method,formats", [
    (Output.MARKDOWN, View.apply_result, "text, json"),
    (Output.SARIF, View.can_i, "text, json"),
    (Output.JSON, View.validate, "text"),
])
def test_a_format_refuses_what_it_cannot_show_and_names_those_that_can(output, method, formats):
    _, _, o, e = consoles()
    with pytest.raises(InputError) as exc:
        make(output, o, e).require("x", method)
    assert "cannot write -o " + output.value in exc.value.diagnostic.summary
    assert exc.value.diagnostic.hint.endswith(f"writes: {formats}")


def test_formats_that_cannot_ask_refuse_to_confirm_up_front():
    _, _, o, e = consoles()
    make(Output.TEXT, o, e).require_confirm("perform these actions")
    with pytest.raises(InputError, match="cannot ask whether to perform these actions with -o json"):
        make(Output.JSON, o, e).require_confirm("perform these actions")


def applied() -> tuple[Plan, Result]:
    def key(name):
        return ResourceKey("networking.k8s.io", "NetworkPolicy", "argo", name)
    made = Change(key("a"), "networking.k8s.io/v1", Action.CREATE, ChangeKind.OBJECT, ("p",), "wanted",
                  body={"kind": "NetworkPolicy", "spec": {"podSelector": {}}})
    patched = Change(ResourceKey("apps", "Deployment", "argo", "argo-server"), "apps/v1", Action.UPDATE,
                     ChangeKind.PATCH, ("p", "q"), "args", body={"spec": {}})
    broken = Change(key("b"), "networking.k8s.io/v1", Action.CREATE, ChangeKind.OBJECT, ("p",), "wanted")
    plan = Plan("s", None, 0, (made, patched, broken))
    return plan, Result(done=[made, patched], failed=[(broken, ClusterError("admission webhook said no", status=400))])


def test_json_apply_result_says_what_was_applied_and_what_failed():
    plan, result = applied()
    out, _, o, e = consoles()
    make(Output.JSON, o, e).apply_result(plan, result)
    doc = json.loads(out.getvalue())
    assert doc["complete"] is False and doc["stack"] == "s"
    assert doc["summary"] == {"add": 1, "change": 1, "release": 0, "destroy": 0}
    assert [(c["address"], c["action"], c["kind"]) for c in doc["applied"]] == [
        ("networking.k8s.io/NetworkPolicy/argo/a", "create", "object"),
        ("apps/Deployment/argo/argo-server", "update", "patch")]
    assert doc["applied"][1]["profiles"] == ["p", "q"]
    (failed,) = doc["failed"]
    assert failed["address"].endswith("/b") and failed["error"]["summary"] == "admission webhook said no"
    assert "body" not in out.getvalue()  # what was written is named; bodies stay in the plan


def test_text_apply_result():
    plan, result = applied()
    out, err, o, e = consoles()
    make(Output.TEXT, o, e).apply_result(plan, result)
    assert out.getvalue() == ""
    assert "Error: NetworkPolicy.networking.k8s.io argo/b: admission webhook said no" in err.getvalue()
    assert "Apply failed after 2 of 3 changes" in err.getvalue()
    out, err, o, e = consoles()
    make(Output.TEXT, o, e).apply_result(plan, Result(done=list(plan.changes)))
    assert out.getvalue() == "\nApply complete! Resources: 2 added, 1 changed, 0 destroyed.\n"


def test_headline_names_the_fields_of_a_patched_object():
    plan, _ = applied()
    assert headline(plan.changes[1]) == "fields of Deployment.apps argo/argo-server will be updated in place"
    assert headline(plan.changes[0]) == "NetworkPolicy.networking.k8s.io argo/a will be created"


# -- Markdown for a PR comment: posture first, flows drawn, split under the limit -----------------

def test_markdown_leads_with_the_posture_then_collapses_changes_per_profile(planned):
    md = markdown.render(planned.plan)
    assert md.index("### Posture") < md.index("### Changes by profile")
    for profile in {c.profile for c in planned.plan.actionable}:
        assert f"<details><summary>Profile <code>{profile}</code>:" in md
    assert md.count("<details>") == md.count("</details>")


def test_markdown_names_what_would_break_before_anything_else():
    broken = Finding("install", "workflow-controller/apiserver", False, Severity.ERROR, "cannot reach the API server",
                     kind="need")
    change = Change(ResourceKey("networking.k8s.io", "NetworkPolicy", "argo", "x"), "networking.k8s.io/v1",
                    Action.CREATE, ChangeKind.OBJECT, ("p",), "wanted", body={"kind": "NetworkPolicy"})
    md = markdown.render(Plan("s", None, 0, (change,), findings=(broken,)))
    assert md.index("What would break") < md.index("workflow-controller/apiserver") < md.index("### Changes by profile")


def test_mermaid_draws_opened_flows_solid_and_closed_flows_dashed():
    lines = markdown.mermaid([("argo/a", "argo/b", "2746/TCP", "opened"), ("argo/b", "10.0.0.0/8", "443/TCP", "closed")])
    assert lines[:2] == ["```mermaid", "flowchart LR"] and lines[-1] == "```"
    assert '  n0 -->|"2746/TCP opened"| n1' in lines
    assert '  n1 -.->|"443/TCP closed"| n2' in lines
    assert '  n2["10.0.0.0/8"]' in lines


def test_markdown_plan_draws_the_flows_of_its_impact():
    impact = {"network": [{"direction": "opened", "src": "argo/x", "text": "argo/x can now reach argo/y:80/TCP",
                           "flows": [{"src": "argo/x", "dst": "argo/y", "port": 80, "protocol": "TCP",
                                      "direction": "opened"}]}]}
    md = markdown.render(Plan("s", None, 0, (), impact=impact))
    assert '-->|"80/TCP opened"|' in md and "```mermaid" in md


def test_a_long_comment_is_split_into_numbered_parts_under_the_limit():
    body = {"kind": "ConfigMap", "data": {f"k{i}": "v" * 200 for i in range(60)}}
    changes = tuple(Change(ResourceKey("", "ConfigMap", "argo", f"c{n}"), "v1", Action.CREATE, ChangeKind.OBJECT,
                           (f"p{n % 3}",), "wanted", body=body) for n in range(12))
    plan = Plan("s", None, 0, changes)
    whole = markdown.render(plan, 10**9)
    limit = 8000
    assert len(whole) > 5 * limit
    parts = markdown.paginate(markdown.plan_blocks(plan), limit)
    assert len(parts) > 5
    for i, part in enumerate(parts, 1):
        assert len(part) <= limit
        assert part.startswith(f"{markdown.PART_MARKER}{i}/{len(parts)} -->")
        assert part.count("```") % 2 == 0  # every code fence closed within its part
        assert part.count("<details>") == part.count("</details>")
    for c in changes:  # nothing is lost
        assert any(f"{c.key.display()} will be created" in p for p in parts)
    assert markdown.paginate(["short"], limit) == ["short"]  # what fits stays one comment, unmarked


def test_max_comment_size_reaches_the_markdown_view(planned):
    out, _, o, e = consoles()
    view = make(Output.MARKDOWN, o, e)
    view.limit_size(2000)
    view.plan(planned.plan, planned.profile_files)
    assert out.getvalue().startswith(f"{markdown.PART_MARKER}1/")


def test_impact_matrix_is_left_out_past_its_bound_and_the_text_says_why():
    from harden.impact import summary
    from harden.views.text import render_impact

    def workloads(n: int) -> list[dict]:
        return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"w{i}", "namespace": "a"},
                 "spec": {"template": {"metadata": {"labels": {"app": f"w{i}"}}, "spec": {"containers": []}}}}
                for i in range(n)]

    small = summary.impact(workloads(summary.MATRIX_MAX_GROUPS), workloads(summary.MATRIX_MAX_GROUPS))
    assert len(small["matrix"]["groups"]) == summary.MATRIX_MAX_GROUPS and "omitted" not in small["matrix"]
    assert len(small["matrix"]["cells"]) == summary.MATRIX_MAX_GROUPS ** 2
    big = summary.impact(workloads(summary.MATRIX_MAX_GROUPS + 1), workloads(summary.MATRIX_MAX_GROUPS + 1))
    assert big["matrix"]["groups"] == [] and big["matrix"]["cells"] == {}
    assert big["matrix"]["omitted"].startswith(f"{summary.MATRIX_MAX_GROUPS + 1} pod groups")
    buf = io.StringIO()
    render_impact(big, Console(file=buf, width=400, no_color=True, highlight=False))
    assert "reachability table left out: 31 pod groups (more than 30)" in buf.getvalue()


@pytest.mark.parametrize("preflight", [True, False])
def test_apply_progress_shows_a_dry_run_bar_only_when_there_is_a_dry_run(preflight: bool) -> None:
    """On a terminal the apply shows one bar per pass; with --no-preflight no dry run happens, and
    a dry-run bar stuck at 0/N would say the apply is still waiting for one."""

    err = Console(file=io.StringIO(), force_terminal=True, width=80)
    view = TextView(Console(file=io.StringIO()), err)
    change = Change(ResourceKey("", "ConfigMap", "ns", "c"), "v1", Action.CREATE, ChangeKind.OBJECT, ("p",), "r")
    with view.apply_progress(4) as note:
        for _ in range(4):
            if preflight:
                note("validated", change)
        for _ in range(4):
            note("done", change)
    shown = err.file.getvalue()
    assert "applying" in shown and "4/4" in shown
    assert ("server dry-run" in shown) is preflight
