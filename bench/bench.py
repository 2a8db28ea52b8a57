"""Benchmark harden side by side with kubectl against the real test API server (tests/kube).

    .venv/bin/python bench/bench.py [--sizes 1000,10000] [--repeat 3] [--harden-apply-max 10000]
                                    [--workloads 3] [--kubeconfig FILE]

Without --kubeconfig it starts a throwaway cluster with tests/kube/cluster.py; kubectl is the one
built into the same binary from the same Kubernetes release (`cluster.py kubectl`), so both sides
talk to one server in one run. For each size N it makes N NetworkPolicies, 10 in each of N/10
namespaces (a profile with ten `forEach` objects over the namespaces), and measures, as medians of
--repeat runs, wall-clock seconds of separate processes, as a user would run them:

  - apply of N creates: `kubectl apply --server-side` vs `harden apply --auto-approve`, with its
    server-side dry run of every write first (the default) and with `--no-preflight`;
  - the no-change plan: `harden plan` vs `kubectl get networkpolicies -A -o json` and
    `kubectl diff --server-side` of the same N objects;
  - peak RSS of `harden plan` (the process's own, from wait4);
  - start-up: `harden version` vs `kubectl version --client`;
  - impact analysis: the plan with and without it (in-process medians), with --workloads
    Deployments in every namespace so the network and RBAC analysis have pods to reason about.

Above --harden-apply-max objects (default 10,000: all of them) harden's apply is skipped, to save
time when only the plan is of interest, and the objects are written by kubectl with
`--field-manager harden` instead: the same bodies under the same manager, so the plan that follows
is the same no-change plan.

It prints a Markdown table and the ratios; the README's performance section is that output. No test
asserts a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harden.engine import Request, build_plan, rendered_for  # noqa: E402
from harden.load import select  # noqa: E402

POLICIES_PER_NAMESPACE = 10


def profile(namespaces: list[str]) -> dict:
    objects = [{
        "forEach": {"parameter": "namespaces", "as": "ns"},
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"bench-p{j:02d}", "namespace": "${ns}"},
        "spec": {"podSelector": {"matchLabels": {"bench": f"p{j:02d}"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": 8080}]}]},
    } for j in range(POLICIES_PER_NAMESPACE)]
    return {
        "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
        "metadata": {"name": "bench", "title": "N NetworkPolicies",
                     "recommendation": [{"document": "bench", "section": "bench"}]},
        "parameters": [{"name": "namespaces", "type": "stringList", "default": namespaces}],
        "objects": objects,
    }


def deployments(namespaces: list[str], per: int) -> list[dict]:
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"app-{i}", "namespace": ns},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"app-{i}"}},
                      "template": {"metadata": {"labels": {"app": f"app-{i}", "bench": f"p{i:02d}"}},
                                   "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                                            "ports": [{"containerPort": 8080}]}]}}}}
            for ns in namespaces for i in range(per)]


def write_list(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


class Runner:
    def __init__(self, kubeconfig: str, kubectl: str, work: Path) -> None:
        self.kubeconfig, self.kubectl, self.work = kubeconfig, kubectl, work
        self.env = dict(os.environ, KUBECONFIG=kubeconfig)
        exe = Path(sys.executable).parent / "harden"
        self.harden = [str(exe)] if exe.exists() else [sys.executable, "-m", "harden.cli"]

    def run(self, argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
        """Wall seconds and peak RSS (KiB) of one process; its output is discarded."""
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        err = proc.stderr.read().decode() if proc.stderr else ""
        if code not in ok:
            raise SystemExit(f"{' '.join(argv[:4])} ... exited {code}:\n{err[-2000:]}")
        return elapsed, usage.ru_maxrss

    def out(self, *argv: str) -> str:
        """The standard output of a command that must succeed (not timed)."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True).stdout

    def k(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
        return self.run([self.kubectl, *args], ok)

    def h(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
        return self.run([*self.harden, *args, "--kubeconfig", self.kubeconfig], ok)


def median(runs: list[float]) -> float:
    return statistics.median(runs)


def repeat(n: int, fn: Callable[[], float], between: Callable[[], None] | None = None) -> list[float]:
    out = []
    for i in range(n):
        out.append(fn())
        if between and i < n - 1:
            between()
    return out


def bench_size(r: Runner, n: int, args: argparse.Namespace) -> dict:
    nss = [f"bench-{n}-{i:04d}" for i in range(n // POLICIES_PER_NAMESPACE)]  # per size: the last size's may still be terminating
    d = r.work / f"n{n}"
    d.mkdir()
    pfile = d / "bench.yaml"
    pfile.write_text(yaml.safe_dump(profile(nss)))
    bodies = [o.body for rr in rendered_for(select([str(pfile)], None, [])) for o in rr.objects]
    manifests = write_list(d / "policies.json", bodies)
    write_list(d / "namespaces.json", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in nss])
    r.k("apply", "--server-side", "-f", str(d / "namespaces.json"))
    if args.workloads:
        r.k("apply", "--server-side", "-f", str(write_list(d / "deployments.json", deployments(nss, args.workloads))))
    selector = "harden.dev/profile=bench"

    def delete() -> None:
        # Not `--wait=true`: kubectl then GETs each deleted object, throttled client-side to 5 per second
        # (its -v=6 log: "client-side throttling"), 200 s for 1,000 objects. NetworkPolicies have no
        # finalizers; one LIST until none is left is the same wait.
        r.k("delete", "networkpolicies", "-A", "-l", selector, "--wait=false")
        while r.out(r.kubectl, "get", "networkpolicies", "-A", "-l", selector, "-o", "name").strip():
            time.sleep(0.2)

    out: dict = {"n": n, "namespaces": len(nss)}
    print(f"\n## {n} NetworkPolicies in {len(nss)} namespaces", flush=True)
    out["kubectl apply"] = repeat(args.repeat, lambda: r.k("apply", "--server-side", "-f", str(manifests))[0], delete)
    print(f"kubectl apply --server-side: {out['kubectl apply']}", flush=True)
    delete()
    state = d / "state"
    if n <= args.harden_apply_max:
        def fresh() -> None:
            delete()
            shutil.rmtree(state, ignore_errors=True)
        out["harden apply no preflight"] = repeat(args.repeat, lambda: r.h(
            "apply", "-p", str(pfile), "--state-dir", str(state), "--auto-approve", "--no-preflight", "-o", "json")[0],
            fresh)
        print(f"harden apply --no-preflight: {out['harden apply no preflight']}", flush=True)
        fresh()
        out["harden apply"] = repeat(args.repeat, lambda: r.h("apply", "-p", str(pfile), "--state-dir", str(state),
                                                             "--auto-approve", "-o", "json")[0], fresh)
        print(f"harden apply: {out['harden apply']}", flush=True)
    else:
        r.k("apply", "--server-side", "--field-manager", "harden", "-f", str(manifests))
        out["harden apply"] = out["harden apply no preflight"] = None
    plan = [r.h("plan", "-p", str(pfile), "--state-dir", str(state), "--detailed-exitcode") for _ in range(args.repeat)]
    out["harden plan"] = [t for t, _ in plan]
    out["harden plan rss MiB"] = max(rss for _, rss in plan) / 1024
    print(f"harden plan (no changes): {out['harden plan']}, peak RSS {out['harden plan rss MiB']:.0f} MiB", flush=True)
    out["kubectl get"] = [r.k("get", "networkpolicies", "-A", "-o", "json")[0] for _ in range(args.repeat)]
    print(f"kubectl get -A -o json: {out['kubectl get']}", flush=True)
    # As harden would apply (its manager, so no conflict with itself); exit 1 would be differences.
    out["kubectl diff"] = [r.k("diff", "--server-side", "--field-manager", "harden", "-f", str(manifests), ok=(0, 1))[0] for _ in range(args.repeat)]
    print(f"kubectl diff --server-side: {out['kubectl diff']}", flush=True)
    req = Request(profiles=(str(pfile),), kubeconfig=r.kubeconfig, state_dir=str(state))
    build_plan(req, with_impact=True)  # warm-up: imports and the client are not what is compared
    for label, impact in (("plan without impact", False), ("plan with impact", True)):
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            planned = build_plan(req, with_impact=impact)
            runs.append(time.perf_counter() - t)
            assert not planned.plan.actionable, "the plan after apply must be empty"
        out[label] = runs
        print(f"{label} (in-process): {runs}", flush=True)
    r.k("delete", "namespaces", *nss, "--wait=false")
    return out


def table(results: list[dict], startup: dict) -> str:
    def cell(v: list[float] | None) -> str:
        return "skipped" if v is None else f"{median(v):.2f} s"

    rows = [("`harden plan`, no changes", "harden plan"), ("`kubectl get networkpolicies -A -o json`", "kubectl get"),
            ("`kubectl diff --server-side`", "kubectl diff"), ("`harden apply`, N creates", "harden apply"),
            ("`harden apply --no-preflight`, N creates", "harden apply no preflight"),
            ("`kubectl apply --server-side`, N creates", "kubectl apply"),
            ("plan without impact analysis (in-process)", "plan without impact"),
            ("plan with impact analysis (in-process)", "plan with impact")]
    head = "| operation | " + " | ".join(f"{r['n']:,} objects" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r[key]) for r in results) + " |")
    lines.append("| peak RSS of `harden plan` | " + " | ".join(f"{r['harden plan rss MiB']:.0f} MiB" for r in results) + " |")
    lines.append(f"\nStart-up: `harden version` {median(startup['harden']):.3f} s, "
                 f"`kubectl version --client` {median(startup['kubectl']):.3f} s (medians).\n")
    lines.append("Ratios (medians):\n")
    for r in results:
        m = {k: median(v) for k, v in r.items() if isinstance(v, list) and v}
        lines.append(f"- {r['n']:,} objects: plan / `kubectl get` = {m['harden plan'] / m['kubectl get']:.2f}; "
                     f"`kubectl diff` / plan = {m['kubectl diff'] / m['harden plan']:.1f}; "
                     + (f"`kubectl apply` / harden apply = {m['kubectl apply'] / m['harden apply']:.2f} "
                        f"(--no-preflight {m['kubectl apply'] / m['harden apply no preflight']:.2f}); "
                        if "harden apply" in m else "harden apply skipped; ")
                     + f"impact adds {100 * (m['plan with impact'] / m['plan without impact'] - 1):.0f}%")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        grow = lambda k: median(b[k]) / median(a[k]) if a.get(k) and b.get(k) else None  # noqa: E731
        parts = [f"{k} {g:.1f}x" for k in ("harden plan", "harden apply", "harden apply no preflight", "kubectl get",
                                           "kubectl apply")
                 if (g := grow(k)) is not None]
        lines.append(f"- growth {a['n']:,} -> {b['n']:,}: " + ", ".join(parts))
    return "\n".join(lines)


def run(kubeconfig: str, kubectl: str, args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="harden-bench-"))
    r = Runner(kubeconfig, kubectl, work)
    startup = {"harden": [r.run([*r.harden, "version"])[0] for _ in range(max(args.repeat, 5))],
               "kubectl": [r.k("version", "--client")[0] for _ in range(max(args.repeat, 5))]}
    results = [bench_size(r, n, args) for n in args.sizes]
    print("\n" + table(results, startup))
    (work / "results.json").write_text(json.dumps({"startup": startup, "results": results}, indent=1))
    print(f"\nraw numbers: {work / 'results.json'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--harden-apply-max", type=int, default=10_000,
                    help="above this many objects, kubectl writes them for harden (see the module docstring)")
    ap.add_argument("--workloads", type=int, default=3, help="Deployments per namespace, for the impact analysis")
    ap.add_argument("--kubeconfig")
    args = ap.parse_args()
    kubectl = str(cluster_script().kubectl())
    if args.kubeconfig:
        run(args.kubeconfig, kubectl, args)
        return
    with throwaway_cluster("harden-bench-kube-") as (_, info):
        run(info["kubeconfigs"]["admin"], kubectl, args)


def cluster_script() -> ModuleType:
    """tests/kube/cluster.py (build, up, down, kubectl), loaded by path: it is a script, not a package."""
    spec = importlib.util.spec_from_file_location("cluster", REPO / "tests/kube/cluster.py")
    assert spec is not None and spec.loader is not None
    cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cluster)
    return cluster


@contextmanager
def throwaway_cluster(prefix: str) -> Iterator[tuple[Path, dict]]:
    """A fresh test cluster for one benchmark run (its directory and cluster.json), stopped after."""
    cluster = cluster_script()
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d, cluster.up(d, watch_pid=os.getpid())
    finally:
        cluster.down(d, quiet=True)


if __name__ == "__main__":
    main()
