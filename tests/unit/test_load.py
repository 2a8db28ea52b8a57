"""load: bad input becomes one clear message per problem (file, line, field, hint), never a traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harden.cli import app
from harden.errors import Diagnostics, HardenError, InputError
from harden.load import builtin_profile_names, load_profile, parse_set, select
from harden.yamlsrc import load_documents

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "examples" / "snapshot"

PROFILE_HEADER = """\
apiVersion: harden.dev/v1alpha1
kind: Profile
metadata:
  name: test-profile
  title: a test profile
  recommendation:
    - {document: d, section: s}
"""


def profile_text(body: str = "") -> str:
    """A minimal valid profile followed by `body` (dedented)."""
    return PROFILE_HEADER + textwrap.dedent(body)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle` (tests never count lines by hand)."""
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


def flat(text: str) -> str:
    """Collapse whitespace: rich wraps long lines at the console width."""
    return " ".join(text.split())


def diags(exc: HardenError):
    return exc.diagnostics


def only(exc: HardenError):
    ds = exc.diagnostics
    assert len(ds) == 1, [d.render() for d in ds]
    return ds[0]


# -- malformed YAML --------------------------------------------------------------------------------

def test_malformed_yaml_names_the_offending_line(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: string
            description: one
             extra: two
        """)
    p = write("bad.yaml", text)
    with pytest.raises(InputError) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.file == str(p)
    assert d.line == line_of(text, "extra: two")
    assert "malformed YAML" in d.summary
    assert d.hint


def test_malformed_yaml_tab_indentation_line(write):
    text = profile_text("parameters:\n  - name: a\n\t type: string\n")
    p = write("tab.yaml", text)
    with pytest.raises(InputError) as ei:
        load_profile(str(p))
    assert only(ei.value).line == line_of(text, "\t type")


def test_unterminated_quote_points_at_where_the_quote_started():
    text = "a: 1\nb: \"never closed\nc: 3\nd: 4\n"
    with pytest.raises(InputError) as ei:
        load_documents(text, "f.yaml")
    d = only(ei.value)
    # The parser only notices at the end of the stream; the reader needs line 2, where the quote opened.
    assert d.line == 2 or "line 2" in d.summary


# -- schema problems -------------------------------------------------------------------------------

def test_unknown_top_level_key_names_key_line_and_allowed_keys(write):
    text = profile_text("""\
        parameters:
          - {name: a, type: string}
        colour: red
        """)
    p = write("unknown.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.file == str(p)
    assert d.line == line_of(text, "colour: red")
    assert "colour" in d.summary
    assert d.field == "colour"
    for allowed in ("parameters", "objects", "patches", "targets", "checks", "expect"):
        assert allowed in d.hint


def test_unknown_nested_key_points_at_the_key_not_the_mapping(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: string
            colour: red
        """)
    p = write("nested.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.line == line_of(text, "colour: red")
    assert d.field == "parameters[0].colour"
    assert "'colour'" in d.summary
    assert "description" in d.hint and "default" in d.hint


def test_wrong_type_names_field_line_and_expected_type(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: string
            required: "yes"
        """)
    p = write("type.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.line == line_of(text, "required:")
    assert d.field == "parameters[0].required"
    assert "boolean" in d.summary + (d.hint or "")


def test_unknown_parameter_type_lists_the_types(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: ipaddress
        """)
    p = write("enum.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.line == line_of(text, "type: ipaddress")
    assert "cidr" in d.hint and "port" in d.hint


def test_duplicate_key_names_second_occurrence(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: string
            name: b
        """)
    p = write("dup.yaml", text)
    with pytest.raises(InputError) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.file == str(p)
    assert d.line == line_of(text, "name: b")
    assert "duplicate" in d.summary and "name" in d.summary
    assert d.hint


def test_undeclared_reference_names_line_and_declared_parameters(write):
    text = profile_text("""\
        parameters:
          - {name: namespace, type: namespace, default: argo}
        objects:
          - apiVersion: v1
            kind: ConfigMap
            metadata:
              name: cm
              namespace: ${namespace}
            data:
              owner: team-${nope}
        """)
    p = write("ref.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.line == line_of(text, "team-${nope}")
    assert "${nope}" in d.summary
    assert d.field == "objects[0].data.owner"
    assert "namespace" in d.hint


def test_invalid_default_is_reported_at_the_default(write):
    text = profile_text("""\
        parameters:
          - name: p
            type: port
            default: 70000
        """)
    p = write("default.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    d = only(ei.value)
    assert d.line == line_of(text, "default: 70000")
    assert "70000" in d.summary


def test_several_problems_in_one_profile_are_reported_together(write):
    text = profile_text("""\
        parameters:
          - name: a
            type: string
            colour: red
          - name: b
            type: nonsense
        shape: round
        """)
    p = write("many.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        load_profile(str(p))
    lines = sorted(d.line for d in diags(ei.value))
    assert lines == sorted([line_of(text, "colour: red"), line_of(text, "type: nonsense"), line_of(text, "shape: round")])


# -- profile references ----------------------------------------------------------------------------

def test_unknown_profile_hint_lists_builtins():
    with pytest.raises(Diagnostics) as ei:
        select(["no-such-profile"], None, [])
    d = only(ei.value)
    assert "no-such-profile" in d.summary
    for name in ("namespace-isolation", "db-egress", "metrics-ingress", "read-only-server"):
        assert name in d.hint
    assert set(builtin_profile_names()) >= {"namespace-isolation", "db-egress", "metrics-ingress", "read-only-server"}


def test_unknown_profile_in_stack_file_names_the_stack_line(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: metrics-ingress
  - profile: no-such-profile
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert d.file == str(p)
    assert d.line == line_of(text, "no-such-profile")
    assert "metrics-ingress" in d.hint


def test_missing_required_parameter_names_profile_parameter_and_how_to_pass_it():
    with pytest.raises(Diagnostics) as ei:
        select(["db-egress"], None, [])
    d = only(ei.value)
    assert "db-egress" in d.summary and "database" in d.summary
    assert d.file.endswith("db-egress.yaml")
    text = Path(d.file).read_text()
    assert d.line == line_of(text, "name: database")
    assert "--set database=" in d.hint


# -- parameter values ------------------------------------------------------------------------------

@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.300/8", "not-a-cidr", "10.0.0.1"])
def test_invalid_cidr_in_set(cidr):
    with pytest.raises(Diagnostics) as ei:
        select(["db-egress"], None, [f"database={cidr}"])
    d = only(ei.value)
    assert d.field == "--set database"
    assert cidr in d.summary and "database" in d.summary
    assert d.hint


@pytest.mark.parametrize("value, text", [(0, "0"), (65536, "65536"), ("abc", "abc")])
def test_port_out_of_range_in_set(value, text):
    with pytest.raises(Diagnostics) as ei:
        select(["db-egress"], None, ["database=10.0.0.0/8", f"port={value}"])
    d = only(ei.value)
    assert d.field == "--set port"
    assert text in d.summary
    assert "1-65535" in d.summary


@pytest.mark.parametrize("value", [1, 5432, 65535, "5432"])
def test_valid_ports_accepted(value):
    sel = select(["db-egress"], None, ["database=10.0.0.0/8", f"port={value}"])
    assert sel.items[0].values["port"] == int(value)


STACK_WITH = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata:
  name: s
profiles:
  - profile: db-egress
    with:
      database: {database}
      port: {port}
"""


def test_invalid_cidr_in_stack_with_points_at_stack_line(write):
    text = STACK_WITH.format(database="10.0.0.300/8", port=5432)
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert d.file == str(p)
    assert d.line == line_of(text, "database: 10.0.0.300/8")
    assert d.field == "profiles[0].with.database"
    assert "10.0.0.300/8" in d.summary
    assert d.hint


@pytest.mark.parametrize("port", ["0", "65536", "abc"])
def test_port_out_of_range_in_stack_with(write, port):
    text = STACK_WITH.format(database="10.0.0.0/8", port=port)
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert (d.file, d.line, d.field) == (str(p), line_of(text, f"port: {port}"), "profiles[0].with.port")
    assert port in d.summary


def test_bad_value_in_stack_for_parameter_without_description(write):
    """metrics-ingress's metricsPort declares no description; the line is still right."""
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: metrics-ingress
    with:
      metricsPort: 70000
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert d.line == line_of(text, "metricsPort: 70000")
    assert "70000" in d.summary and "1-65535" in d.summary


def test_bad_value_without_description_has_hint():
    with pytest.raises(Diagnostics) as ei:
        select(["metrics-ingress"], None, ["metricsPort=0"])
    assert only(ei.value).hint


def test_wrong_value_type_in_stack(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: metrics-ingress
    with:
      prometheusLabels: [a, b]
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert d.line == line_of(text, "prometheusLabels")
    assert "prometheusLabels" in d.summary


def test_unknown_parameter_in_stack_names_line_and_lists_parameters(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: metrics-ingress
    with:
      prometheusNamespce: monitoring
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert (d.file, d.line) == (str(p), line_of(text, "prometheusNamespce"))
    assert "prometheusNamespce" in d.summary
    assert "prometheusNamespace" in d.hint


def test_unknown_set_key_is_reported():
    with pytest.raises(Diagnostics) as ei:
        select(["metrics-ingress"], None, ["bogus=1"])
    d = only(ei.value)
    assert "bogus" in d.summary
    assert "metricsPort" in d.hint


def test_set_without_equals_is_reported():
    problems: list = []
    assert parse_set(["novalue"], problems) == {}
    assert len(problems) == 1 and "KEY=VALUE" in problems[0].summary


def test_unknown_key_in_stack_file(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: metrics-ingress
    whith: {metricsPort: 9090}
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert d.line == line_of(text, "whith")
    assert "whith" in d.summary and "with" in d.hint


def test_several_problems_in_a_stack_reported_together(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
profiles:
  - profile: db-egress
    with:
      database: 10.0.0.300/8
      colour: red
  - profile: metrics-ingress
    with:
      metricsPort: 0
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    got = sorted((d.line, d.field) for d in diags(ei.value))
    assert got == sorted([(line_of(text, "database:"), "profiles[0].with.database"),
                          (line_of(text, "colour:"), "profiles[0].with.colour"),
                          (line_of(text, "metricsPort:"), "profiles[1].with.metricsPort")])


def test_set_string_parameter_keeps_text():
    sel = select(["ui-read-only-role"], None, ["group=1.10"])
    assert sel.items[0].values["group"] == "1.10"


def test_profile_specific_set_only_reaches_that_profile():
    sel = select(["metrics-ingress", "db-egress"], None,
                 ["database=10.0.0.0/8", "metrics-ingress.namespace=obs", "db-egress.port=3306"])
    values = {s.profile.name: s.values for s in sel.items}
    assert values["metrics-ingress"]["namespace"] == "obs"
    assert values["db-egress"]["namespace"] == "argo"
    assert values["db-egress"]["port"] == 3306


def test_profile_selected_twice(write):
    with pytest.raises(Diagnostics) as ei:
        select(["metrics-ingress", "metrics-ingress"], None, [])
    assert "twice" in only(ei.value).summary


# -- through the CLI: exit 1, message, no traceback ------------------------------------------------

def _cli(args):
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def test_cli_bad_profile_exit_1_with_file_line_and_no_traceback(write, tmp_path):
    text = profile_text("colour: red\n")
    p = write("bad-profile.yaml", text)
    r = _cli(["plan", "-p", str(p), "--snapshot", str(SNAPSHOT), "--state-dir", str(tmp_path / "state")])
    assert r.exit_code == 1
    out = flat(r.output)
    assert f"{p}:{line_of(text, 'colour')}" in out
    assert "colour" in out and "hint:" in out
    assert "Traceback" not in r.output


def test_cli_bad_set_value_exit_1(tmp_path):
    r = _cli(["plan", "-p", "db-egress", "--set", "database=10.0.0.0/8", "--set", "port=65536",
              "--snapshot", str(SNAPSHOT), "--state-dir", str(tmp_path / "state")])
    assert r.exit_code == 1
    assert "65536" in flat(r.output)
    assert "Traceback" not in r.output


def test_cli_reports_all_problems_in_one_run(write, tmp_path):
    text = STACK_WITH.format(database="300.0.0.0/8", port=0)
    p = write("stack.yaml", text)
    r = _cli(["plan", "-f", str(p), "--snapshot", str(SNAPSHOT), "--state-dir", str(tmp_path / "state")])
    assert r.exit_code == 1
    out = flat(r.output)
    assert f"{p}:{line_of(text, 'database:')}" in out
    assert f"{p}:{line_of(text, 'port:')}" in out
    assert out.count("Error:") == 2


def test_shared_stack_parameter_no_profile_declares(write):
    text = """\
apiVersion: harden.dev/v1alpha1
kind: Stack
metadata: {name: s}
parameters:
  namespace: argo
  namespcae: argo
profiles:
  - profile: metrics-ingress
"""
    p = write("stack.yaml", text)
    with pytest.raises(Diagnostics) as ei:
        select([], str(p), [])
    d = only(ei.value)
    assert (d.file, d.line) == (str(p), line_of(text, "namespcae"))
    assert "namespcae" in d.summary and "namespace" in d.hint


def test_profiles_may_not_own_or_patch_secrets(tmp_path):
    """Secret values would otherwise reach plans and state; the profile is refused at load."""
    from harden.errors import Diagnostics
    from harden.load import load_profile

    p = tmp_path / "s.yaml"
    p.write_text(
        "apiVersion: harden.dev/v1alpha1\nkind: Profile\n"
        "metadata: {name: s, title: t, recommendation: [{document: d, section: s}]}\n"
        "targets:\n  - id: cred\n    candidates:\n      - {apiVersion: v1, kind: Secret, namespace: argo, name: my-minio-cred}\n"
        "objects:\n  - apiVersion: v1\n    kind: Secret\n    metadata: {name: token}\n    stringData: {token: hunter2}\n")
    with pytest.raises(Diagnostics) as exc:
        load_profile(str(p))
    lines = {d.line for d in exc.value.diagnostics}
    assert lines == {7, 10}
    assert all("Secret" in d.summary for d in exc.value.diagnostics)


@pytest.mark.parametrize("value, words", [
    # `except` alone used to fall through to the pod-selector branch: {podSelector: {}}, every pod.
    ("{except: [10.1.0.0/16]}", ["except", "cidr"]),
    ("{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}", ["192.168.0.0/16", "not inside", "10.0.0.0/8"]),
    ("{cidr: 10.0.0.0/8, except: 10.1.0.0/16}", ["except", "list"]),
])
def test_peer_except_without_or_outside_cidr_is_refused(value, words):
    with pytest.raises(Diagnostics) as ei:
        select(["db-egress"], None, [f"database={value}"])
    d = only(ei.value)
    assert d.field == "--set database"
    assert all(w in d.summary for w in words), d.summary


def test_peer_except_inside_cidr_renders_an_ip_block():
    sel = select(["db-egress"], None, ["database={cidr: 10.0.0.0/8, except: [10.1.0.0/16]}"])
    assert sel.items[0].values["database"] == {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}


# -- object bodies against the Kubernetes schema (harden/schema/kubernetes.schema.json) -----------

def test_kubernetes_schema_is_the_v1_36_openapi_of_every_declarable_kind():
    from harden.load import OBJECT_KINDS, kubernetes_kinds, schema

    assert "v1.36" in schema("kubernetes")["description"]
    kinds = kubernetes_kinds()
    assert set(OBJECT_KINDS) <= set(kinds)
    assert {k: kinds[k]["apiVersion"] for k in ("NetworkPolicy", "Role", "ServiceAccount")} == {
        "NetworkPolicy": "networking.k8s.io/v1", "Role": "rbac.authorization.k8s.io/v1", "ServiceAccount": "v1"}


def test_a_whole_reference_stands_for_any_type_but_text_around_it_does_not(write):
    body = """\
        parameters:
          - {name: port, type: port, default: 8080}
          - {name: proto, type: string, default: TCP}
          - {name: peers, type: cidrList, default: [10.0.0.0/8]}
        objects:
          - apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: p}
            spec:
              podSelector: {}
              ingress:
                - from: ["${peers}"]
                  ports: [{port: "${port}", protocol: "${proto}"}, {port: 1, protocol: "x${proto}"}]
        """
    text = profile_text(body)
    with pytest.raises(Diagnostics) as info:
        load_profile(str(write("p.yaml", text)))
    d = only(info.value)
    assert d.field == "objects[0].spec.ingress[0].ports[1].protocol" and "'x${proto}' is not one of" in d.summary
    assert d.line == line_of(text, "x${proto}")


def test_bundled_profiles_pass_the_kubernetes_schema():
    for name in builtin_profile_names():
        assert load_profile(name).name == name
