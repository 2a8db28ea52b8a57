"""A soak of randomized, fault-injected applies and destroys (issue 9's "200 runs").

One stack of a few hundred objects on the quick-start Argo Workflows install: the examples stack,
with the profiles that take `workflowNamespaces` also covering N workflow namespaces (14 objects
each: NetworkPolicies, a service account, its token Secret, Roles and bindings; 20 namespaces make
311 objects), and the install's own objects patched (argo-server's two ClusterRoles and its
Deployment, the controller ConfigMap), so destroy has restore points to hand back. State lives in the cluster
(`kubernetes://`) unless `--backend file`, so state writes, journal batches and the Lease go
through the faults too.

Each run is, by a seeded RNG, an apply or a destroy (usually the opposite of the last, so most runs
write), through `faultproxy.FaultProxy` with a fault mix and rate drawn for that run; some runs
also stall one write (a half-open connection), which `--request-timeout` must end. After each run:

- the exit code is 0 or 1, and the process ended within `run_timeout` (else it is a hang);
- the state is valid: read with harden's own backend (journal folded in), and after exit 0 the
  journal is compacted (nothing left over);
- after exit 1, the same command re-run without faults exits 0 (with `--lock-timeout`, in case the
  failed run could not release its Lease);
- converged: after an apply, `plan --detailed-exitcode` exits 0; after a destroy, state holds no
  record, no object labelled with the stack is left, and every patched field has its upstream
  value and owner again (`test_lost_state._patched`), else a restore point was lost.

Which request meets which fault depends on thread timing, so the seed fixes the sequence of
operations and fault mixes, not every fault's request.

    python tests/integration/soak.py --runs 200 --seed 9 [--namespaces 20] [--kubeconfig ADMIN]

Without `--kubeconfig` it starts the test cluster of `tests/kube/` for the run. It prints one
line per run and the counts as JSON at the end; exit 1 if any run failed its checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: the integration helpers are plain modules here
    sys.path.insert(0, str(HERE))

import yaml  # noqa: E402
from conftest import CLUSTER_PY, KubeCluster  # noqa: E402
from faultproxy import FAULTS, FaultProxy, Seen  # noqa: E402
from kubernetes import client  # noqa: E402
from kubeutil import CLI_ENV, REPO, harden_cmd, load_script, require_fixture  # noqa: E402
from test_lost_state import _patched  # noqa: E402

from harden.fieldpath import get_at  # noqa: E402
from harden.kube import KubeClient  # noqa: E402
from harden.mergekeys import BUILTIN  # noqa: E402
from harden.model import LABEL_STACK, MANAGER  # noqa: E402
from harden.ownership import owned_by  # noqa: E402
from harden.state import FileBackend  # noqa: E402
from harden.statebackend_kube import KubeBackend  # noqa: E402

NS = "argo"
STACK_NAME = "soak"
WF_PREFIX = "soak-wf-"
# The examples stack's profiles that take `workflowNamespaces`: each workflow namespace gets its
# default deny and allowances, artifact egress, and a workflow service account with its executor
# Role, token Secret and binding (without these the plan refuses: workflow pods would break).
WORKFLOW_NS_PROFILES = ("namespace-isolation", "artifact-egress", "workflow-service-account", "workflow-pod-defaults")
# Every kind the stack creates objects of, to find leftovers after a destroy.
CREATED_KINDS = (("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "ServiceAccount"), ("v1", "Secret"),
                 ("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "Role"),
                 ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                 ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"))


@dataclass
class Config:
    runs: int = 200
    seed: int = 9
    namespaces: int = 20          # workflow namespaces: 14 objects each
    backend: str = "kubernetes"   # or "file"
    max_rate: float = 0.15        # a run's total fault probability per request is drawn in [0.02, max_rate]
    stall_chance: float = 0.15    # share of runs in which one write stalls
    request_timeout: float = 3.0  # --request-timeout: what ends a stall
    run_timeout: float = 300.0    # a run still going after this is a hang
    flip: float = 0.75            # chance a run does the opposite of the last one


@dataclass
class Counts:
    runs: int = 0
    applies: int = 0
    destroys: int = 0
    converged_first_try: int = 0
    exit1_then_converged: int = 0
    failed: int = 0               # a run whose checks failed (any kind), see `failures`
    hangs: int = 0
    lost_restore_points: int = 0
    bad_exit_codes: int = 0
    invalid_state: int = 0
    journal_left_after_success: int = 0
    stalls: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    objects: int = 0              # records in state after a converged apply
    longest_run_seconds: float = 0.0  # the slowest fault-injected run, start to exit
    wall_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, kube: KubeCluster, workdir: Path, cfg: Config, log: Callable[[str], None] = print) -> None:
        self.kube, self.dir, self.cfg, self.log = kube, workdir, cfg, log
        self.rng = random.Random(cfg.seed)
        self.counts = Counts()
        self.proxy: FaultProxy | None = None
        self.stack_file = workdir / "stack.yaml"
        self.upstream: dict | None = None
        self.patches: list[dict] = []    # the fields the stack patches on the install's objects
        self.originals: dict | None = None
        self.state_ns = f"harden-soak-{uuid.uuid4().hex[:8]}"
        self.namespaces: list[str] = []  # the workflow namespaces
        self.applied = False  # what the last converged run left: applied (True) or destroyed

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        kube = self.kube
        self.dir.mkdir(parents=True, exist_ok=True)
        kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
        kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), NS)
        wanted = self.namespaces = [f"{WF_PREFIX}{i:03d}" for i in range(self.cfg.namespaces)]
        for name in [self.state_ns, *wanted]:
            try:
                kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
                    name=name, labels={"harden.test/soak": "true"})))
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
        stack = yaml.safe_load((REPO / "examples/stack.yaml").read_text())
        stack["metadata"] = {"name": STACK_NAME}
        for entry in stack["profiles"]:
            if entry["profile"] in WORKFLOW_NS_PROFILES:
                # The install's namespace stays one (the profiles' expectations are about it).
                entry.setdefault("with", {})["workflowNamespaces"] = [NS, *wanted]  # a new list: no YAML aliases
        self.stack_file.write_text(yaml.safe_dump(stack))
        self.upstream = _patched(kube)
        # The restore points: every field the plan patches on an existing object, before harden.
        r = self.harden("plan", "-o", "json")
        assert r is not None and r.returncode == 0, _tail(r) if r else "plan hung"
        self.patches = [c for c in json.loads(r.stdout)["changes"] if c["kind"] == "patch"]
        assert self.patches, "the stack patches nothing: no restore point to check"
        self.originals = self.restore_points()
        self.proxy = FaultProxy(kube.kubeconfig, self.dir / "proxy", seed=self.cfg.seed, per_request_cap=2).start()
        self.proxy.stall_seconds = self.cfg.request_timeout * 4
        self.proxied = self.proxy.kubeconfig(self.dir / "proxied.kubeconfig")

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for name in [self.state_ns, *self.namespaces]:  # deletion started, not awaited
            self.kube.delete_namespace(name)

    # -- one harden process ----------------------------------------------------------------------
    def harden(self, *args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess | None:
        """Run harden; None if it had to be killed (a hang)."""
        state = f"kubernetes://{self.state_ns}" if self.cfg.backend == "kubernetes" else f"file://{self.dir / 'state'}"
        cmd = harden_cmd(*args, "-f", str(self.stack_file), "--state", state,
                         "--kubeconfig", kubeconfig or self.kube.kubeconfig)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=CLI_ENV,
                                  timeout=self.cfg.run_timeout)
        except subprocess.TimeoutExpired:
            return None

    def write(self, op: str, *, faulty: bool) -> subprocess.CompletedProcess | None:
        more = ["--lock-duration", "5s", "--lock-timeout", "30s", "--auto-approve",
                "--request-timeout", f"{self.cfg.request_timeout:g}s" if faulty else "60s"]
        return self.harden(op, *more, kubeconfig=self.proxied if faulty else None)

    # -- checks ----------------------------------------------------------------------------------
    def backend(self):
        if self.cfg.backend == "kubernetes":
            return KubeBackend(KubeClient(self.kube.kubeconfig), self.state_ns, STACK_NAME)
        return FileBackend(self.dir / "state", STACK_NAME)

    def state_problem(self, after_success: bool) -> str | None:
        """None if the state is valid (and, after exit 0, its journal compacted)."""
        backend = self.backend()
        try:
            backend.read()
        except Exception as exc:  # noqa: BLE001 - any failure to read it is the finding
            self.counts.invalid_state += 1
            return f"state unreadable: {type(exc).__name__}: {exc}"
        if after_success:
            left = (backend._journal() if isinstance(backend, KubeBackend)
                    else [backend.journal_path] if backend.journal_path.exists() else [])
            if left:
                self.counts.journal_left_after_success += 1
                return f"journal not compacted after exit 0: {len(left)} batch(es) left"
        return None

    def restore_points(self) -> dict[str, dict]:
        """Per patched object: each patched field's value and the managers owning it (harden's
        aside), the harden managers left on the object, and its `harden.dev/` annotations."""
        out = {}
        for c in self.patches:
            res = self.kube.dynamic.resources.get(api_version=c["apiVersion"], kind=c["key"]["kind"])
            live = res.get(name=c["key"]["name"], namespace=c["key"]["namespace"] or None).to_dict()
            managers = sorted({e["manager"] for e in live["metadata"].get("managedFields") or []})
            out[c["address"]] = {
                "fields": {path: {"value": get_at(live, path),
                                  "owners": [m for m in managers if not _ours(m) and owned_by(live, [path], m, BUILTIN)]}
                           for path in c["fieldPaths"]},
                "harden-managers": [m for m in managers if _ours(m)],
                "annotations": sorted(k for k in live["metadata"].get("annotations") or {} if k.startswith("harden.dev/")),
            }
        return out

    def leftovers(self) -> list[str]:
        found = []
        for api_version, kind in CREATED_KINDS:
            res = self.kube.dynamic.resources.get(api_version=api_version, kind=kind)
            for o in res.get(label_selector=f"{LABEL_STACK}={STACK_NAME}").to_dict()["items"]:
                meta = o["metadata"]
                if not meta.get("deletionTimestamp"):
                    found.append(f"{kind}/{meta.get('namespace', '')}/{meta['name']}")
        return found

    def converged(self, op: str) -> str | None:
        """None if the cluster is where `op` should have left it."""
        if op == "apply":
            r = self.harden("plan", "--detailed-exitcode")
            if r is None or r.returncode != 0:
                return "plan after apply: " + ("hung" if r is None else f"exit {r.returncode}: {_tail(r)}")
            self.counts.objects = len(self.backend().read().records)
            if self.restore_points() == self.originals:  # else the destroy check below proves nothing
                return "the patched fields look untouched after apply"
            return None
        records = self.backend().read().records
        if records:
            return f"state still holds {len(records)} record(s) after destroy"
        left = self.leftovers()
        if left:
            return f"{len(left)} object(s) left after destroy, e.g. {left[:3]}"
        now, points = _patched(self.kube), self.restore_points()
        if now != self.upstream or points != self.originals:
            self.counts.lost_restore_points += 1
            assert self.originals is not None and self.upstream is not None
            diff = {k: (self.upstream.get(k), now.get(k)) for k in now if now.get(k) != self.upstream.get(k)}
            diff |= {k: (self.originals.get(k), v) for k, v in points.items() if v != self.originals.get(k)}
            return f"restore point lost: {json.dumps(diff)[:1500]}"
        return None

    # -- the soak --------------------------------------------------------------------------------
    def draw_faults(self) -> tuple[dict[str, float], bool]:
        kinds = self.rng.sample(FAULTS, self.rng.randint(1, len(FAULTS)))
        total = self.rng.uniform(0.02, self.cfg.max_rate)
        weights = [self.rng.random() + 0.1 for _ in kinds]
        rates = {k: total * w / sum(weights) for k, w in zip(kinds, weights, strict=True)}
        return rates, self.rng.random() < self.cfg.stall_chance

    def one(self, i: int) -> None:
        assert self.proxy is not None
        c = self.counts
        last = "apply" if self.applied else "destroy"
        other = "destroy" if self.applied else "apply"
        op = other if self.rng.random() < self.cfg.flip else last
        rates, stall = self.draw_faults()
        after = self.rng.randint(1, 60)  # the stalled write: the first real write after this many
        seen: list[Seen] = []

        def stall_rule(s: Seen) -> bool:
            if not s.write or s.dry_run or len(seen) > after:
                return False
            seen.append(s)
            return len(seen) > after

        self.proxy.configure(rates=rates, stall=stall_rule if stall else None)
        t0 = time.monotonic()
        r = self.write(op, faulty=True)
        took = time.monotonic() - t0
        c.longest_run_seconds = max(c.longest_run_seconds, round(took, 1))
        injected = dict(self.proxy.injected)
        if self.proxy.first_stall is not None:
            injected["stall"] = 1
        self.proxy.configure()
        c.runs += 1
        c.applies += op == "apply"
        c.destroys += op == "destroy"
        for k, v in injected.items():
            c.faults[k] = c.faults.get(k, 0) + v
        c.stalls += injected.get("stall", 0)

        outcome, problem = "", None
        if r is None:
            c.hangs += 1
            problem, outcome = f"hung (no exit in {self.cfg.run_timeout:g}s)", "hang"
        elif r.returncode not in (0, 1):
            c.bad_exit_codes += 1
            problem, outcome = f"exit {r.returncode}: {_tail(r)}", f"exit {r.returncode}"
        else:
            problem = self.state_problem(after_success=r.returncode == 0)
            if problem is None and r.returncode == 0:
                problem = self.converged(op)
                outcome = "converged"
                if problem is None:
                    c.converged_first_try += 1
            elif problem is None:
                outcome = "exit 1, re-run"
                again = self.write(op, faulty=False)
                if again is None or again.returncode != 0:
                    problem = "re-run without faults: " + ("hung" if again is None
                                                           else f"exit {again.returncode}: {_tail(again)}")
                else:
                    problem = self.state_problem(after_success=True) or self.converged(op)
                    if problem is None:
                        c.exit1_then_converged += 1
        if problem is None:
            self.applied = op == "apply"
        else:
            c.failed += 1
            c.failures.append(f"run {i} ({op}): {problem}")
            # Start the next run from a known place: converge without faults.
            self.write(op, faulty=False)
            self.applied = op == "apply"
        mix = ",".join(f"{k}={v:.3f}" for k, v in sorted(rates.items())) + (",stall" if stall else "")
        first_error = "" if r is None or r.returncode == 0 else _first_error(r)
        self.log(f"run {i:3d} {op:7s} {took:6.1f}s {outcome:15s} faults {json.dumps(injected, sort_keys=True)} "
                 f"mix {mix}{' | ' + first_error if first_error else ''}{' | FAILED: ' + problem if problem else ''}")

    def run(self) -> Counts:
        t0 = time.monotonic()
        for i in range(self.cfg.runs):
            self.one(i)
        # End destroyed, with every restore point handed back.
        if self.applied:
            r = self.write("destroy", faulty=False)
            problem = ("final destroy: " + ("hung" if r is None else f"exit {r.returncode}")
                       if r is None or r.returncode != 0 else self.converged("destroy"))
            if problem:
                self.counts.failed += 1
                self.counts.failures.append(problem)
        self.counts.wall_seconds = round(time.monotonic() - t0, 1)
        return self.counts


def _ours(manager: str) -> bool:
    return manager == MANAGER or manager.startswith(f"{MANAGER}-")


def _tail(r: subprocess.CompletedProcess) -> str:
    return " ".join((r.stderr or r.stdout).split())[-400:]


def _first_error(r: subprocess.CompletedProcess) -> str:
    return next((line.strip()[:200] for line in r.stderr.splitlines() if line.startswith("Error")), _tail(r)[:200])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=Config.runs)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--namespaces", type=int, default=Config.namespaces)
    p.add_argument("--backend", choices=("kubernetes", "file"), default=Config.backend)
    p.add_argument("--request-timeout", type=float, default=Config.request_timeout)
    p.add_argument("--kubeconfig", help="an admin kubeconfig of a running cluster (default: start the test cluster)")
    p.add_argument("--json", help="also write the counts to this file")
    a = p.parse_args(argv)
    cfg = Config(runs=a.runs, seed=a.seed, namespaces=a.namespaces, backend=a.backend,
                 request_timeout=a.request_timeout)
    with tempfile.TemporaryDirectory(prefix="harden-soak-") as tmp:
        work = Path(tmp)
        cluster = None
        if a.kubeconfig:
            kube = KubeCluster(kubeconfig=a.kubeconfig)
        else:
            cluster = load_script("harden_test_kube_cluster", CLUSTER_PY)
            info = cluster.up(work / "kube", watch_pid=os.getpid())
            kube = KubeCluster(kubeconfig=info["kubeconfigs"]["admin"], info=info)
        soak = Soak(kube, work / "soak", cfg, log=lambda line: print(line, flush=True))
        try:
            soak.setup()
            counts = soak.run()
        finally:
            soak.close()
            if cluster is not None:
                cluster.down(work / "kube", quiet=True)
    out = asdict(counts)
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
