"""Benchmark harden's plan and apply against the real test API server (tests/kube).

    .venv/bin/python bench/bench.py [--objects 200] [--kubeconfig FILE]

Without --kubeconfig it starts a throwaway cluster with tests/kube/cluster.py. It renders a
synthetic profile that owns N NetworkPolicies (forEach over N names) and measures, in wall-clock
seconds: the first plan (N creates), apply at parallelism 1 and 8 (destroying in between), the
no-op plan after apply, and how many LIST and write requests each phase made. Numbers go in the
README; no test asserts a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harden import kube as kube_edge  # noqa: E402
from harden.apply import apply_plan  # noqa: E402
from harden.engine import Request, build_plan  # noqa: E402

COUNTS = {"list": 0, "apply": 0, "delete": 0}


def _count(name, fn):
    def wrapper(self, *a, **kw):
        COUNTS[name] += 1
        return fn(self, *a, **kw)
    return wrapper


kube_edge.KubeClient.list = _count("list", kube_edge.KubeClient.list)
kube_edge.KubeClient.apply = _count("apply", kube_edge.KubeClient.apply)
kube_edge.KubeClient.delete = _count("delete", kube_edge.KubeClient.delete)


def profile(n: int) -> dict:
    return {
        "apiVersion": "harden.dev/v1alpha1", "kind": "Profile",
        "metadata": {"name": "bench", "title": "N NetworkPolicies",
                     "recommendation": [{"document": "bench", "section": "bench"}]},
        "parameters": [{"name": "names", "type": "stringList", "default": [f"p{i:04d}" for i in range(n)]},
                       {"name": "namespace", "type": "namespace", "default": "bench"}],
        "objects": [{
            "forEach": {"parameter": "names", "as": "item"},
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "bench-${item}", "namespace": "${namespace}"},
            "spec": {"podSelector": {"matchLabels": {"bench": "${item}"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": 8080}]}]},
        }],
    }


def timed(label: str, fn, results: list):
    for k in COUNTS:
        COUNTS[k] = 0
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    results.append((label, dt, dict(COUNTS)))
    print(f"{label:<38} {dt:7.2f} s   lists={COUNTS['list']:<3} applies={COUNTS['apply']:<4} "
          f"deletes={COUNTS['delete']}", flush=True)
    return out


def run(kubeconfig: str, n: int) -> list:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
    except client.ApiException as e:
        if e.status != 409:
            raise
    work = Path(tempfile.mkdtemp(prefix="harden-bench-"))
    pfile = work / "bench.yaml"
    pfile.write_text(yaml.safe_dump(profile(n)))
    results: list = []
    for parallelism in (1, 8):
        req = Request(profiles=(str(pfile),), kubeconfig=kubeconfig, state_dir=str(work / f"state{parallelism}"))
        planned = timed(f"plan, {n} to add", lambda: build_plan(req, with_impact=False), results)
        timed(f"apply {n} creates, parallelism {parallelism}",
              lambda: apply_plan(planned.plan, planned.client, planned.backend, parallelism=parallelism), results)
        timed("plan after apply (no changes)", lambda: build_plan(req, with_impact=False), results)
        destroy = build_plan(req, destroy=True, with_impact=False)
        timed(f"destroy {n}, parallelism {parallelism}",
              lambda: apply_plan(destroy.plan, destroy.client, destroy.backend, parallelism=parallelism), results)
    snap = Request(stack_file=str(REPO / "examples/stack.yaml"), snapshot=str(REPO / "examples/snapshot"),
                   state_dir=str(work / "snap"))
    timed("offline plan of examples/stack.yaml (with impact)", lambda: build_plan(snap), results)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--kubeconfig")
    args = ap.parse_args()
    if args.kubeconfig:
        run(args.kubeconfig, args.objects)
        return
    spec = importlib.util.spec_from_file_location("cluster", REPO / "tests/kube/cluster.py")
    cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cluster)
    d = Path(tempfile.mkdtemp(prefix="harden-bench-kube-"))
    try:
        info = cluster.up(d, watch_pid=os.getpid())
        run(info["kubeconfigs"]["admin"], args.objects)
    finally:
        cluster.down(d, quiet=True)


if __name__ == "__main__":
    main()
