"""`harden review` against the real API server: both revisions planned against the live cluster,
and nothing written to it."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml
from kubernetes import client
from kubeutil import CLI_ENV, REPO, harden_cmd

ARGO_RESOURCES = ["clusterworkflowtemplates", "cronworkflows", "eventsources", "sensors", "workfloweventbindings",
                  "workflows", "workflowtaskresults", "workflowtemplates"]


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True, env=CLI_ENV)


def test_review_against_the_cluster_reports_the_verb_a_role_gains(kube, namespace, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "profiles" / "ui-read-only-role.yaml", repo / "ui.yaml")
    (repo / "stack.yaml").write_text(yaml.safe_dump({
        "apiVersion": "harden.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "it-review"},
        "parameters": {"namespace": namespace}, "profiles": [{"profile": "ui.yaml", "with": {"group": "viewers"}}]}))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    text = (repo / "ui.yaml").read_text()
    old = "workflowtaskresults]\n        verbs: [get, list, watch]"
    assert old in text
    (repo / "ui.yaml").write_text(text.replace(old, "workflowtaskresults]\n        verbs: [get, list, watch, delete]"))
    git(repo, "commit", "-qam", "head")

    done = subprocess.run(harden_cmd("review", "--base", "HEAD~1", "-f", "stack.yaml", "-o", "json",
                                     "--kubeconfig", kube.kubeconfig, "--state-dir", str(tmp_path / "state")),
                          cwd=repo, capture_output=True, text=True, timeout=300, env=CLI_ENV)
    assert done.returncode == 2, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert [(p["subject"], p["verbs"], p["resource"], p["namespace"]) for p in doc["permissions"]] == [
        ("group:viewers", ["delete"], r, namespace) for r in ARGO_RESOURCES]
    assert doc["flows"] == []
    # A review plans; it writes nothing.
    names = [r.metadata.name for r in client.RbacAuthorizationV1Api(kube.api_client).list_namespaced_role(namespace).items]
    assert "ui-user-read-only" not in names
