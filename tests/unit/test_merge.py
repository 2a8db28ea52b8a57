"""merge: partial objects merged, cut and restored the way server-side apply does it."""

from __future__ import annotations

from types import MappingProxyType

from deployments import live_deploy

from harden.merge import merge_partial, missing_entries, restore_shape, select_paths
from harden.mergekeys import ATOMIC_ONLY, BUILTIN, MergeKeys


def test_merge_partial_merges_keyed_lists_and_replaces_atomic_ones():
    base = live_deploy()
    partial = {"spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["new"]}]}}}}
    merged = merge_partial(base, partial, BUILTIN)
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "argo-server"]
    assert containers[1] == {"name": "argo-server", "image": "argo", "args": ["new"]}
    assert merged["spec"]["replicas"] == 1
    assert base["spec"]["template"]["spec"]["containers"][1]["args"] == ["server", "--secure=true"]
    assert merge_partial({"rules": [1, 2, 3]}, {"rules": [4]}, BUILTIN) == {"rules": [4]}


def test_restore_shape_captures_previous_values_and_absence():
    live = live_deploy(("server", "--auth-mode=server"))
    partial = {"spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["x"]}]}}},
               "metadata": {"annotations": {"new": "v"}}}
    assert restore_shape(live, partial, BUILTIN) == {
        "spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["server", "--auth-mode=server"]}]}}},
        "metadata": {"annotations": None}}




def test_with_every_list_atomic_the_merge_is_a_plain_deep_merge():
    """How a YAML document inside a ConfigMap merges (render's configMapYaml): lists are replaced."""
    assert merge_partial({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": 2}, ATOMIC_ONLY) == {
        "a": {"b": 1, "c": [2]}, "d": 1, "e": 2}
    assert merge_partial({"containers": [{"name": "a", "x": 1}]}, {"containers": [{"name": "a"}]}, ATOMIC_ONLY) == {
        "containers": [{"name": "a"}]}


def test_merge_keys_come_from_the_table():
    by_port = MergeKeys(MappingProxyType({"ports": "port"}))
    base = {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}
    assert merge_partial(base, {"ports": [{"port": 443, "appProtocol": "h2"}, {"port": 8080}]}, by_port) == {
        "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https", "appProtocol": "h2"}, {"port": 8080}]}


def test_merge_result_shares_nothing_with_its_inputs():
    base = live_deploy()
    partial = {"spec": {"template": {"spec": {"containers": [{"name": "new", "args": ["a"]}]}}}}
    merged = merge_partial(base, partial, BUILTIN)
    merged["spec"]["template"]["spec"]["containers"][0]["args"].append("changed")
    merged["spec"]["template"]["spec"]["containers"][2]["args"].append("changed")
    assert base["spec"]["template"]["spec"]["containers"][0]["args"] == ["--foo"]
    assert partial["spec"]["template"]["spec"]["containers"][0]["args"] == ["a"]


def test_select_paths_keeps_keyed_entries_with_their_key_and_none_for_absent_fields():
    live = live_deploy(("server", "--secure=false"))
    got = select_paths(live, ["spec.template.spec.containers[name=argo-server].args", "spec.replicas",
                              'metadata.annotations["a.b/c"]'], BUILTIN)
    assert got == {"spec": {"template": {"spec": {"containers": [{"name": "argo-server", "args": ["server", "--secure=false"]}]}},
                            "replicas": 1},
                   "metadata": {"annotations": {"a.b/c": None}}}


# -- missing_entries: the union behind `configMapYaml.append` ------------------------------------

CSR = {"apiGroups": ["certificates.k8s.io"], "kinds": ["CertificateSigningRequest"]}
REVIEWS = {"apiGroups": ["authentication.k8s.io", "authorization.k8s.io"], "kinds": ["TokenReview", "SubjectAccessReview"]}


def test_missing_entries_appends_only_what_is_absent():
    mine = {"apiGroups": ["cilium.io"], "kinds": ["CiliumIdentity"], "clusters": ["*"]}
    assert missing_entries([mine], [CSR, REVIEWS]) == [CSR, REVIEWS]
    assert missing_entries([mine, CSR], [CSR, REVIEWS]) == [REVIEWS]
    assert missing_entries([CSR, REVIEWS], [CSR, REVIEWS]) == []


def test_missing_entries_compares_lists_as_sets_and_empty_as_absent():
    reordered = {"kinds": ["SubjectAccessReview", "TokenReview"], "apiGroups": ["authorization.k8s.io", "authentication.k8s.io"]}
    assert missing_entries([reordered], [REVIEWS]) == []
    assert missing_entries([{**CSR, "clusters": []}], [CSR]) == []
    assert missing_entries([{**CSR, "clusters": None}], [CSR]) == []
    # a narrower entry is not the same entry: the wanted one still goes in
    assert missing_entries([{**CSR, "clusters": ["https://a"]}], [CSR]) == [CSR]
    assert missing_entries([{"apiGroups": ["authentication.k8s.io"], "kinds": ["TokenReview"]}], [REVIEWS]) == [REVIEWS]


def test_missing_entries_adds_a_wanted_entry_once_and_copies_it():
    out = missing_entries([], [CSR, {"kinds": ["CertificateSigningRequest"], "apiGroups": ["certificates.k8s.io"]}])
    assert out == [CSR]
    out[0]["kinds"].append("changed")
    assert CSR["kinds"] == ["CertificateSigningRequest"]
