"""What the impact analysis adds to a plan, offline: no cluster, a generated snapshot.

    .venv/bin/python bench/impact.py [--namespaces 100,1000] [--repeat 3] [--workloads 3]
                                     [--scenario create|unchanged] [--profile FILE.prof]

For each size it writes a snapshot of N namespaces with --workloads Deployments each (bench.py's
`deployments()`), and the profile of bench.py (`profile()`: ten NetworkPolicies per namespace, the
first ones selecting the Deployments' pods). Scenario `create` (the default): the snapshot has no
policies, so the plan creates 10 per namespace and every pod's isolation changes; `unchanged`: the
snapshot already holds the same policies (the plan's objects exist; no flow changes).

It times `build_plan` in-process with and without the impact analysis (`with_impact`), medians of
--repeat runs after a warm-up, and prints the analysis' own stages (`summary.impact`: RBAC diff,
reachability diff, matrix; `needs.evaluate`) once. --profile writes a cProfile of one plan with
impact for `python -m pstats`. No test asserts a time; the README's numbers are this output.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import deployments, profile  # noqa: E402

from harden.engine import Request, build_plan, rendered_for  # noqa: E402
from harden.impact import needs, summary  # noqa: E402
from harden.load import select  # noqa: E402


def snapshot(d: Path, n: int, workloads: int, scenario: str) -> tuple[Path, Path]:
    """(profile file, snapshot directory) for n namespaces."""
    nss = [f"bench-{i:04d}" for i in range(n)]
    pfile = d / "bench.yaml"
    pfile.write_text(yaml.safe_dump(profile(nss)))
    snap = d / "snapshot"
    snap.mkdir()
    objs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}} for ns in nss]
    objs += deployments(nss, workloads)
    if scenario == "unchanged":
        objs += [o.body for r in rendered_for(select([str(pfile)], None, [])) for o in r.objects]
    # JSON is YAML; one `kind: List` document parses much faster than 10,000 YAML documents.
    (snap / "objects.yaml").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    return pfile, snap


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(n: int, args: argparse.Namespace) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"harden-impact-{n}-"))
    pfile, snap = snapshot(d, n, args.workloads, args.scenario)
    req = Request(profiles=(str(pfile),), snapshot=str(snap), state_dir=str(d / "state"))
    planned = build_plan(req, with_impact=True)  # warm-up: imports, caches of the loaders
    out: dict = {"namespaces": n, "objects": len(planned.after), "changes": len(planned.plan.actionable),
                 "flow changes": sum(len(g["flows"]) for g in planned.plan.impact.get("network", []))}
    for label, impact in (("without", False), ("with", True)):
        out[label] = [timed(lambda impact=impact: build_plan(req, with_impact=impact)) for _ in range(args.repeat)]
    live, after = planned.live.all() if planned.live else [], planned.after
    out["summary.impact"] = timed(lambda: summary.impact(live, after))
    out["needs.evaluate"] = timed(lambda: needs.evaluate([], live, after, planned.plan.actionable, {}))
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(build_plan, req, with_impact=True)
        path = f"{args.profile}.{n}"
        prof.dump_stats(path)
        out["profile"] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", default="100,1000", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workloads", type=int, default=3, help="Deployments per namespace")
    ap.add_argument("--scenario", choices=("create", "unchanged"), default="create")
    ap.add_argument("--profile", help="write a cProfile of one plan with impact to FILE.<namespaces>")
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, scenario {args.scenario}", flush=True)
    print("| namespaces | objects | plan without impact | plan with impact | impact adds | summary.impact | needs |")
    print("|---|---|---|---|---|---|---|")
    for n in args.namespaces:
        r = bench(n, args)
        wo, w = statistics.median(r["without"]), statistics.median(r["with"])
        print(f"| {n:,} | {r['objects']:,} | {wo:.2f} s | {w:.2f} s | {100 * (w / wo - 1):.0f}% "
              f"| {r['summary.impact']:.2f} s | {r['needs.evaluate']:.2f} s |", flush=True)
        print(f"<!-- {json.dumps(r)} -->", flush=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
