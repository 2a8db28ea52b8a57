"""exitfast: end the `harden` process without freeing, one by one, what it built.

A plan of 10,000 objects holds about a million small dicts, lists and strings. Freeing them when
the command returns, then tearing the interpreter down, was a tenth of a no-change plan (on the
10,000-policy benchmark, bench/: 1.20 s with it, 1.07 s without, medians of 9 on one cluster): the
operating system frees the whole process at once. So the `harden` console script (`cli.run`, and
only it: never a test or a library caller) keeps what a command built until the end, and its last
exit handler ends the process with `os._exit`,
after the other exit handlers have run (the Kubernetes client's removes the certificate files it
wrote) and after Python has joined every thread, with the output flushed; output that cannot be
written (a full disk) is exit code 120 with a message, as Python itself exits then. This is what
mypy's `--fast-exit` does, for the same reason. `cli.run` never hands control back; a caller of
`cli.main` keeps its own exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_kept: list[object] | None = None
_code: int = 0


def arm() -> None:
    """From now on `keep` keeps, and the process ends with `finish`'s code, without teardown.
    Exit handlers run last-registered first, so this one, registered at start, runs last."""
    global _kept
    _kept = []
    atexit.register(_end)


def keep(obj: object) -> None:
    """Keep `obj` until the process ends (only once armed; otherwise it is freed as usual)."""
    if _kept is not None:
        _kept.append(obj)


def finish(code: object) -> None:
    """The exit code the process ends with: SystemExit's code, as Python would turn it into one."""
    global _code
    _code = code if isinstance(code, int) else (0 if code is None else 1)


def _end() -> None:
    code = _code
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        # What Python does when the output cannot be written at exit: say so, exit 120.
        with contextlib.suppress(OSError, ValueError):
            print(f"harden: the output could not be written: {exc}", file=sys.stderr)
        code = 120
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
