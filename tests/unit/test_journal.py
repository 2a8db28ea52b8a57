"""The state journal and the backends' pure parts: fold, compaction, a torn last line, state URLs,
the in-cluster layout (names, gzip parts, lease expiry), and one exit code over several clusters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harden import statebackend_kube as kb
from harden.commands import push_state, worst
from harden.engine import Request, per_cluster, state_location
from harden.errors import InputError
from harden.model import ChangeKind, Restore
from harden.state import Entry, FileBackend, Record, State, entries_for, fold, parse_journal, parse_state_url

ROOT = Path(__file__).resolve().parents[2]
A = Record("networking.k8s.io/NetworkPolicy/argo/a", "networking.k8s.io/v1", ChangeKind.OBJECT, ("p",), "d1")
B = Record("networking.k8s.io/NetworkPolicy/argo/b", "networking.k8s.io/v1", ChangeKind.OBJECT, ("p",), "d2")
P = Record("rbac.authorization.k8s.io/ClusterRole//r", "rbac.authorization.k8s.io/v1", ChangeKind.PATCH, ("p",), "d3",
           ("rules",), Restore({"rules": []}, "kubectl"))


# -- fold ------------------------------------------------------------------------------------------

def test_fold_applies_puts_and_drops_in_order_and_bumps_the_serial_once():
    base = State("st").with_records({A.key: A})
    entries = entries_for(base, base.lineage, [(B.key, B), (A.key, None), (P.key, P)])
    folded = fold(base, entries)
    assert folded.records == {B.key: B, P.key: P}
    assert (folded.lineage, folded.serial) == (base.lineage, base.serial + 1)


def test_fold_is_deterministic_even_for_a_state_with_no_lineage_yet():
    # A plan made on a folded state must not be stale against the same fold read again.
    entries = entries_for(State("st"), "L-1", [(A.key, A)])
    assert fold(State("st"), entries) == fold(State("st"), entries)
    assert fold(State("st"), entries).lineage == "L-1"


def test_a_journal_of_another_base_is_ignored():
    # The process died after compacting (state has moved on) but before removing the journal.
    base = State("st").with_records({A.key: A})
    entries = entries_for(base, base.lineage, [(A.key, None)])
    compacted = fold(base, entries)
    assert fold(compacted, entries) == compacted


def test_entry_round_trips_through_json():
    e = entries_for(State("st", "L", 3), "L", [(P.key, P)])[0]
    assert Entry.from_json(e.to_json()) == e


def test_torn_last_line_is_dropped():
    lines = [e.to_json() for e in entries_for(State("st"), "L", [(A.key, A), (B.key, B)])]
    text = lines[0] + "\n" + lines[1][: len(lines[1]) // 2]
    assert [e.key for e in parse_journal(text, "j")] == [A.key]


def test_a_damaged_line_before_the_last_is_refused():
    lines = [e.to_json() for e in entries_for(State("st"), "L", [(A.key, A), (B.key, B)])]
    with pytest.raises(InputError) as ei:
        parse_journal(lines[0][:10] + "\n" + lines[1] + "\n", "j")
    assert ei.value.diagnostic.line == 1


# -- the file backend: journal, compaction --------------------------------------------------------

def test_file_journal_is_folded_on_read_and_compacted_by_write(tmp_path):
    b = FileBackend(tmp_path, "st")
    base = b.read()
    b.append(entries_for(base, "L", [(A.key, A)]), durable=True)
    b.append(entries_for(base, "L", [(B.key, B)]))
    assert (tmp_path / "st.journal").exists() and not (tmp_path / "st.json").exists()
    seen = FileBackend(tmp_path, "st").read()  # another process reading
    assert seen.records == {A.key: A, B.key: B} and (seen.lineage, seen.serial) == ("L", 1)
    b.write(seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st.json"]
    assert FileBackend(tmp_path, "st").read() == seen


KILLED = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, {root!r})
    from harden.state import FileBackend, entries_for
    from harden.model import ChangeKind
    from harden.state import Record
    b = FileBackend({dir!r}, "st")
    base = b.read()
    for i in range(5):
        r = Record(f"v1/ConfigMap/ns/c{{i}}", "v1", ChangeKind.OBJECT, ("p",), str(i))
        b.append(entries_for(base, "L", [(r.key, r)]))
    # a sixth write, killed half-way through its journal line
    os.write(b._journal_fd, b'{{"key": "v1/ConfigMap/ns/c5", "rec')
    os.kill(os.getpid(), 9)
""")


