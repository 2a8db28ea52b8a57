"""Pooled work stops at the first failure, decided in the worker (no cluster needed)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harden.parallel import NotStarted, guarded


def test_tasks_after_a_failure_are_not_started():
    stop = threading.Event()
    ran: list[int] = []

    def task(i: int) -> int:
        ran.append(i)
        if i == 1:
            raise RuntimeError("dead connection")
        return i

    # One worker: it takes task 2 the moment task 1 ends, before anyone could cancel it.
    with ThreadPoolExecutor(1) as pool:
        futures = [pool.submit(guarded, stop, task, i) for i in range(4)]
    assert futures[0].result() == 0
    with pytest.raises(RuntimeError):
        futures[1].result()
    assert all(isinstance(f.exception(), NotStarted) for f in futures[2:])
    assert ran == [0, 1]


def test_without_failures_every_task_runs():
    stop = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(guarded, stop, lambda i: i * 2, i) for i in range(6)]
    assert [f.result() for f in futures] == [0, 2, 4, 6, 8, 10] and not stop.is_set()
