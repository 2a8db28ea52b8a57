"""yamlsrc: hostile YAML (alias bombs, deep nesting, special characters, tags) is refused with a
file and line, fast and in little memory; loads share no state and keep nothing alive."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import tracemalloc

import pytest
import yaml

from harden.errors import InputError
from harden.yamlsrc import load_documents

MAX_DEPTH = 64  # harden.yamlsrc.MAX_DEPTH (spelled out so the test runs against code without it)


def refused(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_documents(text, "hostile.yaml")
    d = info.value.diagnostic
    assert d.file == "hostile.yaml" and d.line is not None and d.hint, d
    return info.value


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_fast_and_small():
    text = billion_laughs()
    assert len(text) <= 1024  # 9**9 "lol"s, expanded: several GB
    tracemalloc.start()
    start = time.perf_counter()
    try:
        exc = refused(text)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 100 * 2**20, (elapsed, peak)
    assert "aliases are not supported" in exc.diagnostic.summary and exc.diagnostic.line == 2


def test_recursive_alias_is_refused():
    exc = refused("a: 1\nb: &b [1, *b]\n")
    assert "aliases are not supported (*b)" in exc.diagnostic.summary and exc.diagnostic.line == 2


def test_plain_alias_is_refused_too():
    # Even a harmless alias: a profile is read by reviewers, who should see each value where it applies.
    refused("a: &x 1\nb: *x\n")


@pytest.mark.parametrize("text", [
    pytest.param("[" * 100_000, id="flow-sequences"),
    pytest.param("a: " + "{b: " * (MAX_DEPTH + 5) + "1" + "}" * (MAX_DEPTH + 5), id="flow-mappings"),
    pytest.param("".join(" " * i + "k:\n" for i in range(3000)), id="block-mappings"),
    pytest.param("".join(" " * (2 * i) + "- \n" for i in range(3000)), id="block-sequences"),
])
def test_deep_nesting_is_refused_not_a_recursion_error(text):
    exc = refused(text)
    assert f"more than {MAX_DEPTH} levels" in exc.diagnostic.summary


def test_nesting_up_to_the_limit_loads():
    depth = MAX_DEPTH - 1
    data = load_documents("[" * depth + "1" + "]" * depth, "ok.yaml")[0].data
    for _ in range(depth):
        data = data[0]
    assert data == 1


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\ufffe"])
def test_special_characters_name_their_line(char):
    exc = refused(f"a: 1\nb: x{char}y\n")
    assert exc.diagnostic.line == 2 and "special character" in exc.diagnostic.summary


@pytest.mark.parametrize("text, fragment", [
    ("a: !custom x\n", "unsupported YAML tag !custom"),
    ("a: !custom {b: 1}\n", "unsupported YAML tag !custom on a mapping"),
    ("a: !!binary aGk=\n", "unsupported YAML tag !!binary"),
    ("a: !!set {x}\n", "unsupported YAML tag !!set"),
    ("a: !!omap [x: 1]\n", "unsupported YAML tag !!omap"),
    ("!k a: 1\n", "unsupported YAML tag !k on a key"),
    ("a: !!float y\n", "'y' is not a valid !!float"),
    ("a: !!int x\n", "'x' is not a valid !!int"),
    ("a: !!bool maybe\n", "'maybe' is not a valid !!bool"),
    ("? [a]\n: 1\n", "a mapping key must be a scalar"),
    ('a: "\\ud800"\n', "lone surrogate"),
])
def test_tags_and_odd_scalars_are_input_errors(text, fragment):
    assert fragment in refused(text).diagnostic.summary


def test_plain_json_values_still_load():
    data = load_documents('a: !!str 1\nb: !!int "2"\nc: !!float 1.5\nd: true\ne: ~\n80: x\nf: 2020-01-02\n', "ok.yaml")[0].data
    # Keys stay text, as Kubernetes reads them; a timestamp stays the text it was written as (JSON has none).
    assert data == {"a": "1", "b": 2, "c": 1.5, "d": True, "e": None, "80": "x", "f": "2020-01-02"}


def test_concurrent_loads_give_each_thread_its_own_result():
    texts = [f"name: t{i}\nitems: [{', '.join(str(i * 100 + j) for j in range(50))}]\nflag: {str(i % 2 == 0).lower()}\n"
             for i in range(2)]
    expected = [{"name": f"t{i}", "items": [i * 100 + j for j in range(50)], "flag": i % 2 == 0} for i in range(2)]
    wrong: list[object] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(300):
            data = load_documents(texts[i], f"t{i}.yaml")[0].data
            if data != expected[i]:
                wrong.append(data)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:2]


def test_no_loader_outlives_a_load():
    load_documents("a: [1, 2, {b: c}]\n", "one.yaml")
    with contextlib.suppress(InputError):
        load_documents("a: !custom x\n", "two.yaml")
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, yaml.constructor.BaseConstructor)]
    assert not alive, alive
