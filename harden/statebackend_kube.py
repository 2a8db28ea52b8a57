"""The in-cluster state backend, `kubernetes://NAMESPACE`: state in Secrets, locked by a Lease.

Every Kubernetes call goes through `harden.kube` (the one module importing the client); this
module holds the layout and the locking protocol.

**State.** One Secret per stack (`harden-state-<key>`, type Opaque, labelled
`app.kubernetes.io/managed-by: harden`), because restore points can hold configuration and Secrets
are what RBAC guards separately. Its `state` key is the gzip'd JSON state. Past `CHUNK` bytes the
rest goes into part Secrets named by the serial they belong to; the main Secret, written last, is
the commit point, and parts of older serials are deleted after it. The main Secret is replaced with
its `resourceVersion` as precondition: two writers that both read serial N cannot both write N+1.

**Journal.** Finished writes are batched (every `BATCH` entries or `FLUSH_SECONDS`, and at once
when durable) into journal Secrets, one per batch, so a batch is a create, never a rewrite of the
state. Reading folds them in; compaction (`write`) deletes them.

**Lock.** A `coordination.k8s.io/v1` Lease per stack. `holderIdentity` is the lock ID; the
annotation `harden.dev/lock` says who (host, pid, user, started, operation). Unlike the Terraform
kubernetes backend, whose lock Lease has no expiry (a crashed `terraform apply` leaves it held
until someone runs `force-unlock`), this Lease has `leaseDurationSeconds`, is renewed by a
background thread every third of it while the operation runs, and is taken over, with a
`resourceVersion` precondition so only one waiter wins, once `renewTime + duration` has passed.
A killed runner therefore blocks nobody for longer than the duration. A waiter also counts the
time it has itself watched an unchanged `renewTime` (as client-go's leader election does), so a
runner whose clock runs behind cannot hold the lock for ever. Lease fields:
kubernetes/kubernetes staging/src/k8s.io/api/coordination/v1/types.go (LeaseSpec).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import Conflict, HardenError, InputError, LockHeld, NotFound
from .model import LABEL_MANAGED_BY, MANAGER, Obj, State
from .state import Entry, describe_holder, fold, holder_info, parse_journal, state_from_data

# A Secret's data may total 1 MiB (kubernetes/kubernetes pkg/apis/core/types.go, MaxSecretSize);
# a part stays well below it so labels and annotations fit too.
CHUNK = 768 * 1024
BATCH = 200
FLUSH_SECONDS = 2.0
DEFAULT_LEASE_SECONDS = 30

LABEL_STATE = "harden.dev/state-of"
LABEL_JOURNAL = "harden.dev/journal-of"
ANNOTATION_LOCK = "harden.dev/lock"
LEASE = ("coordination.k8s.io/v1", "Lease")


class StateConflict(HardenError):
    """The state in the cluster was written by someone else since this run read it."""


def object_name(prefix: str, key: str) -> str:
    """A DNS-subdomain name for a state key (`stack` or `stack@context`); a short digest keeps two
    keys that read alike once lowercased apart."""
    safe = re.sub(r"[^a-z0-9.-]+", "-", key.lower()).strip("-.")[:180] or "x"
    if safe != key:
        safe += "-" + digest(key)[:8]
    return f"{prefix}-{safe}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def encode(state: State) -> list[bytes]:
    """gzip'd JSON, cut into parts of at most CHUNK bytes."""
    blob = gzip.compress(json.dumps(state.to_dict(), separators=(",", ":"), sort_keys=True).encode(), mtime=0)
    return [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]


def decode(parts: list[bytes], where: str) -> State:
    try:
        data = json.loads(gzip.decompress(b"".join(parts)))
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"state in {where} is unreadable ({type(exc).__name__})", file=where,
                         hint="restore it with `harden state push` from a backup") from None
    return state_from_data(data, where)


def expired(spec: dict[str, Any], now: datetime) -> bool:
    renew = spec.get("renewTime") or spec.get("acquireTime")
    duration = spec.get("leaseDurationSeconds")
    if not renew or not duration:
        return not spec.get("holderIdentity")
    return parse_time(renew) + timedelta(seconds=int(duration)) < now


