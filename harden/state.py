"""state: what harden manages, behind one backend interface; a journal of writes; a lock.

The record of an object holds its key, profile, and a digest of what harden sent; the record of a
patch also holds the fields harden set and what they were before (value and owning field manager),
so releasing them can hand them back. No secret values are ever stored: harden never patches Secret
data, and everything recorded has passed through observe's redaction.

Backends (`--state URL`, `HARDEN_STATE`, or `state:` in the stack file):

- `file://DIR` (the default, `state/`): `DIR/<key>.json`, written atomically (temporary file,
  fsync, rename), so a process killed at any moment leaves the old or the new state, never a torn
  one. The lock is an `fcntl.flock` on `DIR/<key>.lock`: the kernel drops it when the holder dies.
- `kubernetes://NAMESPACE` (`harden.statebackend_kube`): a Secret per stack, locked by a Lease
  with an expiry.

**The journal.** Apply does not rewrite the whole state after each write (quadratic: 10,000
objects took 322 s); it appends one line per finished write to a journal (`DIR/<key>.journal`,
fsynced; batched into Secrets in the cluster) and compacts journal into state when apply ends or
is interrupted. Reading state folds in a journal a killed run left behind, so the state read is
still exactly what was done. Each journal line names the (lineage, serial) of the state it
extends: a journal whose base is not the state on disk was already compacted (the process died
between writing the state and removing the journal) and is ignored. Only the last line can be
torn (each line is fsynced before the next write starts); a torn last line is a write that was
never acknowledged, and is dropped.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from .errors import InputError, LockHeld
from .model import STATE_FORMAT, Record, State

__all__ = ["Backend", "FileBackend", "Record", "State", "STATE_FORMAT", "atomic_write", "Entry", "fold",
           "parse_state_url", "StateURL", "holder_info", "DEFAULT_STATE_DIR"]

DEFAULT_STATE_DIR = "state"
SCHEMES = ("file", "kubernetes")


# -- the journal -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One finished write: `record` put under `key`, or (record None) the key dropped."""

    key: str
    record: Record | None
    lineage: str            # the lineage of the state this journal produces
    base_serial: int        # the serial of the state it extends
    base_lineage: str | None
    at: str = ""

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "record": self.record.to_dict() if self.record else None,
                           "lineage": self.lineage, "base": [self.base_lineage, self.base_serial], "at": self.at},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Entry:
        d = json.loads(line)
        rec = Record.from_dict(d["record"]) if d.get("record") is not None else None
        base_lineage, base_serial = d["base"]
        return cls(d["key"], rec, d["lineage"], int(base_serial), base_lineage, d.get("at", ""))


def entries_for(state: State, lineage: str, changes: Iterable[tuple[str, Record | None]]) -> list[Entry]:
    at = _now()
    return [Entry(key, rec, lineage, state.serial, state.lineage, at) for key, rec in changes]


def parse_journal(text: str, where: str) -> list[Entry]:
    """Journal lines, in order. A torn last line (a write whose record never finished) is dropped;
    a bad line before the last is damage, not a crash, and is refused."""
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    out: list[Entry] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(Entry.from_json(line))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if i == len(lines) - 1 and torn_tail:
                break
            raise InputError(f"state journal line {i + 1} is damaged ({type(exc).__name__})", file=where, line=i + 1,
                             hint="restore the state from a backup; journal lines are only ever appended") from None
    return out


def fold(state: State, entries: list[Entry]) -> State:
    """The state with a journal's entries applied, those that extend exactly this state.

    Entries come in runs, one per apply, each extending the state the run before produced (a run
    killed after another killed run appends to the same journal), so they are folded run by run.
    Deterministic (lineage and timestamp come from the entries), so two reads of one journal give
    one (lineage, serial), and a plan made on a folded state is not stale against the same fold."""
    current = state
    while True:
        mine = [e for e in entries if (e.base_lineage, e.base_serial) == (current.lineage, current.serial)]
        if not mine:
            return current
        records = dict(current.records)
        for e in mine:
            if e.record is None:
                records.pop(e.key, None)
            else:
                records[e.key] = e.record
        current = replace(current, lineage=mine[0].lineage, serial=current.serial + 1, records=records,
                          updated_at=mine[-1].at)


# -- the interface -----------------------------------------------------------------------------------

class Backend(Protocol):
    """Where one stack's state lives. `read` folds in any journal; `write` replaces the state and
    clears the journal (compaction); `append` records finished writes (durable: wait until they are
    stored); `lock` holds the stack's lock for an operation."""

    key: str
    stack: str

    def read(self) -> State: ...
    def write(self, state: State) -> None: ...
    def append(self, entries: list[Entry], *, durable: bool = False) -> None: ...
    def lock(self, timeout: float = 0.0, what: str = "apply") -> AbstractContextManager[None]: ...
    def force_unlock(self, lock_id: str) -> None: ...
    def describe(self) -> str: ...


@dataclass(frozen=True)
class StateURL:
    scheme: str     # file | kubernetes
    location: str   # a directory, or a namespace

    def __str__(self) -> str:
        return f"{self.scheme}://{self.location}"


