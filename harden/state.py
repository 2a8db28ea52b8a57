"""state: what harden manages, stored as one JSON file per stack, written atomically, locked.

The record of an object holds its key, profile, and a digest of what harden sent; the record of a
patch also holds the fields harden set and what they were before (value and owning field manager),
so releasing them can hand them back. No secret values are ever stored: harden never patches Secret
data, and everything recorded has passed through observe's redaction.

Writes go to a temporary file in the same directory, are fsynced, and replace the old file
atomically, so a process killed at any moment leaves either the old or the new state, never a torn
one. The lock is an `fcntl.flock` on a sidecar file holding the holder's pid, host and start time:
the kernel drops it when the holder dies, so a killed apply never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import __version__
from .errors import InputError, LockHeld

STATE_FORMAT = 1


@dataclass(frozen=True)
class Record:
    key: str
    api_version: str
    kind: str          # object | patch
    profile: str
    digest: str
    field_paths: tuple[str, ...] = ()
    restore: dict | None = None  # patches: {"body": partial object, "manager": previous owner}

    def to_dict(self) -> dict:
        d = {"key": self.key, "apiVersion": self.api_version, "kind": self.kind, "profile": self.profile,
             "digest": self.digest}
        if self.field_paths:
            d["fieldPaths"] = list(self.field_paths)
        if self.restore is not None:
            d["restore"] = self.restore
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        return cls(d["key"], d["apiVersion"], d["kind"], d["profile"], d["digest"],
                   tuple(d.get("fieldPaths", [])), d.get("restore"))


@dataclass(frozen=True)
class State:
    stack: str
    lineage: str | None = None
    serial: int = 0
    records: dict[str, Record] = field(default_factory=dict)
    updated_at: str = ""

    def to_dict(self) -> dict:
        return {"formatVersion": STATE_FORMAT, "hardenVersion": __version__, "stack": self.stack,
                "lineage": self.lineage, "serial": self.serial, "updatedAt": self.updated_at,
                "records": {k: r.to_dict() for k, r in sorted(self.records.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "State":
        return cls(d["stack"], d.get("lineage"), d.get("serial", 0),
                   {k: Record.from_dict(r) for k, r in d.get("records", {}).items()}, d.get("updatedAt", ""))

    def with_records(self, records: dict[str, Record]) -> "State":
        """The next serial of this state (a new lineage on first write)."""
        return replace(self, lineage=self.lineage or str(uuid.uuid4()), serial=self.serial + 1,
                       records=dict(records), updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


class FileBackend:
    def __init__(self, directory: str | Path, stack: str) -> None:
        self.dir = Path(directory)
        self.stack = stack
        self.path = self.dir / f"{stack}.json"
        self.lock_path = self.dir / f"{stack}.lock"

    def read(self) -> State:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return State(self.stack)
        except (OSError, ValueError) as exc:
            raise InputError(f"state file is unreadable: {exc}", file=str(self.path),
                             hint="restore it from version control or a backup; harden never writes a partial file") from None
        if not isinstance(data, dict):
            raise InputError("state file is not a harden state file (not a JSON object)", file=str(self.path),
                             hint="restore it from version control or a backup")
        if data.get("formatVersion", 0) > STATE_FORMAT:
            raise InputError(f"state was written by a newer harden (format {data.get('formatVersion')})",
                             file=str(self.path), hint="upgrade harden")
        try:
            return State.from_dict(data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(f"state file is not a harden state file ({type(exc).__name__}: {exc})",
                             file=str(self.path), hint="restore it from version control or a backup") from None

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot use the state directory: {exc.strerror}", file=str(self.dir), field="--state-dir",
                             hint="point --state-dir at a writable directory") from None

    def write(self, state: State) -> None:
        self._ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.stack}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state.to_dict(), f, indent=2, sort_keys=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dirfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

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
                        holder = _read_holder(self.lock_path)
                        raise LockHeld(f"state for stack {self.stack!r} is locked by {holder}",
                                       file=str(self.lock_path),
                                       hint="wait for it to finish, or pass --lock-timeout DURATION to wait") from None
                    time.sleep(0.2)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "operation": what,
                    "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')} ({info.get('operation')})"
