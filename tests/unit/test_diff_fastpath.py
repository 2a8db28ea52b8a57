"""The diff's fast path (equal projections never reach DeepDiff) gives the verdict the full diff gives.

Seeded random mutations of live objects, in each kind of field the diff treats differently:
scalars (including a change of type only, 1 -> 1.0 -> True), an entry of a keyed list, an atomic
list, a set-like list, a map key, and YAML nested in a ConfigMap value. Each case knows whether it
made a difference, so a fast path that called an unequal object equal (or the reverse) fails here.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from deployments import DEPLOY, live_deploy
from golden_pairs import pair

import harden.diff as diff
from harden.mergekeys import ATOMIC_ONLY, BUILTIN, MergeKeys

SEEDS = range(25)

NETPOL = pair("server-defaults", "NetworkPolicy", "argo", "harden-golden-ingress-defaults")
ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "a"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "patch"]}]}
WF_DEFAULTS = {"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 8737},
                        "ttlStrategy": {"secondsAfterCompletion": 300}, "podGC": {"strategy": "OnPodSuccess"}}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "argo"},
      "data": {"workflowDefaults": yaml.safe_dump(WF_DEFAULTS)}}


def full_diff(desired: dict, live: dict) -> list:
    """The diff with the fast path switched off: every object goes through DeepDiff."""
    mp = pytest.MonkeyPatch()
    mp.setattr(diff, "_identical", lambda a, b: False)
    try:
        return diff.diff_fields(desired, live, BUILTIN)
    finally:
        mp.undo()


def verdicts(desired: dict, live: dict) -> tuple[list, list]:
    return diff.diff_fields(desired, live, BUILTIN), full_diff(desired, live)


def _other_scalar(rng: random.Random, value: Any) -> Any:
    """A different value, sometimes equal under `==` but of another type (what `==` alone misses)."""
    if isinstance(value, bool):
        return rng.choice([not value, int(value)])
    if isinstance(value, int):
        return rng.choice([value + rng.randint(1, 100), float(value), str(value)])
    return rng.choice([f"{value}-x", "", None])


# Each mutation: (live, rng) -> True if it made a difference the diff must report.
Mutation = Callable[[dict, random.Random], bool]


def scalar_netpol(live: dict, rng: random.Random) -> bool:
    port = live["spec"]["ingress"][0]["ports"][0]
    port["port"] = _other_scalar(rng, port["port"])
    return True


def same_netpol(live: dict, rng: random.Random) -> bool:
    # What the server adds and harden does not declare: no difference.
    live["metadata"]["resourceVersion"] = str(rng.randint(1, 10**6))
    live["metadata"].setdefault("annotations", {})["someone.else/note"] = "x"
    live["status"] = {"whatever": rng.random()}
    return False


def atomic_netpol(live: dict, rng: random.Random) -> bool:
    rules = live["spec"]["ingress"]
    if rng.random() < 0.5:
        rules.append({"from": [{"ipBlock": {"cidr": f"10.{rng.randint(0, 255)}.0.0/16"}}]})
    else:
        rules[0]["ports"].insert(0, {"port": rng.randint(1, 65535), "protocol": "UDP"})
    return True


def map_key_netpol(live: dict, rng: random.Random) -> bool:
    labels = live["metadata"]["labels"]
    selector = live["spec"]["podSelector"]["matchLabels"]
    choice = rng.randrange(3)
    if choice == 0:
        del labels[rng.choice(sorted(labels))]  # a label harden sets is gone
        return True
    if choice == 1:
        selector["app"] = rng.choice(["argo-server", "", "workflow-controller-x"])
        return True
    selector[f"k{rng.randint(0, 9)}"] = "v"  # a key harden does not declare is not compared
    return False


def set_like_role(live: dict, rng: random.Random) -> bool:
    rule = rng.choice(live["rules"])
    if rng.random() < 0.5:
        rng.shuffle(rule["verbs"])  # order means nothing to RBAC
        return False
    rule["verbs"].append(rng.choice(["create", "delete", "*"]))
    return True


def atomic_role(live: dict, rng: random.Random) -> bool:
    if rng.random() < 0.5:
        live["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    else:
        live["rules"].reverse()  # rules are paired by what they are about (diff._same_entry): no drift
        return False
    return True


def keyed_deploy(live: dict, rng: random.Random) -> bool:
    containers = live["spec"]["template"]["spec"]["containers"]
    choice = rng.randrange(4)
    if choice == 0:
        containers.reverse()  # keyed by name: position means nothing
        return False
    if choice == 1:
        containers[0]["args"].append("--other")  # the sidecar harden does not declare
        return False
    mine = next(c for c in containers if c["name"] == "argo-server")
    if choice == 2:
        mine["args"][rng.randrange(len(mine["args"]))] += "-x"
    else:
        containers.remove(mine)
    return True


def yaml_cm(live: dict, rng: random.Random) -> bool:
    doc = copy.deepcopy(WF_DEFAULTS)
    choice = rng.randrange(4)
    if choice == 0:
        # Same structure, other text: flow style, other key order.
        live["data"]["workflowDefaults"] = yaml.safe_dump(doc, default_flow_style=True, sort_keys=False) + "\n"
        return False
    differs = True
    if choice == 1:
        doc["spec"]["securityContext"]["runAsUser"] = _other_scalar(rng, 8737)
    elif choice == 2:
        del doc["spec"][rng.choice(sorted(doc["spec"]))]
    else:
        doc["spec"]["podGC"][f"extra{rng.randint(0, 9)}"] = "x"  # not declared, so not compared
        differs = False
    live["data"]["workflowDefaults"] = yaml.safe_dump(doc)
    return differs


def unnormalized_netpol(live: dict, rng: random.Random) -> bool:
    # The live object in forms the server does not send but normalization reads as the same
    # (a port without its default protocol, empty lists and selectors the server omits): the first,
    # raw comparison must not decide these, and the normalized one must find them equal.
    rule = live["spec"]["ingress"][0]
    edits = rng.sample(range(4), rng.randint(1, 4))
    if 0 in edits:
        del rule["ports"][0]["protocol"]
    if 1 in edits:
        rule["from"][0]["podSelector"]["matchLabels"] = {}
    if 2 in edits:
        live["spec"]["podSelector"]["matchExpressions"] = []
    if 3 in edits:
        live["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": []})
        return True  # a second rule is a difference however it is written
    return False


CASES = {
    "unnormalized": (NETPOL.config, lambda: copy.deepcopy(NETPOL.live), unnormalized_netpol),
    "equal": (NETPOL.config, lambda: copy.deepcopy(NETPOL.live), same_netpol),
    "scalar": (NETPOL.config, lambda: copy.deepcopy(NETPOL.live), scalar_netpol),
    "atomic list": (NETPOL.config, lambda: copy.deepcopy(NETPOL.live), atomic_netpol),
    "map key": (NETPOL.config, lambda: copy.deepcopy(NETPOL.live), map_key_netpol),
    "set-like list": (ROLE, lambda: copy.deepcopy(ROLE), set_like_role),
    "atomic rules": (ROLE, lambda: copy.deepcopy(ROLE), atomic_role),
    "keyed list entry": (DEPLOY, live_deploy, keyed_deploy),
    "nested YAML": (CM, lambda: copy.deepcopy(CM), yaml_cm),
}


@pytest.mark.parametrize("case", CASES)
def test_fast_path_verdict_matches_full_diff(case: str) -> None:
    desired, fresh, mutate = CASES[case]
    assert verdicts(desired, fresh()) == ([], []), "the unmutated pair must diff empty"
    seen = set()
    for seed in SEEDS:
        rng = random.Random(f"{case}-{seed}")
        live = fresh()
        differs = mutate(live, rng)
        fast, full = verdicts(desired, live)
        assert fast == full, f"seed {seed}: fast path {fast} vs full diff {full}"
        assert bool(fast) is differs, f"seed {seed}: expected {'a' if differs else 'no'} difference, got {fast}"
        seen.add(differs)
    assert seen, "no case ran"


@pytest.mark.parametrize("a,b", [(1, 1.0), (1, True), (0, False), ({"x": [1]}, {"x": [True]}), ([1.0], [1])])
def test_equal_but_differently_typed_values_are_a_difference(a: Any, b: Any) -> None:
    """`==` says equal; DeepDiff (and so harden) reports a type change, and the fast path must not hide it."""
    desired = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"v": a}}
    live = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"v": b}}
    fast, full = verdicts(desired, live)
    assert fast == full and fast, (fast, full)


def test_fast_path_settles_equal_objects_without_deepdiff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal projections must not pay for DeepDiff (it was 73% of a 10,000-object no-change plan)."""
    def boom() -> None:
        raise AssertionError("DeepDiff ran on an equal object")

    monkeypatch.setattr(diff, "_deepdiff", boom)
    assert diff.diff_fields(NETPOL.config, NETPOL.live, BUILTIN) == []
    assert diff.diff_fields(DEPLOY, live_deploy(), BUILTIN) == []
    with pytest.raises(AssertionError, match="DeepDiff ran"):
        diff.diff_fields(DEPLOY, live_deploy(("server",)), BUILTIN)


