"""What the impact analysis adds to a plan, offline: no cluster, a generated snapshot.

    .venv/bin/python bench/impact.py [--namespaces 100,1000] [--repeat 3] [--workloads 3]
                                     [--scenario create|unchanged] [--yaml] [--profile FILE.prof]

For each size it writes a snapshot of N namespaces with --workloads Deployments each (bench.py's
`deployments()`), and the profile of bench.py (`profile()`: ten NetworkPolicies per namespace, the
first ones selecting the Deployments' pods). Scenario `create` (the default): the snapshot has no
policies, so the plan creates 10 per namespace and every pod's isolation changes; `unchanged`: the
snapshot already holds the same policies (the plan's objects exist; no flow changes).

The snapshot is one JSON file, read with `json` as a cluster's LIST is (observe.py parses each LIST
page as raw JSON): the plan compared against is then the one a cluster would give, not one spent in
the line-tracking YAML loader of `--snapshot`, which at 1,000 namespaces is 80% of the plan and
would shrink the ratio. --yaml reads it through that loader instead, as `harden plan --snapshot` does.

It times `build_plan` in-process with and without the impact analysis (`with_impact`), CPU and
wall-clock medians of --repeat runs after a warm-up, and the stages once: the security impact
(`summary.impact`: RBAC diff, reachability diff, matrix) and the indexing of both states that the
needs (every plan) and the security impact share. --profile writes a cProfile of one plan with
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

import harden.observe  # noqa: E402
from bench import deployments, profile  # noqa: E402
from harden.engine import Request, build_plan, rendered_for  # noqa: E402
from harden.impact import needs, summary  # noqa: E402
from harden.load import select  # noqa: E402
from harden.yamlsrc import Document  # noqa: E402


def read_json(path: str | Path) -> list[Document]:
    """The snapshot file as one document, parsed as JSON (what a cluster's LIST costs)."""
    return [Document(json.loads(Path(path).read_text()), str(path), {})]


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


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. On a shared machine the CPU time is the steadier number."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(n: int, args: argparse.Namespace) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"harden-impact-{n}-"))
    pfile, snap = snapshot(d, n, args.workloads, args.scenario)
    req = Request(profiles=(str(pfile),), snapshot=str(snap), state_dir=str(d / "state"))
    planned = build_plan(req, with_impact=True)  # warm-up: imports, caches of the loaders
    out: dict = {"namespaces": n, "objects": len(planned.after), "changes": len(planned.plan.actionable),
                 "flow changes": sum(len(g["flows"]) for g in planned.plan.impact.get("network", []))}
    for label, impact in (("without", False), ("with", True)):
        out[label] = [timed(lambda impact=impact: build_plan(req, with_impact=impact)) for _ in range(args.repeat)]
    # The stages, as the engine runs them: both states indexed once (for the needs, in every plan),
    # then the security impact on those indexes (only with impact).
    live, after = planned.live.all() if planned.live else [], planned.after
    out["index states"] = timed(lambda: (needs.State(live), needs.State(after)))[1]
    b, a = needs.State(live), needs.State(after)
    out["security impact"] = timed(lambda: summary.impact(live, after, rbac_indexes=(b.rbac, a.rbac),
                                                          networks=(b.net, a.net)))[1]
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
    ap.add_argument("--yaml", action="store_true", help="read the snapshot with the YAML loader of --snapshot")
    args = ap.parse_args()
    if not args.yaml:
        harden.observe.load_file = read_json  # type: ignore[assignment]
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, scenario {args.scenario}, "
          f"snapshot read as {'YAML' if args.yaml else 'JSON'}", flush=True)
    print("CPU seconds, medians (wall-clock medians in brackets)\n")
    print("| namespaces | objects | plan without impact | plan with impact | impact adds "
          "| of which the security impact | indexing both states (every plan) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.namespaces:
        r = bench(n, args)
        med = {k: (statistics.median(t[1] for t in r[k]), statistics.median(t[0] for t in r[k]))
               for k in ("without", "with")}
        (wo, wo_wall), (w, w_wall) = med["without"], med["with"]
        print(f"| {n:,} | {r['objects']:,} | {wo:.2f} s ({wo_wall:.2f}) | {w:.2f} s ({w_wall:.2f}) "
              f"| {100 * (w / wo - 1):.0f}% ({100 * (w_wall / wo_wall - 1):.0f}%) "
              f"| {r['security impact']:.2f} s | {r['index states']:.2f} s |", flush=True)
        print(f"<!-- {json.dumps(r)} -->", flush=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
