"""state: atomic JSON writes, lineage and serial, and a lock that another process sees and a killed
holder never leaves behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import harden.state as state_mod
from harden.commands import _parse_duration
from harden.errors import InputError, LockHeld
from harden.model import ChangeKind, Restore
from harden.state import FileBackend, Record, State

ROOT = Path(__file__).resolve().parents[2]

REC = Record("networking.k8s.io/NetworkPolicy/argo/x", "networking.k8s.io/v1", ChangeKind.OBJECT, ("p",), "abc")
PATCH = Record("rbac.authorization.k8s.io/ClusterRole//r", "rbac.authorization.k8s.io/v1", ChangeKind.PATCH, ("p",), "def",
               ("rules",), Restore({"rules": []}, "kubectl"))


# -- reading and writing ---------------------------------------------------------------------------

def test_read_without_file_is_empty_state(tmp_path):
    s = FileBackend(tmp_path, "st").read()
    assert (s.stack, s.lineage, s.serial, s.records) == ("st", None, 0, {})


def test_write_is_valid_json_and_round_trips(tmp_path):
    b = FileBackend(tmp_path, "st")
    s = b.read().with_records({REC.key: REC, PATCH.key: PATCH})
    b.write(s)
    data = json.loads((tmp_path / "st.json").read_text())
    assert data["stack"] == "st" and data["serial"] == 1
    back = b.read()
    assert back.records == {REC.key: REC, PATCH.key: PATCH}
    assert (back.lineage, back.serial) == (s.lineage, 1)


def test_write_leaves_no_temporary_file(tmp_path):
    b = FileBackend(tmp_path, "st")
    b.write(State("st").with_records({REC.key: REC}))
    b.write(b.read().with_records({}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st.json"]


def test_failed_write_keeps_old_state_and_removes_temp_file(tmp_path, monkeypatch):
    b = FileBackend(tmp_path, "st")
    first = State("st").with_records({REC.key: REC})
    b.write(first)
    before = (tmp_path / "st.json").read_text()

    def broken_fsync(fd):  # the new text is in the temporary file, not yet durable
        raise OSError("disk full")

    monkeypatch.setattr(state_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        b.write(first.with_records({}))
    monkeypatch.undo()
    assert (tmp_path / "st.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st.json"]
    assert b.read().records == {REC.key: REC}


def test_lineage_created_on_first_write_and_serial_increments(tmp_path):
    b = FileBackend(tmp_path, "st")
    s0 = b.read()
    assert s0.lineage is None
    b.write(s0.with_records({REC.key: REC}))
    s1 = b.read()
    assert s1.lineage and s1.serial == 1
    b.write(s1.with_records({}))
    s2 = b.read()
    assert (s2.lineage, s2.serial, s2.records) == (s1.lineage, 2, {})


def test_each_new_state_gets_its_own_lineage():
    assert State("a").with_records({}).lineage != State("a").with_records({}).lineage


def test_stacks_have_separate_files(tmp_path):
    FileBackend(tmp_path, "a").write(State("a").with_records({REC.key: REC}))
    assert FileBackend(tmp_path, "b").read().records == {}


def test_unreadable_state_is_an_input_error(tmp_path):
    (tmp_path / "st.json").write_text("{not json")
    with pytest.raises(InputError) as ei:
        FileBackend(tmp_path, "st").read()
    assert ei.value.diagnostic.file == str(tmp_path / "st.json")


def test_state_from_newer_harden_is_refused(tmp_path):
    (tmp_path / "st.json").write_text(json.dumps({"formatVersion": 99, "stack": "st", "records": {}}))
    with pytest.raises(InputError) as ei:
        FileBackend(tmp_path, "st").read()
    assert "newer" in ei.value.diagnostic.summary


# -- the lock --------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""\
    import sys, time
    sys.path.insert(0, {root!r})
    from harden.state import FileBackend
    with FileBackend({dir!r}, "st").lock(what="apply"):
        print("locked", flush=True)
        hold = float(sys.argv[1])
        if hold < 0:
            sys.stdin.readline()   # hold until told
        else:
            time.sleep(hold)
    print("released", flush=True)
""")


def start_holder(tmp_path, hold: float = -1) -> subprocess.Popen:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(root=str(ROOT), dir=str(tmp_path / "state")))
    proc = subprocess.Popen([sys.executable, str(script), str(hold)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_second_lock_fails_fast_naming_holder_pid_and_host(tmp_path):
    proc = start_holder(tmp_path)
    try:
        b = FileBackend(tmp_path / "state", "st")
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as ei, b.lock():
            pass
        assert time.monotonic() - t0 < 2
        message = ei.value.render()
        assert f"locked by pid {proc.pid}" in message
        assert socket.gethostname() in message
        assert "--lock-timeout" in (ei.value.diagnostic.hint or "")
        assert ei.value.exit_code == 1
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        stop(proc)
    with b.lock():  # free once the first holder let go
        pass


def test_lock_timeout_waits_for_the_holder(tmp_path):
    proc = start_holder(tmp_path, hold=1.0)
    try:
        b = FileBackend(tmp_path / "state", "st")
        t0 = time.monotonic()
        with b.lock(timeout=15):
            waited = time.monotonic() - t0
        assert 0.3 < waited < 15
    finally:
        stop(proc)


def test_lock_timeout_expires_while_held(tmp_path):
    proc = start_holder(tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(LockHeld), FileBackend(tmp_path / "state", "st").lock(timeout=0.6):
            pass
        assert time.monotonic() - t0 >= 0.5
    finally:
        stop(proc)


def test_killed_holder_does_not_leave_the_lock_held(tmp_path):
    proc = start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with FileBackend(tmp_path / "state", "st").lock(timeout=0):
        pass


def test_locks_are_per_stack_and_exclusive_within_one(tmp_path):
    a, b = FileBackend(tmp_path, "a"), FileBackend(tmp_path, "b")
    with a.lock():
        with b.lock():
            pass
        with pytest.raises(LockHeld), FileBackend(tmp_path, "a").lock():
            pass


@pytest.mark.parametrize("text, seconds", [("0", 0), ("0s", 0), ("30s", 30), ("2m", 120), ("1h", 3600), ("1.5", 1.5)])
def test_lock_timeout_durations(text, seconds):
    assert _parse_duration(text) == seconds


def test_bad_lock_timeout_is_an_input_error():
    with pytest.raises(InputError) as ei:
        _parse_duration("soon")
    assert ei.value.diagnostic.field == "--lock-timeout"


@pytest.mark.parametrize("content", ["[]", '"x"', '{"formatVersion": 1}', '{"stack": "st", "records": {"k": {"key": "k"}}}'])
def test_wrong_shaped_state_is_an_input_error(tmp_path, content):
    (tmp_path / "st.json").write_text(content)
    with pytest.raises(InputError) as ei:
        FileBackend(tmp_path, "st").read()
    assert ei.value.diagnostic.file == str(tmp_path / "st.json")


def test_taking_the_lock_removes_temporary_files_a_killed_run_left(tmp_path):
    b = FileBackend(tmp_path, "st")
    b.write(State("st").with_records({REC.key: REC}))
    left = tmp_path / ".st.k1ll3d.tmp"  # as atomic_write names them, killed before its rename
    left.write_text('{"torn": ')
    other = tmp_path / ".other.abc.tmp"  # another stack's: not ours to touch
    other.write_text("{}")
    with b.lock():
        assert not left.exists() and other.exists()
    assert b.read().records == {REC.key: REC}
