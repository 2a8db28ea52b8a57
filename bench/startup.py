"""Start-up of the CLI, as a user runs it: wall and CPU seconds of separate processes.

    .venv/bin/python bench/startup.py [--repeat 10]

Measures `harden version`, `harden --help` and the offline quick-start plan
(`harden plan -f examples/stack.yaml --snapshot examples/snapshot`), and `kubectl version --client`
(the kubectl built beside the test cluster, `tests/kube/cluster.py kubectl`) for reference. CPU is
user + system of the child from wait4. It prints the medians as a Markdown table; no test asserts a
time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one process; its output is discarded."""
    start = time.perf_counter()
    # stderr to a file, not a pipe: a pipe nobody reads until exit would block a chatty child
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 2):  # plan --detailed-exitcode is not used; 2 is never expected, but not a failure
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {code}:\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def kubectl() -> str | None:
    from bench import cluster_script  # bench/ is this script's directory

    path = cluster_script().kubectl(verbose=False)
    return str(path) if path and Path(path).exists() else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "harden"
    harden = [str(exe)] if exe.exists() else [sys.executable, "-m", "harden.cli"]
    cases = [("`harden version`", [*harden, "version"]),
             ("`harden --help`", [*harden, "--help"]),
             ("`harden plan --snapshot` (quick start)",
              [*harden, "plan", "-f", "examples/stack.yaml", "--snapshot", "examples/snapshot"])]
    if k := kubectl():
        cases.append(("`kubectl version --client`", [k, "version", "--client"]))
    print("| command | wall | CPU |\n|---|---|---|")
    for label, argv in cases:
        measure(argv)  # warm the page cache and the bytecode cache
        runs = [measure(argv) for _ in range(args.repeat)]
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"| {label} | {wall:.3f} s | {cpu:.3f} s |", flush=True)


if __name__ == "__main__":
    main()
