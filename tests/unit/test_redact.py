"""No Secret value ever leaves harden: not in any plan view, not in a saved plan file."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harden.cli import app
from harden.observe import SnapshotSource
from harden.redact import LAST_APPLIED, REDACTED, redact

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "examples" / "snapshot"

SECRET_VALUE = "hunter2-value"
SECRET_B64 = base64.b64encode(b"s3cr3t-db-password").decode()
LAST_APPLIED_SECRET = json.dumps({"apiVersion": "v1", "kind": "Secret", "stringData": {"password": "in-annotation-pw"}})

EXTRA = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: leak-check
  namespace: argo
  labels: {{app.kubernetes.io/managed-by: harden, harden.dev/stack: leaky, harden.dev/profile: gone}}
  annotations:
    {LAST_APPLIED}: '{LAST_APPLIED_SECRET}'
data:
  password: {SECRET_B64}
stringData:
  token: {SECRET_VALUE}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
  namespace: argo
spec:
  selector: {{matchLabels: {{app: minio}}}}
  template:
    metadata: {{labels: {{app: minio}}}}
    spec:
      containers:
        - name: main
          image: minio/minio
          env:
            - {{name: MINIO_ACCESS_KEY, value: admin}}
            - {{name: MINIO_BROWSER, value: browser-enabled}}
            - {{name: MINIO_SECRET_KEY, value: {SECRET_VALUE}}}
"""

STACK = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: leaky}
profiles:
  - profile: read-only-server
  - profile: namespace-isolation
  - profile: server-auth-tls
  - profile: artifact-egress
    with:
      repository: {namespace: argo, podSelector: {app: minio}}
      port: 9000
"""

FORBIDDEN = (SECRET_VALUE, SECRET_B64, "in-annotation-pw")


# -- redact() --------------------------------------------------------------------------------------

def test_secret_values_redacted_keys_kept():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {LAST_APPLIED: "x"}},
              "data": {"a": "YWJj"}, "stringData": {"b": "plain"}}
    out = redact(secret)
    assert out["data"] == {"a": REDACTED} and out["stringData"] == {"b": REDACTED}
    assert out["metadata"]["annotations"][LAST_APPLIED] == REDACTED
    assert secret["data"] == {"a": "YWJj"}  # the input is not modified


@pytest.mark.parametrize("name", ["MINIO_SECRET_KEY", "DB_PASSWORD", "api_key", "GITHUB_TOKEN", "AWS_ACCESS_KEY_ID",
                                  "client-credentials", "POSTGRES_PASSWD"])
def test_credential_like_env_values_masked(name):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": name, "value": "v"}]}]}}}}
    assert redact(dep)["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def test_ordinary_env_and_value_from_kept():
    env = [{"name": "LOG_LEVEL", "value": "debug"},
           {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    dep = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "d"},
           "spec": {"template": {"spec": {"initContainers": [{"name": "c", "env": copy.deepcopy(env)}]}}}}
    assert redact(dep)["spec"]["template"]["spec"]["initContainers"][0]["env"] == env


def test_pod_and_cronjob_env_masked():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "env": [{"name": "SECRET", "value": "x"}]}]}}
    assert redact(pod)["spec"]["containers"][0]["env"][0]["value"] == REDACTED
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "env": [{"name": "TOKEN", "value": "x"}]}]}}}}}}
    assert redact(cron)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == REDACTED


def test_workload_last_applied_annotation_masked():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "annotations": {LAST_APPLIED: '{"env": "MINIO_SECRET_KEY=x"}'}}, "spec": {}}
    assert redact(dep)["metadata"]["annotations"][LAST_APPLIED] == REDACTED


def test_snapshot_redacts_at_the_edge(tmp_path):
    (tmp_path / "extra.yaml").write_text(EXTRA)
    live = SnapshotSource(str(tmp_path)).observe([])
    text = json.dumps({str(k): o for k, o in live.objects.items()})
    for s in FORBIDDEN:
        assert s not in text
    assert "browser-enabled" in text  # not everything is masked


# -- end to end: every output format and the saved plan --------------------------------------------

@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    d = tmp_path_factory.mktemp("leaky")
    snap = d / "snapshot"
    shutil.copytree(SNAPSHOT, snap)
    (snap / "zz-extra.yaml").write_text(EXTRA)
    stack = d / "stack.yaml"
    stack.write_text(STACK)
    return d, snap, stack


@pytest.mark.parametrize("output", ["text", "json", "markdown", "sarif"])
def test_no_secret_in_plan_output_or_saved_plan(leaky, output):
    d, snap, stack = leaky
    out_file = d / f"plan-{output}.json"
    r = CliRunner().invoke(app, ["plan", "-f", str(stack), "--snapshot", str(snap), "--state-dir", str(d / "state"),
                                 "--output", output, "--out", str(out_file)])
    assert r.exit_code == 0, r.output
    # The labelled Secret is an orphan of this stack, so the plan does talk about it.
    assert "leak-check" in r.output
    saved = out_file.read_text()
    for s in FORBIDDEN:
        assert s not in r.output, (output, s)
        assert s not in saved, (output, s)
    shown = CliRunner().invoke(app, ["show", str(out_file), "--output", output])
    assert shown.exit_code == 0
    for s in FORBIDDEN:
        assert s not in shown.output