def parse_state_url(text: str, field: str = "--state") -> StateURL:
    """`file://DIR`, `kubernetes://NAMESPACE`, or a bare directory (as `--state-dir` always took)."""
    if "://" not in text:
        if not text:
            raise InputError("the state location is empty", field=field, hint="write file://DIR or kubernetes://NAMESPACE")
        return StateURL("file", text)
    scheme, rest = text.split("://", 1)
    if scheme not in SCHEMES:
        raise InputError(f"unknown state backend {scheme!r} in {text!r}", field=field,
                         hint="use file://DIR or kubernetes://NAMESPACE")
    if scheme == "file":
        if not rest:
            raise InputError(f"{text!r} names no directory", field=field, hint="write file://state or file:///abs/dir")
        return StateURL("file", rest)
    ns = urlparse(text).netloc
    if not ns or rest.strip("/") != ns or not _dns_label(ns):
        raise InputError(f"{text!r} does not name one namespace", field=field,
                         hint="write kubernetes://NAMESPACE, e.g. kubernetes://harden-state")
    return StateURL("kubernetes", ns)


def _dns_label(s: str) -> bool:
    import re
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", s))


def holder_info(what: str, lock_id: str | None = None) -> dict[str, Any]:
    """Who holds a lock, as a person reading the lock-held message needs it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"id": lock_id or str(uuid.uuid4()), "host": socket.gethostname(), "pid": os.getpid(), "user": user,
            "operation": what, "started": _now()}


def describe_holder(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started') or info.get('since')} "
            f"({info.get('operation')}, user {info.get('user', '?')}, lock ID {info.get('id', '?')})")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- file:// -----------------------------------------------------------------------------------------

class FileBackend:
    def __init__(self, directory: str | Path, stack: str, key: str | None = None) -> None:
        self.dir = Path(directory)
        self.stack = stack
        self.key = key or stack
        self.path = self.dir / f"{self.key}.json"
        self.journal_path = self.dir / f"{self.key}.journal"
        self.lock_path = self.dir / f"{self.key}.lock"
        self._journal_fd: int | None = None

    def describe(self) -> str:
        return f"file://{self.dir}"

    def _read_base(self) -> State:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return State(self.stack)
        except (OSError, ValueError) as exc:
            raise InputError(f"state file is unreadable: {exc}", file=str(self.path),
                             hint="restore it from version control or a backup; harden never writes a partial file") from None
        return state_from_data(data, str(self.path))

    def read(self) -> State:
        state = self._read_base()
        try:
            text = self.journal_path.read_text()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise InputError(f"state journal is unreadable: {exc.strerror}", file=str(self.journal_path)) from None
        return fold(state, parse_journal(text, str(self.journal_path)))

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot use the state directory: {exc.strerror}", file=str(self.dir), field="--state",
                             hint="point --state at a writable directory (file://DIR)") from None

    def write(self, state: State) -> None:
        self._ensure_dir()
        atomic_write(self.path, json.dumps(state.to_dict(), indent=2) + "\n")
        # The state now holds everything the journal said (its base is gone), so it may go.
        self._close_journal()
        with suppress(FileNotFoundError):
            self.journal_path.unlink()

    def append(self, entries: list[Entry], *, durable: bool = False) -> None:
        """Append and fsync: a local append is cheap enough to make every line durable."""
        if not entries:
            return
        if self._journal_fd is None:
            self._ensure_dir()
            self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._journal_fd, "".join(e.to_json() + "\n" for e in entries).encode())
        os.fsync(self._journal_fd)

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    @contextmanager
    def lock(self, timeout: float = 0.0, what: str = "apply") -> Iterator[None]:
        """Hold the stack's lock; wait up to `timeout` seconds for another holder to finish."""
        self._ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = describe_holder(_read_holder(self.lock_path))
                        raise LockHeld(f"state for stack {self.key!r} is locked by {holder}",
                                       file=str(self.lock_path),
                                       hint="wait for it to finish, or pass --lock-timeout DURATION to wait") from None
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder_info(what)).encode(), 0)
            # Holding the lock, no other writer of this stack is mid-write: a temporary file of its
            # is what a killed run left between writing and renaming it.
            for stale in self.path.parent.glob(f".{self.path.stem}.*.tmp"):
                with suppress(OSError):
                    stale.unlink()
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def force_unlock(self, lock_id: str) -> None:
        """A file lock cannot be taken from a live holder (the kernel holds it for the process); one
        whose holder is gone is already free, and only its holder note is left to clear."""
        info = _read_holder(self.lock_path)
        if info.get("id") != lock_id:
            raise InputError(f"the lock of stack {self.key!r} is not held as {lock_id!r}"
                             + (f" (held: {describe_holder(info)})" if info else " (it is not held)"),
                             hint="copy the lock ID from the lock-held message")
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(f"the file lock of stack {self.key!r} is held by a running process "
                               f"({describe_holder(info)})", file=str(self.lock_path),
                               hint="a file lock is released by the kernel when its holder exits: stop that process") from None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def state_from_data(data: Any, where: str) -> State:
    if not isinstance(data, dict):
        raise InputError("state is not a harden state (not a JSON object)", file=where,
                         hint="restore it from version control or a backup")
    if data.get("formatVersion", 0) > STATE_FORMAT:
        raise InputError(f"state was written by a newer harden (format {data.get('formatVersion')})",
                         file=where, hint="upgrade harden")
    try:
        return State.from_dict(data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"state is not a harden state ({type(exc).__name__}: {exc})",
                         file=where, hint="restore it from version control or a backup") from None


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader (or a process killed half-way) sees the old file or the
    new one, never a torn one: a temporary file in the same directory, fsynced, renamed over."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}
