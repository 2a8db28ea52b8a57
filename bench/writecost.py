"""What one write costs the control plane: CPU seconds of kube-apiserver and etcd per kind of request.

    .venv/bin/python bench/writecost.py [--count 2000] [--parallelism 8]

Against a throwaway test cluster (tests/kube, like bench.py), it creates --count NetworkPolicies
(10 per namespace) in four ways, each through harden's own client edge (`harden.kube.KubeClient`)
from --parallelism threads: a server-side apply (what `harden apply` sends), the same as a server
dry run (its preflight), a plain POST create (an Update operation in managedFields, which harden
does not use: later applies could not prune what it set), and kubectl's serial
`apply --server-side` of the same objects for reference. For each it prints wall seconds and the
CPU seconds of kube-apiserver, etcd and the client, read from /proc before and after. The API
server's and etcd's CPU per write, over the machine's cores, is the floor under any client's apply
time when they share the machine; no test asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cluster_script, throwaway_cluster  # noqa: E402  (bench/ is the script's directory)
from harden.kube import KubeClient  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def policy(ns: str, name: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": name}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": 8080}]}]}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--parallelism", type=int, default=8)
    args = ap.parse_args()
    kubectl = str(cluster_script().kubectl())
    with throwaway_cluster("harden-writecost-") as (d, info):
        pids = json.loads((d / "pids.json").read_text())
        measure(KubeClient(info["kubeconfigs"]["admin"]), kubectl, info["kubeconfigs"]["admin"], pids, args)


def measure(kc: KubeClient, kubectl: str, kubeconfig: str, pids: dict[str, int], args: argparse.Namespace) -> None:
    namespaces = [f"wc-{i:04d}" for i in range(max(1, args.count // 10))]
    ns_list = {"apiVersion": "v1", "kind": "List",
               "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]}
    subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"],
                   input=json.dumps(ns_list), text=True, check=True, capture_output=True)

    def bodies(tag: str) -> list[dict]:
        return [policy(n, f"{tag}-{j}") for n in namespaces for j in range(10)][:args.count]

    res = kc.resource("networking.k8s.io/v1", "NetworkPolicy")

    def post(body: dict) -> None:
        # Through the same transport as harden's writes (KubeClient._send), to the collection's URL.
        request = kc.api.param_serialize("POST", res.path(namespace=body["metadata"]["namespace"]),
                                         query_params=[("fieldManager", "harden")], body=body,
                                         auth_settings=["BearerToken"], header_params={
                                             "Content-Type": "application/json", "Accept": "application/json"})
        response = kc.api.call_api(*request)
        response.read()
        assert response.status == 201, response.data

    ways: list[tuple[str, Callable[[dict], object] | None]] = [
        ("server-side apply (harden apply)", lambda b: kc.apply(b, manager="harden")),
        ("server-side apply, dry run (harden's preflight)", lambda b: kc.apply(b, manager="harden", dry_run=True)),
        ("POST create", post),
        ("kubectl apply --server-side (serial)", None),
    ]
    print(f"{args.count} NetworkPolicies, parallelism {args.parallelism}, {os.cpu_count()} cores\n")
    print("| request | wall | kube-apiserver CPU | etcd CPU | client CPU | API server + etcd per write |")
    print("|---|---|---|---|---|---|")
    for i, (label, write) in enumerate(ways):
        items = bodies(f"w{i}")
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        start, own = time.perf_counter(), time.process_time()
        if write is None:
            subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"],
                           input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                           text=True, capture_output=True, check=True)
            client: float | None = None
        else:
            with ThreadPoolExecutor(args.parallelism) as pool:
                list(pool.map(write, items))
            client = time.process_time() - own
        wall = time.perf_counter() - start
        used = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
        server = used["kube-apiserver"] + used["etcd"]
        shown = "(kubectl)" if client is None else f"{client:.2f} s"
        print(f"| {label} | {wall:.2f} s | {used['kube-apiserver']:.2f} s | {used['etcd']:.2f} s | {shown} | "
              f"{1000 * server / len(items):.2f} ms |", flush=True)


if __name__ == "__main__":
    main()
