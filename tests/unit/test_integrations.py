"""The CI integrations run as CI runs them: the GitHub Action's scripts (with a stand-in `gh` on
PATH for the GitHub API), the GitLab template's job script, and the pre-commit hook's entry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
STUB = Path(__file__).parent / "data" / "ci"
BIN = Path(sys.executable).parent  # where `harden` is installed, as pip install puts it on PATH


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A pull request: the example stack (base), then the change of examples/review (head)."""
    r = tmp_path / "repo"
    r.mkdir()
    shutil.copytree(EXAMPLES / "snapshot", r / "snapshot")
    shutil.copy(EXAMPLES / "stack.yaml", r / "stack.yaml")
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "base")
    shutil.copy(EXAMPLES / "review" / "stack.yaml", r / "stack.yaml")
    shutil.copy(EXAMPLES / "review" / "controller-to-server.yaml", r / "controller-to-server.yaml")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "head")
    return r


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{STUB}:{BIN}:{os.environ['PATH']}", "GH_STUB_STATE": str(tmp_path / "gh.json"),
            "GITHUB_REPOSITORY": "acme/platform", "PR_NUMBER": "7", "HARDEN_STATE_DIR": str(tmp_path / "state"),
            **extra}


def run(args: list[str], cwd: Path, e: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=e, capture_output=True, text=True, timeout=300)


