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


def run(*args: str, state: Path | None) -> tuple[int, str]:
    state_args = ["--state-dir", str(state)] if state is not None else []  # None: a command without state (validate)
    result = runner.invoke(app, [*args, *state_args], env={"NO_COLOR": "1", "COLUMNS": "300"})
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
    pytest.param(["database=!!float y"], ["--set database", "'!!float y' is not a valid CIDR"], id="set-bad-tag"),
    pytest.param(["database=&a [*a]"], ["--set database", "'&a [*a]' is not a valid CIDR"], id="set-alias"),
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


def test_apply_without_terminal_or_approval_refuses(tmp_path):
    kubeconfig = write(tmp_path, "kc", "apiVersion: v1\nkind: Config\n")
    code, out = run("apply", "--profile", "read-only-server", "--kubeconfig", str(tmp_path / "missing"), state=tmp_path / "s")
    assert code == 1  # fails on the kubeconfig before it would ever ask
    assert kubeconfig  # (a real refusal without --auto-approve is covered against the API server)


# -- hostile input (issue "Hostile input and broken connections"): exit 1 with file:line, never a traceback --

def _laughs() -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("edit, expect", [
    pytest.param(("  title: one policy\n", "  title: one policy\n  description: " + "[" * 5000 + "\n"),
                 ["tiny.yaml:", "nested more than 64 levels"], id="deep-nesting"),
    pytest.param(("  title: one policy\n", "  title: one policy\n  description: &d [*d]\n"),
                 ["tiny.yaml:6", "aliases are not supported (*d)"], id="recursive-alias"),
    pytest.param(("  title: one policy\n", "  title: one\x00policy\n"), ["tiny.yaml:5", "special character U+0000"], id="nul"),
    pytest.param(("  title: one policy\n", "  title: one\x1bpolicy\n"), ["tiny.yaml:5", "special character U+001B"], id="escape-char"),
    pytest.param(("  title: one policy\n", "  title: !custom one policy\n"), ["tiny.yaml:5", "unsupported YAML tag !custom"], id="custom-tag"),
    pytest.param(("    default: argo\n", "    default: !!float y\n"), ["tiny.yaml:11", "'y' is not a valid !!float"], id="mismatched-tag"),
    pytest.param(("    spec: {podSelector: {}}\n", "    spec: [podSelector]\n"),
                 ["tiny.yaml:@spec:", "objects[0].spec", "is not of type 'object'"], id="spec-type"),
    pytest.param(("    spec: {podSelector: {}}\n", "    spec: {podSelector: {}, ingress: [{ports: [{protocol: 80}]}]}\n"),
                 ["tiny.yaml:@spec:", "objects[0].spec.ingress[0].ports[0].protocol", "80 is not one of ['SCTP', 'TCP', 'UDP']"],
                 id="protocol-number"),
    pytest.param(("    spec: {podSelector: {}}\n", "    spec: {podSelector: {}, ingress: [{ports: {port: 80}}]}\n"),
                 ["objects[0].spec.ingress[0].ports", "is not of type 'array'"], id="ports-type"),
    pytest.param(("    spec: {podSelector: {}}\n", "    spec: {podSelector: {matchLabels: {tier: 1}}}\n"),
                 ["tiny.yaml:@spec:", "objects[0].spec.podSelector.matchLabels.tier", "1 is not of type 'string'"], id="label-value"),
    pytest.param(("    spec: {podSelector: {}}\n", "    spec: {podSelector: {matchExpressions: [{key: a, operator: Is}]}}\n"),
                 ["tiny.yaml:@spec:", "matchExpressions[0].operator", "'Is' is not one of"], id="selector-operator"),
    pytest.param(("    kind: NetworkPolicy\n", "    kind: Pod\n"),
                 ["tiny.yaml:@kind:", "objects[0].kind", "does not manage objects of kind 'Pod'"], id="unknown-kind"),
    pytest.param(("  - apiVersion: networking.k8s.io/v1\n", "  - apiVersion: v1\n"),
                 ["tiny.yaml:@- apiVersion:", "NetworkPolicy is served as apiVersion networking.k8s.io/v1"], id="wrong-api-version"),
    pytest.param(('    metadata: {name: tiny, namespace: "${namespace}"}\n', '    metadata: {name: "tiny-${", namespace: "${namespace}"}\n'),
                 ["tiny.yaml:@    metadata:", "objects[0].metadata.name", "broken placeholder"], id="placeholder-open"),
    pytest.param(('    metadata: {name: tiny, namespace: "${namespace}"}\n', '    metadata: {name: "a${}b", namespace: "${namespace}"}\n'),
                 ["tiny.yaml:@    metadata:", "broken placeholder"], id="placeholder-empty"),
    pytest.param(('    metadata: {name: tiny, namespace: "${namespace}"}\n', '    metadata: {name: "a-${${namespace}}", namespace: x}\n'),
                 ["tiny.yaml:@    metadata:", "broken placeholder"], id="placeholder-nested"),
    pytest.param(('    metadata: {name: tiny, namespace: "${namespace}"}\n', '    metadata: {name: "t-${namespace.x}", namespace: x}\n'),
                 ["tiny.yaml:@    metadata:", "parameter 'namespace' is a namespace, which has no keys"], id="placeholder-key"),
    pytest.param(("    kind: NetworkPolicy\n", "    kind: NetworkPolicy\n    forEach: {parameter: open, as: x}\n"),
                 ["tiny.yaml:@forEach:", "objects[0].forEach.parameter", "forEach over a boolean parameter ('open')"], id="forEach-boolean"),
    pytest.param(("    kind: NetworkPolicy\n", "    kind: NetworkPolicy\n    forEach: {parameter: namespace, as: x}\n"),
                 ["tiny.yaml:@forEach:", "forEach over a namespace parameter"], id="forEach-string"),
    pytest.param(("    kind: NetworkPolicy\n", "    kind: NetworkPolicy\n    forEach: {parameter: nmspaces, as: x}\n"),
                 ["tiny.yaml:@forEach:", "forEach over an undeclared parameter ('nmspaces')"], id="forEach-missing"),
    pytest.param(("    default: [a, b]\n", '    default: "a,b"\n'),
                 ["tiny.yaml:@default: \"a,b\"", "default of parameter 'names' is invalid", "expected a YAML list"], id="stringList-default"),
    pytest.param(("checks: []\n", "checks:\n  - {id: c, check: noBindingsFor, with: {namespace: argo}}\n"),
                 ["tiny.yaml:@- {id: c", "checks[0].with", "'serviceAccount' is a required property"], id="check-with-missing"),
    pytest.param(("checks: []\n", "checks:\n  - {id: c, check: noBindingsFor}\n"),
                 ["tiny.yaml:@- {id: c", "checks[0].with", "'namespace' is a required property"], id="check-without-with"),
    pytest.param(("checks: []\n", "checks:\n  - {id: c, check: deploymentArgs, with: {namespace: a, flag: f, labels: [a]}}\n"),
                 ["tiny.yaml:@- {id: c", "checks[0].with.labels", "is not of type 'object'"], id="check-with-type"),
    pytest.param(("checks: []\n", "checks:\n  - {id: c, check: noSuchCheck}\n"),
                 ["tiny.yaml:@- {id: c", "unknown check 'noSuchCheck'", "noBindingsFor"], id="unknown-check"),
])
def test_hostile_profile_is_an_input_error(tmp_path, edit, expect):
    text = (GOOD_PROFILE.replace("    default: argo\n", "    default: argo\n  - name: open\n    type: boolean\n"
                                 "    default: true\n  - name: names\n    type: stringList\n    default: [a, b]\n")
            + "checks: []\n")
    assert edit[0] in text
    text = text.replace(*edit)
    profile = write(tmp_path, "tiny.yaml", text)
    # "tiny.yaml:@NEEDLE": the line holding NEEDLE (lines are never counted by hand)
    expect = [f"tiny.yaml:{next(n for n, line in enumerate(text.splitlines(), 1) if f[11:] in line)}"
              if f.startswith("tiny.yaml:@") else f for f in expect]
    for args, state in ((["validate", profile], None),
                        (["plan", "--profile", profile, "--snapshot", SNAPSHOT], tmp_path / "state")):
        code, out = run(*args, state=state)
        assert code == 1, out
        for fragment in expect:
            assert fragment in out, (args[0], fragment, out)


