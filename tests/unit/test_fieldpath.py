"""fieldpath: path text <-> path list, and the one walk `get_at` over every path form."""

from __future__ import annotations

import pytest

from harden.fieldpath import get_at, path_text, split_path, step


@pytest.mark.parametrize("path", [
    ["spec", "ingress", 0, "ports", 1, "port"],
    ["metadata", "labels", "app.kubernetes.io/managed-by"],
    ["data", "server.tls.minversion"],
    ["spec", "template", "spec", "containers", ("name", "argo-server"), "args"],
    ["data", 'we"ird key'],
])
def test_path_text_round_trips(path):
    assert split_path(path_text(path)) == path


POD = {"kind": "Deployment",
       "metadata": {"name": "argo-server", "labels": {"app.kubernetes.io/managed-by": "helm"}},
       "data": {"server.tls.minversion": "1.2", 'we"ird key': "w"},
       "spec": {"replicas": 0, "template": {"spec": {
           "containers": [{"name": "sidecar", "args": ["--foo"]},
                          {"name": "argo-server", "args": ["server", "--secure=true"],
                           "volumeMounts": [{"mountPath": "/tmp", "name": "tmp"}]}],
           "automountServiceAccountToken": False}}}}


@pytest.mark.parametrize("path, value", [
    ([], POD),
    (["metadata", "name"], "argo-server"),
    ("metadata.name", "argo-server"),
    ('metadata.labels["app.kubernetes.io/managed-by"]', "helm"),
    ('data["server.tls.minversion"]', "1.2"),
    (["data", 'we"ird key'], "w"),
    ("spec.replicas", 0),  # falsy values are values
    ("spec.template.spec.automountServiceAccountToken", False),
    ("spec.template.spec.containers[1].args[0]", "server"),
    ("spec.template.spec.containers[name=argo-server].args", ["server", "--secure=true"]),
    ("spec.template.spec.containers[name=argo-server].args[1]", "--secure=true"),
    ("spec.template.spec.containers[name=argo-server].volumeMounts[mountPath=/tmp].name", "tmp"),
    (["spec", "template", "spec", "containers", ("name", "sidecar"), "args"], ["--foo"]),
])
def test_get_at_every_path_form(path, value):
    assert get_at(POD, path) == value


@pytest.mark.parametrize("path", [
    "metadata.namespace",                                  # missing key
    "spec.template.spec.containers[2]",                     # index past the end
    "spec.template.spec.containers[name=nope].args",       # no such entry
    "metadata[0]",                                         # index into a mapping
    "metadata[name=argo-server]",                          # entry of a mapping
    "metadata.name.first",                                 # key below a scalar
    "spec.template.spec.containers.name",                  # key of a list
    "spec.replicas[0]",                                    # index into a scalar
])
def test_get_at_is_none_where_there_is_nothing(path):
    assert get_at(POD, path) is None


def test_get_at_skips_list_entries_that_are_not_mappings():
    assert get_at({"l": ["x", None, {"name": "a", "v": 1}]}, "l[name=a].v") == 1
    assert get_at(None, "a") is None


def test_step_takes_no_negative_index():
    """A path never counts from the end: `[-1]` would silently name a different entry per object."""
    assert step([1, 2], -1) is None
    assert step([1, 2], 1) == 2


def test_selector_values_are_compared_as_text():
    assert split_path("a[port=80]") == ["a", ("port", "80")]
    assert get_at({"a": [{"port": "80", "x": 1}]}, "a[port=80].x") == 1