def action(repo: Path, tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    e = env(tmp_path, **{"HARDEN_STACK": "stack.yaml", "HARDEN_SNAPSHOT": "snapshot", "HARDEN_OUT": str(tmp_path / "out"),
                         "GITHUB_OUTPUT": str(outputs), **extra})
    done = run(["bash", str(ROOT / ".github" / "harden-action.sh")], repo, e)
    return done, dict(line.split("=", 1) for line in outputs.read_text().splitlines())


# -- the GitHub Action ------------------------------------------------------------------------------

def test_the_action_runs_its_scripts():
    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "harden-action.sh" in runs and "harden-comment.sh" in runs
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
    for script in ("harden-action.sh", "harden-comment.sh"):
        assert os.access(ROOT / ".github" / script, os.X_OK)


def test_action_review_fails_a_change_that_breaks_a_need_after_writing_comment_and_sarif(repo, tmp_path):
    done, outputs = action(repo, tmp_path, HARDEN_COMMAND="review", HARDEN_BASE="HEAD~1")
    assert done.returncode == 1, done.stderr
    assert "breaks 5 component need(s)" in done.stderr
    comment = Path(outputs["comment"]).read_text()
    assert comment.startswith("## harden review: `HEAD~1` → `HEAD`")
    assert "### ⛔ What would break" in comment
    doc = json.loads(Path(outputs["sarif"]).read_text())
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"]


def test_action_review_of_a_change_that_breaks_nothing_passes(repo, tmp_path):
    (repo / "NOTES").write_text("unrelated\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "notes")
    done, outputs = action(repo, tmp_path, HARDEN_COMMAND="review", HARDEN_BASE="HEAD~1")
    assert done.returncode == 0, done.stderr
    assert outputs["exitcode"] == "0"
    assert "Same posture" in Path(outputs["comment"]).read_text()


def test_action_plan_and_validate(repo, tmp_path):
    done, outputs = action(repo, tmp_path, HARDEN_COMMAND="plan", HARDEN_STACK=str(EXAMPLES / "stack.yaml"))
    assert done.returncode == 0, done.stderr
    assert Path(outputs["comment"]).read_text().startswith("## harden plan: stack `argo-quick-start`")
    done, outputs = action(repo, tmp_path, HARDEN_COMMAND="validate", HARDEN_STACK="",
                           HARDEN_PROFILES="controller-to-server.yaml stack.yaml")
    assert done.returncode == 0 and outputs["exitcode"] == "0", done.stderr + done.stdout


def test_comment_script_creates_one_comment_then_edits_it(repo, tmp_path):
    _, outputs = action(repo, tmp_path, HARDEN_COMMAND="review", HARDEN_BASE="HEAD~1")
    e = env(tmp_path)
    comment = ROOT / ".github" / "harden-comment.sh"
    for _ in range(2):
        done = run(["bash", str(comment), outputs["comment"]], repo, e)
        assert done.returncode == 0, done.stderr
    state = json.loads((tmp_path / "gh.json").read_text())
    (only,) = state["comments"]
    assert only["body"] == "<!-- harden-comment:1 -->\n" + Path(outputs["comment"]).read_text()
    assert [m for m, _ in state["calls"]] == ["GET", "POST", "GET", "PATCH"]


def test_comment_script_posts_numbered_parts_and_drops_stale_ones(repo, tmp_path):
    _, small = action(repo, tmp_path, HARDEN_COMMAND="review", HARDEN_BASE="HEAD~1", HARDEN_MAX_COMMENT_SIZE="2500")
    text = Path(small["comment"]).read_text()
    parts = re.findall(r"(?m)^<!-- harden:part (\d+)/(\d+) -->", text)
    assert len(parts) >= 3 and all(total == str(len(parts)) for _, total in parts)
    e = env(tmp_path)
    comment = str(ROOT / ".github" / "harden-comment.sh")
    assert run(["bash", comment, small["comment"]], repo, e).returncode == 0
    bodies = [c["body"] for c in json.loads((tmp_path / "gh.json").read_text())["comments"]]
    assert len(bodies) == len(parts) and all(len(b) <= 2500 + 40 for b in bodies)
    # The next push fits in one comment: part 1 is edited, the others are deleted.
    _, big = action(repo, tmp_path, HARDEN_COMMAND="review", HARDEN_BASE="HEAD~1")
    assert run(["bash", comment, big["comment"]], repo, e).returncode == 0
    (only,) = json.loads((tmp_path / "gh.json").read_text())["comments"]
    assert only["body"].startswith("<!-- harden-comment:1 -->\n## harden review")


# -- GitLab ---------------------------------------------------------------------------------------

def test_gitlab_job_script_runs_as_the_runner_runs_it(repo, tmp_path):
    job = yaml.safe_load((ROOT / ".gitlab" / "harden.gitlab-ci.yml").read_text())
    variables = {k: str(v) for k, v in job["variables"].items()}
    script = "\n".join(job["harden-review"]["script"])
    e = env(tmp_path, **{**variables, "HARDEN_STACK": "stack.yaml", "HARDEN_SNAPSHOT": "snapshot",
                         "CI_MERGE_REQUEST_DIFF_BASE_SHA": "HEAD~1"})
    e["PATH"] = f"{BIN}:{e['PATH']}"  # `python` of the job image
    done = run(["bash", "-c", script], repo, e)
    assert done.returncode == 1, done.stderr  # the example change breaks the API server needs
    assert "breaks 5 component need(s)" in done.stderr
    assert (repo / "harden-out" / "comment.md").read_text().startswith("## harden review")
    assert json.loads((repo / "harden-out" / "harden.sarif").read_text())["version"] == "2.1.0"


# -- pre-commit -----------------------------------------------------------------------------------

def hook() -> dict:
    (h,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return h


def hooked_files(root: Path) -> list[str]:
    """The files pre-commit passes the hook: tracked YAML files its `files` pattern matches."""
    pattern, exclude = re.compile(hook()["files"]), re.compile(hook().get("exclude") or "(?!)")
    names = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    return [n for n in names if n.endswith((".yaml", ".yml")) and pattern.search(n) and not exclude.search(n)]


def test_pre_commit_hook_validates_the_repositorys_profiles_and_stacks(tmp_path):
    files = hooked_files(ROOT)
    assert "profiles/db-egress.yaml" in files and "examples/stack.yaml" in files
    assert not any(f.startswith(("tests/", ".github/")) for f in files)
    done = run(["bash", "-c", hook()["entry"] + ' "$@"', "hook", *files], ROOT, env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_hook_fails_a_broken_profile(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (ROOT / "profiles" / "db-egress.yaml").read_text().replace("type: port", "type: portt", 1)
    (profiles / "db-egress.yaml").write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    files = hooked_files(tmp_path)
    assert files == ["profiles/db-egress.yaml"]
    done = run(["bash", "-c", hook()["entry"] + ' "$@"', "hook", *files], tmp_path, env(tmp_path))
    assert done.returncode == 1
    assert "profiles/db-egress.yaml" in done.stdout + done.stderr
