"""harden review: two revisions of a git checkout planned against one snapshot, compared by posture.

Each case is a real change to one kind of profile field, committed in a throwaway git repository,
and checked against what was worked out by hand from the example snapshot (examples/snapshot: the
upstream quick-start-postgres install in `argo`, its API server at 192.168.49.2:8443).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from harden.commands import EXIT_CHANGES, EXIT_OK, review_cmd
from harden.engine import Request
from harden.errors import HardenError
from harden.impact.netpol import FlowDirection
from harden.impact.rbac import ChangeDirection
from harden.views import Output, make

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "review"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A checkout holding the example stack (its UI role as a local profile file) and snapshot."""
    r = tmp_path / "repo"
    r.mkdir()
    shutil.copytree(ROOT / "examples" / "snapshot", r / "snapshot")
    shutil.copy(ROOT / "profiles" / "ui-read-only-role.yaml", r / "ui.yaml")
    stack = (ROOT / "examples" / "stack.yaml").read_text().replace("- profile: ui-read-only-role", "- profile: ui.yaml")
    (r / "stack.yaml").write_text(stack)
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "base")
    monkeypatch.chdir(r)
    return r


def commit(repo: Path, edit) -> None:
    edit()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "head")


def review(repo: Path, output: Output = Output.JSON, base: str = "HEAD~1", head: str = "HEAD") -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    view = make(output, Console(file=out, width=400, no_color=True), Console(file=err, width=400, no_color=True))
    req = Request(stack_file="stack.yaml", snapshot="snapshot", state_dir=str(repo.parent / "state"))
    code = review_cmd(view, req, base=base, head=head)
    return code, out.getvalue()


def edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- a verb added to a Role ------------------------------------------------------------------------

ARGO_RESOURCES = ["clusterworkflowtemplates", "cronworkflows", "eventsources", "sensors", "workfloweventbindings",
                  "workflows", "workflowtaskresults", "workflowtemplates"]


def test_a_verb_added_to_a_role_is_that_verb_gained_by_the_bound_group_on_each_resource(repo):
    # ui.yaml's second rule lists the argoproj.io resources with [get, list, watch]; the stack binds
    # the Role to group argo-viewers in argo. Adding `delete` gains exactly delete on each of them.
    commit(repo, lambda: edit_text(repo / "ui.yaml", "workflowtaskresults]\n        verbs: [get, list, watch]",
                                   "workflowtaskresults]\n        verbs: [get, list, watch, delete]"))
    code, out = review(repo)
    doc = json.loads(out)
    assert code == EXIT_CHANGES and doc["changed"]
    assert [(p["subject"], p["direction"], p["verbs"], p["group"], p["resource"], p["namespace"])
            for p in doc["permissions"]] == [
        ("group:argo-viewers", ChangeDirection.GAINS.value, ["delete"], "argoproj.io", r, "argo") for r in ARGO_RESOURCES]
    assert doc["flows"] == [] and doc["statuses"] == []
    (obj,) = doc["objects"]
    assert obj["address"] == "rbac.authorization.k8s.io/Role/argo/ui-user-read-only"
    assert (obj["baseAction"], obj["headAction"]) == ("create", "create")
    assert obj["fields"] == [{"path": "rules[1].verbs[3]", "before": None, "after": "delete"}]
    assert obj["source"]["file"] == "ui.yaml"  # the repository's path, not the temporary copy's


# -- a port opened ---------------------------------------------------------------------------------

def test_a_profile_the_base_lacks_opens_exactly_its_flow(repo):
    # Under namespace-isolation's default deny, workflow-controller cannot reach argo-server; the
    # new profile allows its egress and argo-server's ingress on 2746: one flow opens, nothing else.
    def add() -> None:
        shutil.copy(DATA / "controller-to-server.yaml", repo / "open.yaml")
        with (repo / "stack.yaml").open("a") as f:
            f.write("  - profile: open.yaml\n")

    commit(repo, add)
    code, out = review(repo)
    doc = json.loads(out)
    assert code == EXIT_CHANGES
    assert [(f["src"], f["dst"], f["port"], f["protocol"], f["direction"]) for f in doc["flows"]] == [
        ("argo/deployment/workflow-controller", "argo/deployment/argo-server", 2746, "TCP", FlowDirection.OPENED.value)]
    assert doc["permissions"] == [] and doc["statuses"] == []
    assert [(o["address"], o["baseAction"], o["headAction"], o["source"]) for o in doc["objects"]] == [
        ("networking.k8s.io/NetworkPolicy/argo/harden-allow-controller-to-server", "none", "create", {"file": "open.yaml", "line": 23}),
        ("networking.k8s.io/NetworkPolicy/argo/harden-allow-server-from-controller", "none", "create", {"file": "open.yaml", "line": 32})]
    # And the other way round: the head lacks the profile the base has.
    code, out = review(repo, base="HEAD", head="HEAD~1")
    back = json.loads(out)
    assert [(f["src"], f["dst"], f["direction"]) for f in back["flows"]] == [
        ("argo/deployment/workflow-controller", "argo/deployment/argo-server", FlowDirection.CLOSED.value)]
    assert [(o["baseAction"], o["headAction"]) for o in back["objects"]] == [("create", "none")] * 2