def test_billion_laughs_profile_is_refused(tmp_path):
    profile = write(tmp_path, "lol.yaml", GOOD_PROFILE.replace("  title: one policy\n", "  title: one policy\n")
                    + "x-" + _laughs().replace("\n", "\nx-"))
    code, out = run("validate", profile, state=None)
    assert code == 1 and "lol.yaml:" in out and "aliases are not supported" in out


@pytest.mark.parametrize("name", ["a" * 300, "b" * 300 + ".yaml", "dir/" + "c" * 300 + ".yaml"])
def test_profile_name_too_long_for_a_file_name(tmp_path, name):
    stack = write(tmp_path, "stack.yaml", f"""\
        apiVersion: harden.dev/v1alpha1
        kind: Stack
        metadata: {{name: s}}
        profiles:
          - profile: {name}
        """)
    code, out = run("plan", "-f", stack, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 1 and "stack.yaml:5" in out, out
    code, out = run("plan", "--profile", name, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    assert code == 1 and name[:40] in out, out


def test_set_patch_is_checked_against_the_target_kind(tmp_path):
    profile = write(tmp_path, "patch.yaml", GOOD_PROFILE.replace("objects:\n", """\
targets:
  - id: policy
    candidates: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, namespace: argo, name: x}]
patches:
  - target: policy
    set: {spec: {ingress: {"0": {from: []}}}}
objects:
"""))
    code, out = run("validate", profile, state=None)
    assert code == 1 and "patch.yaml:17" in out and "patches[0].set.spec.ingress" in out and "not of type 'array'" in out, out


@pytest.mark.parametrize("params, obj_edit, expect", [
    pytest.param("  - {name: names, type: stringList}\n", "    forEach: {parameter: names, as: n}\n",
                 ["forEach over parameter 'names', which has no list value", "objects[0].forEach.parameter"],
                 id="forEach-without-value"),
    pytest.param("  - {name: sel, type: labelSelector, default: {app: x}}\n", "    metadata: {name: \"tiny-${sel.tier}\"}\n",
                 ["${sel.tier} has no value: parameter 'sel' has no key 'tier'"], id="missing-key"),
])
def test_render_time_values_are_input_errors(tmp_path, params, obj_edit, expect):
    """What only the given values decide (is there a list, has the selector that key) fails at render
    with the profile's file:line, instead of dropping the object or a KeyError."""
    text = GOOD_PROFILE.replace("objects:\n", params + "objects:\n")
    if obj_edit.startswith("    metadata"):
        text = text.replace('    metadata: {name: tiny, namespace: "${namespace}"}\n', obj_edit)
    else:
        text = text.replace("    kind: NetworkPolicy\n", "    kind: NetworkPolicy\n" + obj_edit)
    profile = write(tmp_path, "tiny.yaml", text)
    code, out = run("validate", profile, state=None)
    assert code == 0, out  # the profile is sound; only these values are not
    code, out = run("plan", "--profile", profile, "--snapshot", SNAPSHOT, state=tmp_path / "state")
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if obj_edit.strip()[:12] in ln)
    assert code == 1 and f"tiny.yaml:{line}" in out, out
    for fragment in expect:
        assert fragment in out, (fragment, out)


def test_token_secret_of_the_wrong_shape_is_an_input_error_not_a_crash(tmp_path):
    # Found by the fuzz test: a token Secret skipped schema validation and its list name crashed plan.
    profile = write(tmp_path, "p.yaml", """\
apiVersion: harden.dev/v1alpha1
kind: Profile
metadata: {name: t, title: t, recommendation: [{document: x, section: y}]}
objects:
  - apiVersion: v1
    kind: Secret
    metadata: {name: [null], namespace: argo, annotations: {kubernetes.io/service-account.name: x}}
    type: kubernetes.io/service-account-token
""")
    code, out = run("validate", profile, state=None)
    assert code == 1 and "p.yaml:7" in out and "metadata.name" in out and "Traceback" not in out
