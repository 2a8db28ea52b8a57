"""Bounded parallel work that stops at the first failure.

Reads (observe) and writes (apply) run in a thread pool. When one task fails, the rest must not
start: against a dead connection every task would wait out its own request timeout, batch after
batch. Cancelling the pending futures from the caller is not enough, because a pool thread takes
its next item the moment its task ends, before the caller hears of the failure; so each task
checks a shared `stop` event itself, and a failing task sets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotStarted(Exception):
    """The task was not started because an earlier task in the same pool failed."""


def guarded(stop: threading.Event, fn: Callable[..., T], *args: object) -> T:
    if stop.is_set():
        raise NotStarted()
    try:
        return fn(*args)
    except BaseException:
        stop.set()
        raise