# -- a need broken ---------------------------------------------------------------------------------

APISERVER_NEEDS = ["argo/agent/apiserver", "argo/argo-server/apiserver", "argo/artifact-gc/apiserver",
                   "argo/workflow-controller/apiserver", "argo/workflow-pod/apiserver"]


def test_a_port_parameter_that_misses_the_api_server_breaks_every_component_that_calls_it(repo):
    # The snapshot's `kubernetes` EndpointSlice has the API server on 8443; restricting the
    # kube-api egress to 6443 cuts off every Argo component that talks to it.
    commit(repo, lambda: edit_text(repo / "stack.yaml", "  - profile: namespace-isolation\n",
                                   "  - profile: namespace-isolation\n    with:\n      apiServerPorts: [6443]\n"))
    code, out = review(repo)
    doc = json.loads(out)
    assert code == EXIT_CHANGES
    assert [(s["kind"], s["id"], s["base"], s["head"], s["severity"]) for s in doc["statuses"]] == [
        ("need", n, "kept", "broken", "worse") for n in APISERVER_NEEDS]
    assert doc["summary"]["statusesWorse"] == 5 and doc["permissions"] == []
    (obj,) = doc["objects"]
    assert obj["address"] == "networking.k8s.io/NetworkPolicy/argo/harden-allow-kube-api"
    assert obj["fields"] == [{"path": "spec.egress[0].ports[0].port", "before": 8443, "after": 6443}]
    code, md = review(repo, Output.MARKDOWN)
    posture = md.split("### Objects whose plan differs")[0]
    assert "### ⛔ What would break" in posture
    for n in APISERVER_NEEDS:
        assert f"**{n}**: kept → **broken**" in posture


# -- exit codes and errors -------------------------------------------------------------------------

def test_the_same_posture_exits_0(repo):
    commit(repo, lambda: (repo / "README").write_text("unrelated\n"))
    code, out = review(repo, Output.MARKDOWN)
    assert code == EXIT_OK
    assert "**Same posture" in out


def test_a_stack_the_base_lacks_is_reviewed_against_nothing_selected(repo):
    def rename() -> None:
        (repo / "stack.yaml").rename(repo / "other.yaml")

    commit(repo, rename)  # HEAD has no stack.yaml: the head selects nothing, the base selects the stack
    code, out = review(repo)
    doc = json.loads(out)
    assert code == EXIT_CHANGES
    assert all(o["headAction"] == "none" for o in doc["objects"]) and doc["objects"]


def test_an_unknown_revision_is_an_input_error_naming_it(repo):
    with pytest.raises(HardenError) as exc:
        review(repo, base="no-such-branch")
    assert "no-such-branch" in exc.value.diagnostics[0].summary


def test_a_bad_profile_in_a_revision_names_the_revision_and_the_repository_path(repo):
    commit(repo, lambda: edit_text(repo / "stack.yaml", "- profile: ui.yaml", "- profile: no-such-profile"))
    with pytest.raises(HardenError) as exc:
        review(repo)
    (d,) = exc.value.diagnostics
    assert d.file == "head:stack.yaml" and "no-such-profile" in d.summary


def test_the_cli_exits_2_on_a_change_and_1_outside_a_git_checkout(repo, tmp_path):
    import sys

    harden = str(Path(sys.executable).parent / "harden")
    commit(repo, lambda: edit_text(repo / "ui.yaml", "resources: [events, pods, pods/log]",
                                   "resources: [events, pods, pods/log, secrets]"))
    args = ["review", "--base", "HEAD~1", "-f", "stack.yaml", "--snapshot", "snapshot", "--state-dir", str(tmp_path / "s")]
    done = subprocess.run([harden, *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "group:argo-viewers" in done.stdout and "secrets" in done.stdout
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    done = subprocess.run([harden, *args], cwd=elsewhere, capture_output=True, text=True)
    assert done.returncode == 1
    assert "not a git checkout" in done.stderr and "Traceback" not in done.stderr
