"""Bad input: one clear message naming the file, line and field (or the context) and how to fix it,
exit code 1, no traceback, nothing applied. One case per kind of mistake (issue 3)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harden.cli import app

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = str(REPO / "examples" / "snapshot")
runner = CliRunner()

GOOD_PROFILE = """\
apiVersion: harden.dev/v1alpha1
kind: Profile
metadata:
  name: tiny
  title: one policy
  recommendation:
    - {document: test, section: test}
parameters:
  - name: namespace
    type: namespace
    default: argo
objects:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: tiny, namespace: "${namespace}"}
    spec: {podSelector: {}}
"""


def run(*args: str, state: Path) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--state-dir", str(state)], env={"NO_COLOR": "1", "COLUMNS": "300"})
    text = result.output
    assert "Traceback" not in text, text
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(text.split())  # unwrap rich's line wrapping


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


@pytest.mark.parametrize("edit, expect", [
    pytest.param(("  title: one policy\n", "  title: [one policy\n"), ["tiny.yaml:6", "malformed YAML", "started on line 5"], id="malformed-yaml"),
    pytest.param(("  title: one policy\n", "  title: one policy\n  colour: blue\n"),
                 ["tiny.yaml:6", "metadata.colour", "unknown key 'colour'", "allowed keys here"], id="unknown-key"),
    pytest.param(("    default: argo\n", "    default: argo\n    required: maybe\n"),
                 ["tiny.yaml:12", "parameters[0].required", "is not of type 'boolean'"], id="wrong-type"),
    pytest.param(("    type: namespace\n", "    type: cidr\n"), ["tiny.yaml:11", "default of parameter 'namespace' is invalid",
                                                                 "not a valid CIDR"], id="invalid-cidr-default"),
    pytest.param(('    metadata: {name: tiny, namespace: "${namespace}"}\n', '    metadata: {name: tiny, namespace: "${nmspace}"}\n'),
                 ["tiny.yaml:15", "undeclared parameter ${nmspace}", "use one of: namespace"], id="undeclared-reference"),
])
def test_broken_profile_file(tmp_path, edit, expect):
    profile = write(tmp_path, "tiny.yaml", GOOD_PROFILE.replace(*edit))
    code, out = run("plan", "--profile", profile, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 1
    for fragment in expect:
        assert fragment in out, (fragment, out)
    assert not (tmp_path / "state").exists()  # nothing planned, nothing recorded


def test_good_profile_plans(tmp_path):
    """The fixture above is valid, so each broken variant fails for its own reason only."""
    profile = write(tmp_path, "tiny.yaml", GOOD_PROFILE)
    code, out = run("plan", "--profile", profile, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 0, out
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in out


@pytest.mark.parametrize("sets, expect", [
    pytest.param(["database=10.0.0.300/8"], ["--set database", "not a valid CIDR"], id="invalid-cidr"),
    pytest.param(["database=10.0.0.0/8", "port=70000"], ["--set port", "port 70000 is out of range (1-65535)"], id="port-range"),
    pytest.param(["database=10.0.0.0/8", "port=0"], ["--set port", "out of range"], id="port-zero"),
    pytest.param(["database=10.0.0.0/8", "port=abc"], ["--set port", "expected a port number"], id="port-text"),
    pytest.param([], ["db-egress.yaml:", "needs parameter 'database'", "pass --set database=VALUE"], id="missing-required"),
    pytest.param(["database=10.0.0.0/8", "bogus=1"], ["--set bogus", "no selected profile has parameter 'bogus'"], id="unknown-set"),
])
def test_bad_parameter_values(tmp_path, sets, expect):
    args = ["plan", "--profile", "db-egress", "--snapshot", SNAPSHOT]
    for s in sets:
        args += ["--set", s]
    code, out = run(*args, state=tmp_path / "state")
    assert code == 1
    for fragment in expect:
        assert fragment in out, (fragment, out)


def test_stack_file_errors_name_the_stack_line(tmp_path):
    stack = write(tmp_path, "stack.yaml", """\
        apiVersion: harden.dev/v1alpha1
        kind: Stack
        metadata: {name: s}
        profiles:
          - profile: db-egress
            with:
              database: 10.0.0.0/99
              colour: blue
        """)
    code, out = run("plan", "-f", stack, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 1
    assert "stack.yaml:7" in out and "profiles[0].with.database" in out and "not a valid CIDR" in out
    assert "stack.yaml:8" in out and "has no parameter 'colour'" in out  # both problems, one run


def test_unknown_profile_lists_the_builtins(tmp_path):
    code, out = run("plan", "--profile", "read-only-servr", "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 1
    assert "unknown profile 'read-only-servr'" in out and "read-only-server" in out


def test_missing_target_names_what_was_looked_for(tmp_path):
    empty = write(tmp_path, "snap.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: argo}\n")
    code, out = run("plan", "--profile", "read-only-server", "--snapshot", empty, state=tmp_path / "state")
    assert code == 1
    assert "no argo-workflows install in namespace 'argo'" in out and "--set namespace=" in out


def test_missing_kubeconfig(tmp_path):
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", str(tmp_path / "nope"), state=tmp_path / "s")
    assert code == 1
    assert "kubeconfig not found" in out and "--snapshot" in out


def test_unreachable_cluster(tmp_path):
    kubeconfig = write(tmp_path, "kc", """\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u}}]
        current-context: x
        """)
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, state=tmp_path / "s")
    assert code == 1
    assert "cannot reach the Kubernetes API server" in out


def test_unknown_context(tmp_path):
    kubeconfig = write(tmp_path, "kc", """\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u}}]
        current-context: x
        """)
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, "--context", "nope", state=tmp_path / "s")
    assert code == 1
    assert "--context" in out and "get-contexts" in out


def test_apply_with_a_missing_kubeconfig_stops_before_planning_or_asking(tmp_path):
    """Bad input ends apply before any plan is shown or confirmation asked for, and no state is
    written. (The refusal without a terminal or --auto-approve needs a cluster to plan against:
    tests/integration/test_engine.py::test_apply_without_terminal_or_approval_refuses.)"""
    missing, state = tmp_path / "missing", tmp_path / "s"
    code, out = run("apply", "--profile", "read-only-server", "--kubeconfig", str(missing), state=state)
    assert code == 1
    assert f"kubeconfig not found: {missing}" in out
    assert "Plan:" not in out and "confirmation" not in out
    assert not list(state.glob("*.json"))


GOOD_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", certificate-authority-data: "%s"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.parametrize("text, expect", [
    pytest.param("", ["the kubeconfig is empty"], id="empty"),
    pytest.param("  \n\n", ["the kubeconfig is empty"], id="blank"),
    pytest.param("clusters: [oops\n", ["kc:2", "not valid YAML", "malformed YAML"], id="garbage-yaml"),
    pytest.param("just a sentence\n", ["not a kubeconfig", "clusters"], id="not-a-mapping"),
    pytest.param(GOOD_KUBECONFIG % "!!!notbase64@@", ["kc:3", "clusters[c].cluster.certificate-authority-data",
                                                      "not valid base64"], id="bad-base64"),
])
def test_broken_kubeconfig_says_what_is_wrong_with_the_file(tmp_path, text, expect):
    kubeconfig = write(tmp_path, "kc", text)
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, state=tmp_path / "s")
    assert code == 1
    assert all(e in out for e in expect), out
    assert "--kubeconfig" in out and "get-contexts" not in out  # the file is wrong, not the context name


def test_empty_context_is_reported_as_such(tmp_path):
    kubeconfig = write(tmp_path, "kc", GOOD_KUBECONFIG % "")
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, "--context", "", state=tmp_path / "s")
    assert code == 1
    assert "--context is empty" in out and "field --kubeconfig" not in out


def test_unknown_context_lists_the_known_ones(tmp_path):
    kubeconfig = write(tmp_path, "kc", GOOD_KUBECONFIG % "")
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, "--context", "nope", state=tmp_path / "s")
    assert code == 1
    assert "context 'nope' is not in the kubeconfig (it has: x)" in out


@pytest.mark.parametrize("value, expect", [("soon", "is not a duration"), ("0", "must be more than 0"),
                                           ("-5s", "is not a duration")])
def test_bad_request_timeout(tmp_path, value, expect):
    kubeconfig = write(tmp_path, "kc", GOOD_KUBECONFIG % "")
    code, out = run("plan", "--profile", "read-only-server", "--kubeconfig", kubeconfig, "--request-timeout", value,
                    state=tmp_path / "s")
    assert code == 1
    assert "--request-timeout" in out and expect in out
