"""Hostile input never gives a traceback: the bundled profiles and stacks, mutated.

Mutations work on the YAML tree (a value replaced by one of another type, a key deleted, a junk
key inserted, a value nested deep) and on the text (a tag, an alias, a control character
injected). Each mutant goes through the CLI's own command functions in-process, as `harden
validate` and `harden plan --snapshot` run them: the outcome is an exit code (0, 1 or 2) and never
an exception that is not a `HardenError` (which the CLI reports as a bug, exit 3); every input
problem names its file and line.

Seeded (`derandomize=True`): the same examples every run, so a failure reproduces.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from harden import commands, views
from harden.engine import Request
from harden.errors import HardenError, InputError

ROOT = Path(__file__).resolve().parents[2]
PROFILES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "profiles").glob("*.yaml"))}
STACKS = {
    "stack": (yaml.safe_load((ROOT / "examples" / "stack.yaml").read_text()), ROOT / "examples" / "snapshot"),
    "argocd-stack": (yaml.safe_load((ROOT / "examples" / "argocd-stack.yaml").read_text()),
                     ROOT / "examples" / "snapshot-argocd"),
}
# Each profile planned with the values its example stack gives it (db-egress needs a database).
PROFILE_STACK = {e["profile"]: (name, e.get("with") or {}) for name, (s, _) in STACKS.items() for e in s["profiles"]}
QUIET = Console(file=io.StringIO(), width=200)
# Plans through the JSON view (the cheapest to render); validate writes text only.
VIEWS = {"plan_cmd": views.make(views.Output.JSON, QUIET, QUIET)}
TEXT = views.make(views.Output.TEXT, QUIET, QUIET)

SETTINGS = dict(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "${namespace}", "${", "${}", "${${x}}", "$5 ${namespace}", "${namespace.x}", "${nope}",
                     "TCP", "In", "0.0.0.0/0", "10.0.0.0/99", "a" * 300, "argo", "app=x", "*", "-", "${ns}"]),
)
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=6)
TEXT_INJECTIONS = ["!custom ", "!!float ", "!!int ", "!!binary ", "!!set ", "&a ", "*a ", "*b", "\x00", "\x07", "\x1b",
                   "\ufeff", "\t", "<<: ", "? ", "--- ", "{", "]", '"', "'", "%TAG ! tag:x,2000:\n", "${", "\\ud800"]


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


@st.composite
def tree_mutant(draw, tree: Any) -> Any:
    """`tree` with one to three mutations, each at a node drawn from the whole tree."""
    tree = copy.deepcopy(tree)
    # Fewer entries per list keeps every example small (and fast) without narrowing what is tried.
    for key in ("objects", "checks", "expect", "patches", "profiles"):
        if isinstance(tree.get(key), list) and len(tree[key]) > 2:
            start = draw(st.integers(0, len(tree[key]) - 2))
            tree[key] = tree[key][start:start + 2]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        op = draw(st.sampled_from(["replace", "replace", "delete", "insert", "nest", "swap"]))
        node = _get(tree, path)
        if op == "insert" and isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=8))] = draw(junk)
            continue
        if not path:
            continue
        parent, last = _get(tree, path[:-1]), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "nest":
            parent[last] = _nest(node, draw(st.sampled_from([1, 2, 5, 63, 64, 65, 200])), draw(st.booleans()))
        elif op == "swap":
            parent[last] = (list(node.values()) if isinstance(node, dict)
                            else {str(i): v for i, v in enumerate(node)} if isinstance(node, list)
                            else str(node) if not isinstance(node, str) else [node])
        else:
            parent[last] = draw(junk)
    return tree


@st.composite
def text_mutant(draw, tree: Any) -> str:
    """The YAML text of a tree mutant, sometimes with text injected where only text can put it."""
    text = yaml.safe_dump(draw(tree_mutant(tree)), sort_keys=False, allow_unicode=True, width=10**6)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(TEXT_INJECTIONS)) + text[at:]
    return text


def outcome(fn, *args: Any, output: str = "text", **kwargs: Any) -> int:
    """The exit code the CLI would give; anything but a HardenError escapes (the CLI's exit 3)."""
    try:
        code = fn(VIEWS.get(fn.__name__, TEXT), *args, **kwargs)
    except HardenError as exc:
        if isinstance(exc, InputError) or type(exc).__name__ == "Diagnostics":
            for d in exc.diagnostics:
                assert d.file and d.line, f"no file:line in {d.render()!r}"
        code = exc.exit_code
    assert code in (0, 1, 2), code
    return code


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def plan(work: Path, stack: str, snapshot: Path) -> int:
    return outcome(commands.plan_cmd, Request(stack_file=stack, snapshot=str(snapshot), state_dir=str(work / "state")),
                   out_file=None, detailed_exitcode=True)


@settings(max_examples=6000, **SETTINGS)
@given(data=st.data())
def test_mutated_profiles_validate(work, data):
    name = data.draw(st.sampled_from(sorted(PROFILES)))
    path = work / "profile.yaml"
    path.write_text(data.draw(text_mutant(PROFILES[name])), encoding="utf-8")
    outcome(commands.validate_cmd, [str(path)])


@settings(max_examples=2500, **SETTINGS)
@given(data=st.data())
def test_mutated_profiles_plan(work, data):
    name = data.draw(st.sampled_from(sorted(PROFILE_STACK)))
    stack_name, with_values = PROFILE_STACK[name]
    stack, snapshot = STACKS[stack_name]
    (work / "profile.yaml").write_text(data.draw(text_mutant(PROFILES[name])), encoding="utf-8")
    (work / "stack.yaml").write_text(yaml.safe_dump({
        **{k: v for k, v in stack.items() if k != "profiles"},
        "profiles": [{"profile": "profile.yaml", **({"with": with_values} if with_values else {})}]}))
    plan(work, str(work / "stack.yaml"), snapshot)


@settings(max_examples=1500, **SETTINGS)
@given(data=st.data())
def test_mutated_stacks_validate_and_plan(work, data):
    stack, snapshot = STACKS[data.draw(st.sampled_from(sorted(STACKS)))]
    path = work / "stack.yaml"
    path.write_text(data.draw(text_mutant(stack)), encoding="utf-8")
    outcome(commands.validate_cmd, [str(path)])
    plan(work, str(path), snapshot)


def test_the_unmutated_inputs_plan_cleanly(work):
    """The fuzz starts from valid input: every profile and stack plans as it is (no error)."""
    for name, (stack, snapshot) in STACKS.items():
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(stack))
        assert plan(work, str(path), snapshot) == 2
    assert outcome(commands.validate_cmd, [str(ROOT / "profiles"), str(ROOT / "examples")]) == 0
