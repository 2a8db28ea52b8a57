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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .errors import InputError, LockHeld
from .model import STATE_FORMAT, Record, State

__all__ = ["FileBackend", "Record", "State", "STATE_FORMAT", "atomic_write"]



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
                             hint="restore it from version control or a backup; "
                                  "harden never writes a partial file") from None
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
        atomic_write(self.path, json.dumps(state.to_dict(), indent=2) + "\n")

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
                    "since": datetime.now(UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


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


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')} ({info.get('operation')})"