def test_a_killed_writer_leaves_state_that_says_exactly_what_was_done(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(KILLED.format(root=str(ROOT), dir=str(tmp_path / "s")))
    proc = subprocess.run([sys.executable, str(script)])
    assert proc.returncode == -9
    state = FileBackend(tmp_path / "s", "st").read()
    assert sorted(state.records) == [f"v1/ConfigMap/ns/c{i}" for i in range(5)]


def test_apply_appends_instead_of_rewriting_the_state(tmp_path, monkeypatch):
    """The regression: apply rewrote the whole state after every write (quadratic)."""
    from harden import apply as apply_mod

    writes: list[int] = []
    appended: list[int] = []
    b = FileBackend(tmp_path, "st")
    monkeypatch.setattr(b, "write", lambda s, real=b.write: (writes.append(len(s.records)), real(s)))
    monkeypatch.setattr(b, "append", lambda e, durable=False, real=b.append: (appended.append(len(e)), real(e)))
    plan, cluster = _plan_of(40)
    result = apply_mod.apply_plan(plan, cluster, b, parallelism=4)
    assert not result.failed and len(result.done) == 40
    assert writes == [40]                       # one compaction at the end
    assert sum(appended) == 40                  # one journal line per write
    assert FileBackend(tmp_path, "st").read().records == result.state.records


def test_writes_that_land_while_the_journal_syncs_share_the_next_fsync(tmp_path, monkeypatch):
    """Group commit: a journal append (an fsync) per write capped apply at a few hundred writes a
    second; the writes that finish while one batch is made durable are recorded by the next append."""
    from harden import apply as apply_mod

    appended: list[int] = []
    b = FileBackend(tmp_path, "st")

    def slow_append(entries, durable=False, real=b.append):
        appended.append(len(entries))
        time.sleep(0.05)  # a slow disk: every other write lands meanwhile
        real(entries)

    monkeypatch.setattr(b, "append", slow_append)
    plan, cluster = _plan_of(40)
    result = apply_mod.apply_plan(plan, cluster, b, parallelism=4)
    assert sorted(str(c.key) for c in result.done) == sorted(str(c.key) for c in plan.changes)
    assert sum(appended) == 40 and len(appended) < 10
    assert FileBackend(tmp_path, "st").read().records == result.state.records


def _plan_of(n: int):
    from harden.model import Action, Change, Phase, Plan, ResourceKey

    class Cluster:
        host = None

        def list(self, api_version, kind, namespace=None):
            return []

        def apply(self, body, *, manager, dry_run=False, force=True):
            return body

    changes = []
    for i in range(n):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "ns"}, "data": {}}
        changes.append(Change(key=ResourceKey.of(body), api_version="v1", kind=ChangeKind.OBJECT, action=Action.CREATE,
                              profiles=("p",), reason="r", body=body, phase=Phase.WRITE))
    plan = Plan(stack="st", lineage=None, serial=0, changes=tuple(changes), source={"kind": "cluster"})
    return plan, Cluster()


# -- state URLs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, scheme, where", [("file://state", "file", "state"), ("file:///abs/d", "file", "/abs/d"),
                                                 ("some/dir", "file", "some/dir"),
                                                 ("kubernetes://harden-state", "kubernetes", "harden-state")])
def test_state_urls(text, scheme, where):
    url = parse_state_url(text)
    assert (url.scheme, url.location) == (scheme, where)


@pytest.mark.parametrize("text", ["s3://bucket/key", "kubernetes://", "kubernetes://Bad_NS", "kubernetes://a/b", "file://"])
def test_bad_state_urls_are_input_errors(text):
    with pytest.raises(InputError) as ei:
        parse_state_url(text)
    assert ei.value.diagnostic.field == "--state" and "\n" not in ei.value.diagnostic.summary


def test_state_location_precedence(tmp_path, monkeypatch):
    stack = tmp_path / "s.yaml"
    stack.write_text("apiVersion: harden.dev/v1alpha1\nkind: Stack\nmetadata: {name: s}\nstate: kubernetes://from-file\n"
                     "profiles: []\n")
    monkeypatch.delenv("HARDEN_STATE", raising=False)
    assert str(state_location(Request(stack_file=str(stack)))) == "kubernetes://from-file"
    monkeypatch.setenv("HARDEN_STATE", "file://env")
    assert str(state_location(Request(stack_file=str(stack)))) == "file://env"
    assert str(state_location(Request(stack_file=str(stack), state="file://flag"))) == "file://flag"
    monkeypatch.delenv("HARDEN_STATE")
    assert str(state_location(Request(state_dir="dir"))) == "file://dir"


# -- several clusters ------------------------------------------------------------------------------