# Merge-key tables a cluster might serve: the built-in one, none keyed, and more lists keyed.
TABLES = (BUILTIN, ATOMIC_ONLY, MergeKeys(MappingProxyType({**BUILTIN.keyed, "ports": "port", "subjects": "name"})))


@pytest.mark.parametrize("case", CASES)
def test_an_object_that_holds_its_body_diffs_empty_under_any_merge_table(case: str) -> None:
    """`holds` decides the in-sync record an apply leaves (`plan.written_in_sync`), which a later plan
    trusts without a diff: it must never say so of an object the diff, under any table, would change."""
    desired, fresh, mutate = CASES[case]
    held = 0
    for seed in SEEDS:
        rng = random.Random(f"holds-{case}-{seed}")
        live = fresh()
        differs = mutate(live, rng)
        if diff.holds(desired, live):
            held += 1
            assert not differs, f"seed {seed}: holds, but the mutation made a difference"
            for keys in TABLES:
                assert diff.diff_fields(desired, live, keys) == [], f"seed {seed}: holds, yet {keys} finds a change"
    if case == "equal":
        assert held == len(SEEDS), "what the server adds beside harden's fields must not stop an object holding"


def test_holds_reads_both_sides_normalized_but_every_list_whole() -> None:
    live = copy.deepcopy(NETPOL.live)
    assert diff.holds(NETPOL.config, live)
    del live["spec"]["ingress"][0]["ports"][0]["protocol"]  # the server's default, left out: the same
    assert diff.holds(NETPOL.config, live)
    # A keyed list with an entry harden does not declare: no change to the diff, but not held whole.
    assert diff.diff_fields(DEPLOY, live_deploy(), BUILTIN) == []
    assert not diff.holds(DEPLOY, live_deploy())
