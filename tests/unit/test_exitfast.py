"""exitfast: the `harden` process ends with its exit code, its output and its exit handlers, but
without freeing what it kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent("""\
        import atexit, sys
        from harden import exitfast

        class Loud:
            def __del__(self):
                print("freed", flush=True)

        exitfast.arm()
        atexit.register(lambda: print("handler ran", flush=True))  # registered later: runs first
        """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_the_code_output_and_handlers_survive_and_kept_objects_are_not_freed_one_by_one():
    r = run("""\
        exitfast.keep(Loud())
        print("partial line, no newline", end="")
        exitfast.finish(2)
        sys.exit(2)
        """)
    assert r.returncode == 2
    assert r.stdout == "partial line, no newlinehandler ran\n"


def test_an_object_not_kept_is_freed_as_usual_and_none_means_success():
    r = run("""\
        x = Loud()
        del x
        exitfast.finish(None)
        """)
    assert (r.returncode, r.stdout) == (0, "freed\nhandler ran\n")


def test_a_message_exit_is_code_1_with_its_message():
    r = run("""\
        exitfast.finish("bad input")
        sys.exit("bad input")
        """)
    assert r.returncode == 1 and "bad input" in r.stderr


def harden(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    """The console script's entry, as `harden` runs it."""
    kw = {"capture_output": True, **kw}
    return subprocess.run([sys.executable, "-c", "from harden.cli import run; run()", *args],
                          text=True, timeout=60, **kw)


def test_the_harden_command_keeps_its_exit_codes():
    ok = harden("version")
    assert ok.returncode == 0 and ok.stdout.strip()
    usage = harden("plan", "--bogus")
    assert usage.returncode == 2 and "--bogus" in usage.stderr


def test_output_that_cannot_be_written_is_exit_120_with_a_message():
    # Buffered output (PYTHONUNBUFFERED would fail the print itself, before any exit) flushed at the end.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        r = harden("version", stdout=full, capture_output=False, stderr=subprocess.PIPE, env=env)
    assert r.returncode == 120
    assert "could not be written" in r.stderr


def test_a_caller_of_main_keeps_its_own_exit():
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom harden.cli import main\ntry:\n    main()\n"
                        "except SystemExit:\n    pass\nsys.exit(5)", "version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 5 and r.stdout.strip()
