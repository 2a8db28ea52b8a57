"""apply: carry out exactly the plan, never re-decide it.

1. Refuse a stale plan: the state must be the lineage and serial the plan was made against, and
   every object the plan touches must still have the resourceVersion the plan observed (one bulk
   LIST per kind, the same read observe does), else nothing is written.
2. Server dry-run of every write, so a rejection (validation, admission, RBAC) stops the run before
   anything changed (unless `--no-preflight`: half the requests, and a refusal then stops the run
   part-way, with what landed recorded; the phases still put allows before the denies they open).
3. The writes, in parallel (bounded). Each request is retried on its own by the client edge
   (`harden.kube`) on 429, 5xx and lost connections, never a whole multi-request write: a
   release-first patch that landed is not sent again with its now-stale resourceVersion when the
   apply after it fails. Updates carry the observed resourceVersion as a precondition, so a change
   that races the stale-check is refused by the server rather than overwritten. After the first
   failure nothing new is started: a dead connection costs one request timeout, not one per write.
4. Each finished write is appended to the state's journal as it lands (not a rewrite of the whole
   state: that made apply quadratic), and the journal is compacted into the state when apply ends
   or is interrupted. A run killed half-way leaves state plus journal, which reading folds into a
   state that says exactly what was done; the next plan picks up from there.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Protocol

from .errors import HardenError, StalePlan
from .model import MANAGER, Action, Change, ChangeKind, Obj, Phase, Plan, ResourceKey, field_manager
from .parallel import NotStarted, guarded
from .plan import record_for, written_in_sync
from .state import Backend, Entry, Record, State, entries_for, fold


class Cluster(Protocol):
    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]: ...
    def apply(self, body: Obj, *, manager: str, dry_run: bool = False, force: bool = True) -> Obj: ...
    def patch(self, body: Obj, *, manager: str, dry_run: bool = False) -> Obj: ...
    def delete(self, api_version: str, kind: str, namespace: str, name: str, *,
               resource_version: str | None = None, dry_run: bool = False) -> None: ...


@dataclass
class Result:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, HardenError]] = field(default_factory=list)
    state: State | None = None


Progress = Callable[[str, Change], None]


def check_fresh(plan: Plan, cluster: Cluster, state: State) -> None:
    """Raise StalePlan if the state or any touched object moved on since the plan was made."""
    if plan.source.get("kind") == "snapshot":
        raise StalePlan("this plan was made against a snapshot, not a cluster",
                        hint="plan against the cluster (--kubeconfig/--context) and apply that plan")
    host = getattr(cluster, "host", None)
    if host and plan.source.get("host") and plan.source["host"] != host:
        raise StalePlan(f"this plan was made against {plan.source['host']}, not {host}",
                        hint="apply a plan against the cluster it was made for")
    if (state.lineage, state.serial) != (plan.lineage, plan.serial):
        raise StalePlan(f"state moved on since the plan was made (plan: lineage {plan.lineage} serial {plan.serial}; "
                        f"now: lineage {state.lineage} serial {state.serial})",
                        hint="run `harden plan` again and apply the new plan")
    touched = [c for c in plan.changes if c.action is not Action.NOOP]
    kinds = {(c.api_version, c.key.kind) for c in touched}
    now: dict[ResourceKey, str | None] = {}
    for api_version, kind in sorted(kinds):
        for obj in cluster.list(api_version, kind):
            now[ResourceKey.of({**obj, "apiVersion": api_version})] = obj["metadata"].get("resourceVersion")
    for c in touched:
        current = now.get(c.key)
        if current != c.observed_resource_version:
            what = ("was created" if c.observed_resource_version is None else
                    "was deleted" if current is None else
                    f"changed (resourceVersion {c.observed_resource_version} -> {current})")
            raise StalePlan(f"{c.key.display()} {what} since the plan was made; nothing was applied",
                            hint="run `harden plan` again to see the current changes")


def _write(cluster: Cluster, c: Change, dry_run: bool, manager: str) -> Obj | None:
    """Carry out one change; the object as the server returned it from an object's create or update."""
    precondition = bool(c.observed_resource_version)
    if c.action is Action.UPDATE and c.release_first:
        # Hand dropped fields back first: once their value is the old owner's again, harden's apply
        # below no longer owns them and cannot prune them. This write carries the precondition; it
        # moves the resourceVersion on, so the apply after it cannot.
        first = c.release_first
        if precondition:
            first = {**first, "metadata": {**first["metadata"], "resourceVersion": c.observed_resource_version}}
        cluster.patch(first, manager=_restorer(c), dry_run=dry_run)
        precondition = dry_run  # a dry run changed nothing, so the apply may still check it
    if c.action in (Action.CREATE, Action.UPDATE):
        body = c.body
        assert body is not None, f"{c.action.value} of {c.key.display()} without a body"  # plan.py gives each one
        if c.action is Action.UPDATE and precondition:
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": c.observed_resource_version}}
        return cluster.apply(body, manager=manager, dry_run=dry_run, force=True)
    if c.action is Action.RELEASE:
        if c.body:
            body = c.body
            if c.observed_resource_version:
                body = {**body, "metadata": {**body["metadata"], "resourceVersion": c.observed_resource_version}}
            cluster.patch(body, manager=_restorer(c), dry_run=dry_run)
            # Then let go of every field harden still co-owns (a list entry's key, a value the old
            # owner wrote back unchanged): an apply of no fields under harden's manager.
            cluster.apply({k: body[k] for k in ("apiVersion", "kind")} | {"metadata": {
                k: v for k, v in body["metadata"].items() if k in ("name", "namespace")}},
                manager=manager, dry_run=dry_run, force=False)
    elif c.action is Action.DELETE and c.observed_resource_version is not None:
        cluster.delete(c.api_version, c.key.kind, c.key.namespace, c.key.name,
                       resource_version=c.observed_resource_version, dry_run=dry_run)
    return None