def test_each_cluster_gets_its_own_state_key(tmp_path):
    stack = tmp_path / "s.yaml"
    stack.write_text("apiVersion: harden.dev/v1alpha1\nkind: Stack\nmetadata: {name: s}\nclusters: [a, b]\nprofiles: []\n")
    keys = [(r.context, r.state_key) for r in per_cluster(Request(stack_file=str(stack)))]
    assert keys == [("a", "s@a"), ("b", "s@b")]
    # One cluster of a multi-cluster stack: the same key as in a run over all of them.
    assert [r.state_key for r in per_cluster(Request(stack_file=str(stack), context="a"))] == ["s@a"]
    assert [r.state_key for r in per_cluster(Request(context="a"))] == [None]
    assert [r.state_key for r in per_cluster(Request(stack_file=str(stack), contexts=("x", "y")))] == ["s@x", "s@y"]


@pytest.mark.parametrize("codes, expected", [([0, 0], 0), ([0, 2], 2), ([2, 1, 0], 1), ([1, 2], 1), ([], 0)])
def test_one_exit_code_worst_of_error_changes_ok(codes, expected):
    assert worst(codes) == expected


# -- push refuses what would lose writes -----------------------------------------------------------

def test_push_refuses_another_lineage_unless_forced(tmp_path):
    b = FileBackend(tmp_path, "st")
    b.write(State("st").with_records({A.key: A}))
    other = State("st").with_records({B.key: B})
    with pytest.raises(InputError, match="lineage"):
        push_state(other, b, force=False)
    pushed = push_state(other, b, force=True)
    assert b.read().records == {B.key: B} and b.read().lineage == other.lineage == pushed.lineage


def test_push_refuses_an_older_serial_of_the_same_lineage(tmp_path):
    b = FileBackend(tmp_path, "st")
    old = State("st").with_records({A.key: A})
    b.write(old.with_records({}).with_records({B.key: B}))
    with pytest.raises(InputError, match="newer"):
        push_state(old, b, force=False)


# -- the in-cluster layout -------------------------------------------------------------------------

def test_object_names_are_valid_and_distinct():
    names = {kb.object_name("harden-state", k) for k in ("argo", "argo@kind-a", "argo@Kind-A", "ARGO")}
    assert len(names) == 4
    import re
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", n) and len(n) <= 253 for n in names)
    assert kb.object_name("harden-state", "argo") == "harden-state-argo"


def test_large_state_is_split_and_reassembled(monkeypatch):
    monkeypatch.setattr(kb, "CHUNK", 1000)
    records = {f"v1/ConfigMap/ns/c{i}": Record(f"v1/ConfigMap/ns/c{i}", "v1", ChangeKind.OBJECT, ("p",), os.urandom(16).hex())
               for i in range(200)}
    state = State("st").with_records(records)
    parts = kb.encode(state)
    assert len(parts) > 2 and all(len(p) <= 1000 for p in parts)
    assert kb.decode(parts, "x") == state


def test_lease_expiry():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec = {"holderIdentity": "x", "leaseDurationSeconds": 30, "renewTime": kb.micro_time(now - timedelta(seconds=10))}
    assert not kb.expired(spec, now)
    assert kb.expired(spec, now + timedelta(seconds=21))
    # A Lease with no duration (the Terraform backend's kind) never expires while held.
    assert not kb.expired({"holderIdentity": "x"}, now + timedelta(days=1))
    assert kb.expired({"holderIdentity": ""}, now)


# -- force-unlock of a file lock -------------------------------------------------------------------

def test_force_unlock_needs_the_lock_id_and_cannot_take_a_live_holder_s_lock(tmp_path):
    from harden.errors import LockHeld

    b = FileBackend(tmp_path, "st")
    with b.lock(what="apply"):
        lock_id = json.loads((tmp_path / "st.lock").read_text())["id"]
        with pytest.raises(InputError, match="not held as"):
            FileBackend(tmp_path, "st").force_unlock("wrong")
        with pytest.raises(LockHeld, match="running process"):
            FileBackend(tmp_path, "st").force_unlock(lock_id)
    # A holder killed with -9 leaves its note behind; force-unlock clears it.
    (tmp_path / "st.lock").write_text(json.dumps({"id": "dead", "pid": 1, "host": "h"}))
    FileBackend(tmp_path, "st").force_unlock("dead")
    assert (tmp_path / "st.lock").read_text() == ""


def test_two_killed_runs_in_a_row_are_both_folded(tmp_path):
    """Regression: the second run's entries extend the state folded from the first run's, so a fold
    of the first run only lost every record of the second."""
    b = FileBackend(tmp_path, "st")
    first = b.read()
    b.append(entries_for(first, "L", [(A.key, A)]))
    b._close_journal()  # killed
    second = FileBackend(tmp_path, "st")
    folded = second.read()
    second.append(entries_for(folded, folded.lineage, [(B.key, B), (A.key, None)]))
    second._close_journal()  # killed again
    state = FileBackend(tmp_path, "st").read()
    assert state.records == {B.key: B} and (state.lineage, state.serial) == ("L", 2)
