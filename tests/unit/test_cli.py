"""The command line: exit codes, outputs, saved plans, and clear errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harden.cli import app
from harden.observe import SnapshotSource

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "examples" / "snapshot"
EXAMPLE_STACK = ROOT / "examples" / "stack.yaml"

# The original four network/RBAC profiles against the quick-start snapshot:
#   namespace-isolation: 4 NetworkPolicies (default-deny, dns, kube-api, server-ingress)  -> 4 creates
#   metrics-ingress:     1 NetworkPolicy                                                   -> 1 create
#   db-egress (in-cluster selector database): egress for controller and server, plus the
#                        ingress policy at the database                                     -> 3 creates
#   read-only-server:    argo-server-cluster-role and argo-server-clusterworkflowtemplate-role
#                        both grant more than get/list/watch in the snapshot                -> 2 updates
FOUR_PROFILES = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: argo-quick-start}
parameters:
  namespace: argo
profiles:
  - profile: read-only-server
  - profile: namespace-isolation
  - profile: metrics-ingress
    with:
      prometheusNamespace: monitoring
  - profile: db-egress
    with:
      database: {namespace: argo, podSelector: {app: postgres}}
      port: 5432
"""


def flat(text: str) -> str:
    return " ".join(text.split())


def invoke(args, **kw):
    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    # Expected failures end in SystemExit with a code; anything else is a bug (a traceback).
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


@pytest.fixture
def stack4(tmp_path):
    p = tmp_path / "stack.yaml"
    p.write_text(FOUR_PROFILES)
    return p


def plan_args(stack, tmp_path, *extra):
    return ["plan", "-f", stack, "--snapshot", SNAPSHOT, "--state-dir", tmp_path / "state", *extra]


# -- plan ------------------------------------------------------------------------------------------

def test_plan_detailed_exitcode_with_changes(stack4, tmp_path):
    r = invoke(plan_args(stack4, tmp_path, "--detailed-exitcode"))
    assert r.exit_code == 2, r.output
    assert "Plan: 8 to add, 2 to change, 0 to destroy." in flat(r.output)


def test_plan_without_detailed_exitcode_exits_0(stack4, tmp_path):
    r = invoke(plan_args(stack4, tmp_path))
    assert r.exit_code == 0
    assert "Plan: 8 to add, 2 to change, 0 to destroy." in flat(r.output)


def test_example_stack_plan_counts(tmp_path):
    # examples/stack.yaml adds to the four profiles above: workflow-service-account (ServiceAccount,
    # its token Secret, a Role, a RoleBinding: 4), workflow-pod-defaults (the same for the executor:
    # 4), artifact-egress (4 NetworkPolicies with an in-cluster repository), ui-read-only-role with a
    # group (Role + group RoleBinding: 2) -> 8 + 4 + 4 + 4 + 2 = 22 creates; server-auth-tls edits
    # argo-server's args (1 update) and workflow-pod-defaults, workflow-service-account and
    # workflow-restrictions all patch the controller ConfigMap, combined into 1 update -> 4 updates.
    r = invoke(plan_args(EXAMPLE_STACK, tmp_path, "--detailed-exitcode"))
    assert r.exit_code == 2
    assert "Plan: 23 to add, 4 to change, 0 to destroy." in flat(r.output)


def test_plan_json_output(stack4, tmp_path):
    r = invoke(plan_args(stack4, tmp_path, "--output", "json"))
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["summary"] == {"add": 8, "change": 2, "release": 0, "destroy": 0}
    creates = [c for c in data["changes"] if c["action"] == "create"]
    assert {c["key"]["name"] for c in creates} == {
        "harden-default-deny", "harden-allow-dns", "harden-allow-kube-api", "harden-allow-server-ingress",
        "harden-allow-metrics-ingress", "harden-allow-db-egress-controller", "harden-allow-db-egress-server",
        "harden-allow-db-ingress-from-argo"}
    updates = {c["key"]["name"] for c in data["changes"] if c["action"] == "update"}
    assert updates == {"argo-server-cluster-role", "argo-server-clusterworkflowtemplate-role"}


def test_plan_out_file_then_show(stack4, tmp_path):
    out = tmp_path / "plan.json"
    r = invoke(plan_args(stack4, tmp_path, "--out", out))
    assert r.exit_code == 0
    assert f"harden apply {out}" in flat(r.output)
    saved = json.loads(out.read_text())
    assert saved["stack"] == "argo-quick-start" and len(saved["changes"]) == 10
    shown = invoke(["show", out])
    assert shown.exit_code == 0
    assert "Plan: 8 to add, 2 to change, 0 to destroy." in flat(shown.output)
    assert "NetworkPolicy.networking.k8s.io argo/harden-default-deny" in shown.output
    md = invoke(["show", out, "--output", "markdown"])
    assert "**Plan: 8 to add, 2 to change, 0 to destroy.**" in md.output