def apply_plan(plan: Plan, cluster: Cluster, backend: Backend, *, parallelism: int = 8, preflight: bool = True,
               progress: Progress | None = None) -> Result:
    """Apply under the caller's lock. Raises StalePlan before writing anything if the plan is stale.
    `preflight`: dry-run every write first (step 2 above); without it a refused write stops the run
    with the writes before it applied and recorded, as `terraform apply` and `kubectl apply` leave them
    (a change of two requests, a release, may stop between them: the next plan reads it from the cluster)."""
    state = backend.read()
    check_fresh(plan, cluster, state)
    todo = list(plan.actionable)
    note = progress or (lambda *_: None)
    manager = field_manager(plan.stack)

    # Dry-run everything first: a rejection here means nothing has changed.
    stop = threading.Event()
    if preflight:
        pool = ThreadPoolExecutor(parallelism)
        try:
            dry_runs = {pool.submit(guarded, stop, _write, cluster, c, True, manager): c for c in todo}
            for done in as_completed(dry_runs):
                if not isinstance(done.exception(), NotStarted):
                    done.result()
                    note("validated", dry_runs[done])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    records = dict(state.records)
    lineage = state.lineage or str(uuid.uuid4())
    journal: list[Entry] = []
    lock = threading.Lock()
    result = Result()

    def log(changes: list[tuple[str, Record | None]], durable: bool = False) -> None:
        entries = entries_for(state, lineage, changes)
        backend.append(entries, durable=durable)
        journal.extend(entries)

    def record(done: list[tuple[Change, Obj | None]]) -> None:
        """Record writes that landed (each with what the server returned for it): one journal
        append (one fsync) for all of them."""
        with lock:
            changes: list[tuple[str, Record | None]] = []
            for c, written in done:
                if c.action in (Action.DELETE, Action.RELEASE):
                    records.pop(str(c.key), None)
                    changes.append((str(c.key), None))
                else:
                    new = record_for(c, written_in_sync(c, written, manager))
                    records[str(c.key)] = _merge_record(records.get(str(c.key)), new)
                    changes.append((str(c.key), records[str(c.key)]))
            log(changes)
            result.done.extend(c for c, _ in done)

    try:
        first: list[tuple[str, Record | None]] = []
        # Objects in sync but missing from state (a killed run wrote them, then died) are recorded too,
        # and an object the plan found in sync is recorded so (`Change.in_sync`, the resourceVersion
        # the plan read): the next plan of it needs no diff while nobody writes it.
        for c in plan.changes:
            if c.action is not Action.NOOP or (c.kind is not ChangeKind.OBJECT and str(c.key) in records):
                continue
            rec = record_for(c, c.in_sync)
            if records.get(str(c.key)) != rec:
                records[str(c.key)] = rec
                first.append((str(c.key), rec))
        # A patch's restore point (the value before harden) is recorded, durably, before the write:
        # if the write lands and the process dies before recording it, the next plan must not
        # mistake harden's value for the original.
        for c in todo:
            if c.kind is ChangeKind.PATCH and c.action is Action.UPDATE and str(c.key) not in records:
                records[str(c.key)] = replace(record_for(c), digest="pending")
                first.append((str(c.key), records[str(c.key)]))
        if first:
            log(first, durable=True)

        # The plan decided the order (`Phase`); each phase finishes before the next starts.
        phases = [[c for c in todo if c.phase is phase] for phase in Phase]
        for phase in filter(None, phases):
            pool = ThreadPoolExecutor(parallelism)
            # Each write, when it ends, is queued here. (`wait(pending, FIRST_COMPLETED)` walks every
            # pending write on each call: with 10,000 writes that was quadratic, seconds of it.)
            ended: queue.SimpleQueue[Future[Obj | None]] = queue.SimpleQueue()
            futures: dict[Future[Obj | None], Change] = {}
            try:
                # Submitted inside the try: an interrupt while submitting still stops the rest and
                # records what ran.
                for c in phase:
                    write = pool.submit(guarded, stop, _write, cluster, c, False, manager)
                    futures[write] = c
                    write.add_done_callback(ended.put)
                order = {fut: i for i, fut in enumerate(futures)}
                left = len(futures)
                # Group commit: the writes that finished while the last batch was being recorded are
                # recorded together, so the journal's fsync (2-3 ms each on a local disk) does not cap
                # apply at a few hundred writes a second (issue 10).
                while left:
                    finished = [ended.get()]
                    with contextlib.suppress(queue.Empty):
                        while True:
                            finished.append(ended.get_nowait())
                    left -= len(finished)
                    landed: list[tuple[Change, Obj | None]] = []
                    for fut in sorted(finished, key=order.__getitem__):
                        c = futures[fut]
                        try:
                            written = fut.result()
                        except NotStarted:
                            continue  # an earlier write failed
                        except HardenError as exc:
                            result.failed.append((c, exc))
                            note("failed", c)
                            continue
                        landed.append((c, written))
                    record(landed)
                    for c, _ in landed:
                        note("done", c)
            except BaseException:
                # Interrupted (Ctrl-C): start nothing new, let running writes finish, record them.
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                recorded = set(map(id, result.done))
                record([(c, fut.result()) for fut, c in futures.items()
                        if fut.done() and not fut.cancelled() and fut.exception() is None and id(c) not in recorded])
                raise
            finally:
                pool.shutdown(wait=True)
            if result.failed:
                break
    finally:
        # Compaction: once, when apply ends or is interrupted. A killed run skips it, and the next
        # read folds the journal it left instead.
        result.state = fold(state, journal)
        if journal:
            backend.write(result.state)
    return result


def _restorer(c: Change) -> str:
    """The field manager a release writes as: whoever owned the fields before harden."""
    return c.restore.manager if c.restore else f"{MANAGER}-release"


def _merge_record(old: Record | None, new: Record) -> Record:
    # The restore point of a patch is what was there before harden first touched the object.
    if old is not None and old.restore is not None and new.kind is ChangeKind.PATCH:
        return replace(new, restore=old.restore)
    return new
