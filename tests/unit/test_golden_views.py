"""Golden files of every view of the bundled example (`examples/stack.yaml` on `examples/snapshot`),
and of the review comment the README shows (`examples/review-comment.md`).

Regenerate after an intended change with `HARDEN_UPDATE_GOLDEN=1 pytest tests/unit/test_golden_views.py`
and read the diff. Absolute paths and the plan's time are normalized, so the files are the same on
every machine.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from harden.commands import EXIT_CHANGES, review_cmd
from harden.engine import Request, build_plan
from harden.views import Output, make, markdown, sarif
from harden.views.text import render_plan

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden_views"
EXAMPLES = ROOT / "examples"
UPDATE = bool(os.environ.get("HARDEN_UPDATE_GOLDEN"))


def normalize(text: str, *dirs: Path) -> str:
    for d in dirs:
        text = text.replace(str(d), "<tmp>")
    text = text.replace(str(ROOT), "<root>")
    return re.sub(r'"createdAt": "[^"]*"', '"createdAt": "<time>"', text)


def check(name: str, text: str, path: Path | None = None) -> None:
    path = path or GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with HARDEN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs from what the code writes now (HARDEN_UPDATE_GOLDEN=1 to regenerate)"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    state = tmp_path_factory.mktemp("golden-state")
    planned = build_plan(Request(stack_file=str(EXAMPLES / "stack.yaml"), snapshot=str(EXAMPLES / "snapshot"),
                                 state_dir=str(state)))
    return planned, state


def test_text(example):
    planned, state = example
    buf = io.StringIO()
    render_plan(planned.plan, Console(file=buf, width=120, no_color=True, highlight=False))
    check("example.txt", normalize(buf.getvalue(), state))


def test_markdown(example):
    planned, state = example
    check("example.md", normalize(markdown.render(planned.plan), state) + "\n")


def test_json(example):
    planned, state = example
    check("example.json", normalize(json.dumps(planned.plan.to_dict(), indent=2), state) + "\n")


def test_sarif(example):
    planned, state = example
    check("example.sarif", normalize(json.dumps(sarif.render(planned.plan, planned.profile_files, str(ROOT)),
                                                indent=2), state) + "\n")


# -- the documents are valid by their schemas ---------------------------------------------------------

def test_json_plan_is_valid_by_the_shipped_schema(example):
    from importlib import resources

    schema = json.loads(resources.files("harden").joinpath("schema", "plan.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(json.dumps(example[0].plan.to_dict())))
    # A no-op found in sync on a cluster (a snapshot's objects have no uid) says what apply records.
    from harden.plan import in_sync_token

    synced = example[0].plan.to_dict()
    synced["changes"][0]["inSync"] = in_sync_token({"metadata": {"resourceVersion": "7", "uid": "u-1"}})
    jsonschema.Draft202012Validator(schema).validate(synced)
    # The schema can fail: a change with an unknown action is refused.
    bad = example[0].plan.to_dict()
    bad["changes"][0]["action"] = "explode"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


SARIF_SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text())


def test_sarif_is_valid_by_the_official_sarif_2_1_0_schema(example):
    planned, _ = example
    doc = sarif.render(planned.plan, planned.profile_files, str(ROOT))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(doc)
    assert doc["runs"][0]["results"]
    bad = json.loads(json.dumps(doc))
    bad["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level: the schema says so
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SARIF_SCHEMA).validate(bad)


# -- the review comment of the README ------------------------------------------------------------------

def example_review(tmp_path: Path, monkeypatch, output: Output) -> tuple[int, str]:
    """The review of examples/review/stack.yaml (head) against examples/stack.yaml (base), in a
    throwaway git repository, on the example snapshot."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(EXAMPLES / "snapshot", repo / "snapshot")
    shutil.copy(EXAMPLES / "stack.yaml", repo / "stack.yaml")
    def run(*a):
        return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *a], cwd=repo,
                                        check=True, capture_output=True)
    run("init", "-q")
    run("add", "-A")
    run("commit", "-qm", "base")
    shutil.copy(EXAMPLES / "review" / "stack.yaml", repo / "stack.yaml")
    shutil.copy(EXAMPLES / "review" / "controller-to-server.yaml", repo / "controller-to-server.yaml")
    run("add", "-A")
    run("commit", "-qm", "head")
    monkeypatch.chdir(repo)
    out = io.StringIO()
    view = make(output, Console(file=out, width=400, no_color=True), Console(file=io.StringIO()))
    code = review_cmd(view, Request(stack_file="stack.yaml", snapshot="snapshot", state_dir=str(tmp_path / "state")),
                      base="HEAD~1", head="HEAD")
    return code, normalize(out.getvalue(), tmp_path)


def test_the_readme_review_comment_is_what_the_code_writes(tmp_path, monkeypatch):
    code, md = example_review(tmp_path, monkeypatch, Output.MARKDOWN)
    assert code == EXIT_CHANGES
    check("review-comment.md", md, EXAMPLES / "review-comment.md")
    readme = (ROOT / "README.md").read_text()
    assert md.strip() in readme, "README's Pull requests section shows examples/review-comment.md"


def test_review_sarif_is_valid_and_placed(tmp_path, monkeypatch):
    code, text = example_review(tmp_path, monkeypatch, Output.SARIF)
    doc = json.loads(text)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(doc)
    results = doc["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"harden/rbac-widened", "harden/flow-opened", "harden/object-differs"}
    for r in results:
        (loc,) = r["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not loc["physicalLocation"]["artifactLocation"]["uri"].startswith(("/", "<"))