def test_show_missing_or_bad_plan_file(tmp_path):
    r = invoke(["show", tmp_path / "nope.json"])
    assert r.exit_code == 1 and "plan file not found" in flat(r.output)
    bad = tmp_path / "bad.json"
    bad.write_text('{"stack": "x"}')
    r = invoke(["show", bad])
    assert r.exit_code == 1 and "not a harden plan file" in flat(r.output)


def test_plan_with_no_profiles_is_an_error(tmp_path):
    r = invoke(["plan", "--snapshot", SNAPSHOT, "--state-dir", tmp_path / "state"])
    assert r.exit_code == 1
    assert "no profiles selected" in flat(r.output)


def test_plan_missing_snapshot(tmp_path):
    r = invoke(["plan", "-p", "metrics-ingress", "--snapshot", tmp_path / "nope", "--state-dir", tmp_path / "s"])
    assert r.exit_code == 1 and "snapshot not found" in flat(r.output)


# -- profiles and validate -------------------------------------------------------------------------

def test_profiles_lists_builtins(tmp_path):
    r = invoke(["profiles"])
    assert r.exit_code == 0
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    for name in ("namespace-isolation", "metrics-ingress", "db-egress", "read-only-server"):
        assert name in names
    assert sorted(names) == sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))


def test_profiles_json(tmp_path):
    r = invoke(["profiles", "--output", "json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    db = {p["name"]: p for p in rows["db-egress"]["parameters"]}
    assert db["database"]["required"] is True and db["port"]["default"] == 5432


def test_validate_builtins_succeeds():
    r = invoke(["validate", ROOT / "profiles"])
    assert r.exit_code == 0
    assert "Success" in r.output


def test_validate_broken_profile_fails_with_file_and_line(tmp_path):
    good = (ROOT / "profiles" / "metrics-ingress.yaml").read_text()
    broken = good.replace("    type: port\n", "    type: port\n    colour: red\n", 1)
    assert broken != good
    p = tmp_path / "broken.yaml"
    p.write_text(broken)
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "colour: red" in text)
    r = invoke(["validate", p])
    assert r.exit_code == 1
    assert f"{p}:{line}" in flat(r.output)
    assert "colour" in r.output
    assert "Traceback" not in r.output


def test_validate_reports_problems_of_every_file(tmp_path):
    (tmp_path / "a.yaml").write_text("apiVersion: harden.dev/v1alpha1\nkind: Profile\nmetadata: {name: a}\n")
    (tmp_path / "b.yaml").write_text("key: [unclosed\n")
    r = invoke(["validate", tmp_path])
    assert r.exit_code == 1
    out = flat(r.output)
    assert str(tmp_path / "a.yaml") in out and str(tmp_path / "b.yaml") in out


# -- apply -----------------------------------------------------------------------------------------

def test_apply_without_tty_and_auto_approve_refuses(stack4, tmp_path, monkeypatch):
    # `apply` has no --snapshot; serve the snapshot where the cluster would be read.
    monkeypatch.setattr("harden.engine.connect", lambda req: (SnapshotSource(str(SNAPSHOT)), None))
    r = invoke(["apply", "-f", stack4, "--state-dir", tmp_path / "state"], input="yes\n")
    assert r.exit_code == 1
    out = flat(r.output)
    assert "--auto-approve" in out
    assert "Apply complete" not in out
    assert not (tmp_path / "state" / "argo-quick-start.json").exists()


def run_cli(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    e.update(env or {})
    e["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "harden.cli", *map(str, args)], cwd=ROOT, env=e, check=False,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_missing_kubeconfig_is_a_clear_error(stack4, tmp_path):
    for cmd in (["plan"], ["apply", "--auto-approve"]):
        p = run_cli(*cmd, "-f", stack4, "--kubeconfig", "/nonexistent", "--state-dir", tmp_path / "state")
        out = flat(p.stdout + p.stderr)
        assert p.returncode == 1, out
        assert "kubeconfig" in out and "/nonexistent" in out
        assert "Traceback" not in out


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: dead
  context: {cluster: dead, user: u}
current-context: dead
"""


def test_unreachable_cluster_is_a_clear_error(stack4, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG)
    p = run_cli("plan", "-f", stack4, "--kubeconfig", kc, "--state-dir", tmp_path / "state")
    out = flat(p.stdout + p.stderr)
    assert p.returncode == 1, out
    assert "cannot reach" in out and "API server" in out
    assert "Traceback" not in out
    assert "not-a-real-token" not in out


def test_unknown_context_is_a_clear_error(stack4, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG)
    p = run_cli("plan", "-f", stack4, "--kubeconfig", kc, "--context", "nope", "--state-dir", tmp_path / "state")
    out = flat(p.stdout + p.stderr)
    assert p.returncode == 1, out
    assert "nope" in out and "Traceback" not in out


def test_state_list_empty(tmp_path):
    r = invoke(["state", "list", "--stack", "x", "--state-dir", tmp_path])
    assert r.exit_code == 0 and "No state" in r.output
    r = invoke(["state", "show", "a/b/c/d", "--stack", "x", "--state-dir", tmp_path])
    assert r.exit_code == 1 and "no state record" in flat(r.output)


# -- output formats and exit codes -----------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["plan", "-p", "metrics-ingress", "--snapshot", SNAPSHOT, "--state-dir", "STATE"],
                                 ["show", "plan.json"], ["apply", "--auto-approve", "--state-dir", "STATE"],
                                 ["destroy", "--auto-approve", "--state-dir", "STATE"], ["profiles"]])
def test_unknown_output_format_is_a_usage_error(cmd, tmp_path, monkeypatch):
    # Before: `-o yaml` (or any typo) printed text and exited 0, so a pipeline parsing the
    # output would only fail later, on text it could not read.
    monkeypatch.setattr("harden.engine.connect", lambda req: pytest.fail("a refused format must not reach the cluster"))
    r = invoke([tmp_path / "state" if a == "STATE" else a for a in cmd] + ["-o", "yaml"])
    assert r.exit_code == 2, r.output
    out = flat(r.output)
    assert "yaml" in out and all(f"'{v}'" in out for v in ("text", "json", "markdown", "sarif"))
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("cmd,supported", [(["apply", "--auto-approve"], "text, json"),
                                           (["destroy", "--auto-approve"], "text, json")])
def test_format_a_command_cannot_write_is_refused_before_any_work(cmd, supported, stack4, tmp_path, monkeypatch):
    monkeypatch.setattr("harden.engine.connect", lambda req: pytest.fail("a refused format must not reach the cluster"))
    r = invoke([*cmd, "-f", stack4, "--state-dir", tmp_path / "state", "-o", "markdown"])
    assert r.exit_code == 1, r.output
    out = flat(r.output)
    assert f"`harden {cmd[0]}` cannot write -o markdown" in out and f"writes: {supported}" in out
    assert not (tmp_path / "state").exists()


def test_profiles_refuses_sarif_naming_what_it_writes():
    r = invoke(["profiles", "-o", "sarif"])
    assert r.exit_code == 1
    assert "`harden profiles` cannot write -o sarif" in flat(r.output) and "writes: text, json" in flat(r.output)


def test_apply_json_without_auto_approve_is_refused_before_planning(stack4, tmp_path, monkeypatch):
    # A machine reading JSON cannot answer a prompt (as `terraform apply -json`).
    monkeypatch.setattr("harden.engine.connect", lambda req: pytest.fail("must be refused before reading the cluster"))
    r = invoke(["apply", "-f", stack4, "--state-dir", tmp_path / "state", "-o", "json"])
    assert r.exit_code == 1
    assert "--auto-approve" in flat(r.stderr)
    assert r.stdout == ""


def test_json_errors_are_json_on_stderr_and_stdout_stays_empty(tmp_path):
    r = invoke(["show", tmp_path / "nope.json", "-o", "json"])
    assert r.exit_code == 1 and r.stdout == ""
    (d,) = json.loads(r.stderr)["diagnostics"]
    assert "plan file not found" in d["summary"]


def test_show_markdown_and_sarif_of_a_saved_plan(stack4, tmp_path):
    out = tmp_path / "plan.json"
    assert invoke(plan_args(stack4, tmp_path, "--out", out, "-o", "json")).exit_code == 0
    sarif_doc = json.loads(invoke(["show", out, "-o", "sarif"]).stdout)
    assert sarif_doc["version"] == "2.1.0" and len(sarif_doc["runs"][0]["results"]) >= 10


def test_plan_json_with_out_file_stays_one_document(stack4, tmp_path):
    # The "Saved the plan" note is for people; with -o json it would corrupt the document.
    r = invoke(plan_args(stack4, tmp_path, "--out", tmp_path / "plan.json", "-o", "json"))
    assert r.exit_code == 0
    assert json.loads(r.stdout)["summary"]["add"] == 8


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(view):
        raise KeyboardInterrupt

    monkeypatch.setattr("harden.commands.profiles_cmd", interrupted)
    r = invoke(["profiles"])
    assert r.exit_code == 130
    assert "Interrupted" in r.stderr and "Traceback" not in r.output


def test_a_bug_exits_3_with_its_traceback(monkeypatch):
    def broken(view):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("harden.commands.profiles_cmd", broken)
    r = invoke(["profiles"])
    assert r.exit_code == 3
    assert "Traceback" in r.stderr and "ZeroDivisionError: boom" in r.stderr
    assert "This is a bug in harden" in r.stderr