def parse_time(text: str | datetime) -> datetime:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def micro_time(when: datetime) -> str:
    # MicroTime's wire format (k8s.io/apimachinery pkg/apis/meta/v1/micro_time.go, RFC3339Micro).
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeBackend:
    def __init__(self, client: Any, namespace: str, stack: str, key: str | None = None,
                 lease_seconds: int = DEFAULT_LEASE_SECONDS) -> None:
        self.client = client
        self.namespace = namespace
        self.stack = stack
        self.key = key or stack
        self.lease_seconds = max(1, int(lease_seconds))
        self.name = object_name("harden-state", self.key)
        self.lease_name = object_name("harden-lock", self.key)
        self.labels = {LABEL_MANAGED_BY: MANAGER, LABEL_STATE: digest(self.key)}
        self._rv: str | None = None
        self._read = False
        self._buffer: list[Entry] = []
        self._flushed_at = time.monotonic()
        self._batch = 0
        self.lost = threading.Event()

    def describe(self) -> str:
        return f"kubernetes://{self.namespace}"

    def _where(self, name: str | None = None) -> str:
        return f"Secret {self.namespace}/{name or self.name}"

    # -- state ---------------------------------------------------------------------------------

    def _read_base(self) -> State:
        main = self.client.get("v1", "Secret", self.namespace, self.name)
        self._read = True
        if main is None:
            self._rv = None
            return State(self.stack)
        self._rv = main["metadata"]["resourceVersion"]
        notes = main["metadata"].get("annotations") or {}
        count, serial = int(notes.get("harden.dev/parts", "1")), notes.get("harden.dev/serial", "0")
        parts = [_data(main, "state")]
        for i in range(1, count):
            part = self.client.get("v1", "Secret", self.namespace, f"{self.name}-{serial}-{i}")
            if part is None:
                raise InputError(f"state part {i} of {count} is missing", file=self._where(f"{self.name}-{serial}-{i}"),
                                 hint="restore the state with `harden state push` from a backup")
            parts.append(_data(part, "state"))
        return decode(parts, self._where())

    def _journal(self) -> list[Obj]:
        found = self.client.select("v1", "Secret", self.namespace, {LABEL_JOURNAL: digest(self.key)})
        return sorted(found, key=lambda o: int((o["metadata"].get("annotations") or {}).get("harden.dev/batch", "0")))

    def read(self) -> State:
        state = self._read_base()
        entries: list[Entry] = []
        batches = self._journal()
        for obj in batches:
            try:
                text = gzip.decompress(_data(obj, "journal")).decode()
            except (OSError, EOFError, ValueError):
                raise InputError("a state journal batch is unreadable", file=self._where(obj["metadata"]["name"]),
                                 hint="restore the state with `harden state push` from a backup") from None
            entries += parse_journal(text, self._where(obj["metadata"]["name"]))
        # Batches of a killed run are kept until compaction: new ones are numbered after them.
        self._batch = max([self._batch] + [int((o["metadata"].get("annotations") or {}).get("harden.dev/batch", "0"))
                                           for o in batches])
        return fold(state, entries)

    def write(self, state: State) -> None:
        if not self._read:
            self._read_base()
        self._buffer.clear()
        parts = encode(state)
        serial = str(state.serial)
        notes = {"harden.dev/parts": str(len(parts)), "harden.dev/serial": serial,
                 "harden.dev/lineage": state.lineage or ""}
        for i, part in enumerate(parts[1:], start=1):
            self._put(self._secret(f"{self.name}-{serial}-{i}", {"state": part}, {**notes, "harden.dev/part": str(i)}))
        body = self._secret(self.name, {"state": parts[0]}, notes)
        try:
            if self._rv is None:
                written = self.client.create(body)
            else:
                body["metadata"]["resourceVersion"] = self._rv
                written = self.client.replace(body)
        except (Conflict, NotFound):
            raise StateConflict(f"the state of stack {self.key!r} in {self._where()} was changed by someone else "
                                "since this run read it; nothing of theirs was overwritten",
                                hint="run `harden plan` again") from None
        self._rv = written["metadata"]["resourceVersion"]
        # Older parts and the compacted journal: the main Secret no longer points at them.
        for obj in self.client.select("v1", "Secret", self.namespace, {LABEL_STATE: digest(self.key)}):
            notes_ = obj["metadata"].get("annotations") or {}
            if obj["metadata"]["name"] != self.name and notes_.get("harden.dev/serial") != serial:
                self.client.delete("v1", "Secret", self.namespace, obj["metadata"]["name"])
        for obj in self._journal():
            self.client.delete("v1", "Secret", self.namespace, obj["metadata"]["name"])

    def _put(self, body: Obj) -> None:
        try:
            self.client.create(body)
        except Conflict:
            live = self.client.get("v1", "Secret", self.namespace, body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"] if live else None
            self.client.replace(body)

    def _secret(self, name: str, data: dict[str, bytes], notes: dict[str, str],
                labels: dict[str, str] | None = None) -> Obj:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels or dict(self.labels),
                             "annotations": notes},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}

    def append(self, entries: list[Entry], *, durable: bool = False) -> None:
        self._buffer += entries
        if durable or len(self._buffer) >= BATCH or time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        self._batch += 1
        text = "".join(e.to_json() + "\n" for e in self._buffer)
        body = self._secret(object_name("harden-journal", self.key) + f"-{self._batch}",
                            {"journal": gzip.compress(text.encode(), mtime=0)}, {"harden.dev/batch": str(self._batch)},
                            {LABEL_MANAGED_BY: MANAGER, LABEL_JOURNAL: digest(self.key)})
        self.client.create(body)
        self._buffer.clear()
        self._flushed_at = time.monotonic()

    # -- the lock ------------------------------------------------------------------------------

    def _lease(self, info: dict[str, Any], rv: str | None, transitions: int, acquired: datetime) -> Obj:
        meta: dict[str, Any] = {"name": self.lease_name, "namespace": self.namespace, "labels": dict(self.labels),
                                "annotations": {ANNOTATION_LOCK: json.dumps(info, sort_keys=True)}}
        if rv:
            meta["resourceVersion"] = rv
        now = datetime.now(UTC)
        return {"apiVersion": LEASE[0], "kind": LEASE[1], "metadata": meta,
                "spec": {"holderIdentity": info["id"], "leaseDurationSeconds": self.lease_seconds,
                         "acquireTime": micro_time(acquired), "renewTime": micro_time(now),
                         "leaseTransitions": transitions}}

    def _acquire(self, info: dict[str, Any], timeout: float) -> Obj:
        deadline = time.monotonic() + timeout
        watched: dict[tuple[Any, Any], float] = {}
        while True:
            live = self.client.get(*LEASE, self.namespace, self.lease_name)
            now = datetime.now(UTC)
            try:
                if live is None:
                    return self.client.create(self._lease(info, None, 0, now))
                spec = live.get("spec") or {}
                seen = watched.setdefault((spec.get("holderIdentity"), spec.get("renewTime")), time.monotonic())
                stale = time.monotonic() - seen > int(spec.get("leaseDurationSeconds") or self.lease_seconds)
                if not spec.get("holderIdentity") or expired(spec, now) or stale:
                    return self.client.replace(self._lease(info, live["metadata"]["resourceVersion"],
                                                           int(spec.get("leaseTransitions") or 0) + 1, now))
            except Conflict:
                continue  # another runner moved first: look again
            except NotFound:
                raise InputError(f"namespace {self.namespace!r} does not exist, so the state lock cannot be taken",
                                 field="--state", hint=f"create it (kubectl create namespace {self.namespace}) "
                                                       "or point --state at another namespace") from None
            if time.monotonic() >= deadline:
                holder = _holder(live)
                until = micro_time(parse_time(str(spec.get("renewTime"))) + timedelta(
                    seconds=int(spec.get("leaseDurationSeconds") or 0))) if spec.get("renewTime") else "?"
                raise LockHeld(f"state for stack {self.key!r} is locked by {describe_holder(holder)}; "
                               f"the lock expires at {until} unless renewed",
                               file=f"Lease {self.namespace}/{self.lease_name}",
                               hint="wait for it (--lock-timeout DURATION), or if that run is gone: "
                                    f"harden force-unlock {holder.get('id', spec.get('holderIdentity'))}")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    @contextmanager
    def lock(self, timeout: float = 0.0, what: str = "apply") -> Iterator[None]:
        info = holder_info(what)
        lease = self._acquire(info, timeout)
        acquired = parse_time(lease["spec"]["acquireTime"])
        transitions = int(lease["spec"].get("leaseTransitions") or 0)
        current = {"rv": lease["metadata"]["resourceVersion"]}
        done = threading.Event()
        self.lost.clear()

        def renew() -> None:
            while not done.wait(self.lease_seconds / 3):
                try:
                    renewed = self.client.replace(self._lease(info, current["rv"], transitions, acquired))
                    current["rv"] = renewed["metadata"]["resourceVersion"]
                except (Conflict, NotFound):
                    self.lost.set()  # taken over: our writes to the state Secret will now conflict
                    return
                except HardenError:
                    continue  # a blip; the next renewal may still come before expiry

        thread = threading.Thread(target=renew, name="harden-lease-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            if not self.lost.is_set():
                try:
                    self.client.delete(*LEASE, self.namespace, self.lease_name, resource_version=current["rv"])
                except (Conflict, NotFound):
                    self.lost.set()
        if self.lost.is_set():
            # Renewal failed for longer than the duration and another run took the lock over; the
            # state Secret's precondition kept that run's state from being overwritten.
            raise LockHeld(f"the lock of stack {self.key!r} was taken over by another run while this one held it",
                           file=f"Lease {self.namespace}/{self.lease_name}",
                           hint="run `harden plan` to see where things stand; raise --lock-duration if the API server "
                                "is slow to answer")

    def force_unlock(self, lock_id: str) -> None:
        live = self.client.get(*LEASE, self.namespace, self.lease_name)
        if live is None:
            raise InputError(f"the state of stack {self.key!r} is not locked", hint="nothing to unlock")
        holder = _holder(live)
        if lock_id not in (holder.get("id"), (live.get("spec") or {}).get("holderIdentity")):
            raise InputError(f"the lock of stack {self.key!r} is held as {holder.get('id')!r}, not {lock_id!r} "
                             f"({describe_holder(holder)})", hint="copy the lock ID from the lock-held message")
        try:
            self.client.delete(*LEASE, self.namespace, self.lease_name, resource_version=live["metadata"]["resourceVersion"])
        except Conflict:
            raise LockHeld("the lock changed hands while unlocking", hint="look again with `harden plan`") from None


def _holder(lease: Obj) -> dict[str, Any]:
    try:
        info = json.loads((lease["metadata"].get("annotations") or {}).get(ANNOTATION_LOCK) or "{}")
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def _data(secret: Obj, key: str) -> bytes:
    return base64.b64decode(((secret.get("data") or {}).get(key)) or "")
