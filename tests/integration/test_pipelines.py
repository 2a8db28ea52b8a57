"""harden apply in real pipelines: state and lock in the cluster (`kubernetes://`), several runners
with checkouts of their own, runners killed with -9, and bad state locations.

Every runner is a separate `harden` process whose working directory is its own copy of the
examples; they share nothing but the cluster. A small stack (a patch of argo-server's ClusterRole,
one of the controller ConfigMap, a Role harden creates) keeps the 50 kills within minutes. Every
test ends with `destroy`, so later tests see the upstream install; the last kill test checks that
the patched fields are back to their upstream values and owners.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from faultproxy import FaultProxy
from kubernetes import client
from kubeutil import CLI_ENV, require_fixture, wait_for
from test_lost_state import _patched

from harden.kube import KubeClient
from harden.statebackend_kube import KubeBackend

NS = "argo"
REPO = Path(__file__).resolve().parents[2]
STACK = {"apiVersion": "harden.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "it-pipeline"},
         "parameters": {"namespace": NS},
         "profiles": [{"profile": "read-only-server"}, {"profile": "workflow-restrictions"},
                      {"profile": "ui-read-only-role", "with": {"group": "argo-viewers"}}]}
LEASE = "harden-lock-it-pipeline"
KILLS = int(os.environ.get("HARDEN_KILL_RUNS", "50"))


@pytest.fixture(scope="module")
def install(kube, tmp_path_factory):
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), NS)
    d = tmp_path_factory.mktemp("pipelines")
    # A slow network for the runner that must still be applying while the other one arrives.
    proxy = FaultProxy(kube.kubeconfig, d / "proxy", seed=7, rates={"latency": 1.0}, per_request_cap=10**6).start()
    try:
        yield {"proxied": proxy.kubeconfig(d / "slow.kubeconfig"), "upstream": _patched(kube)}
    finally:
        proxy.stop()


@pytest.fixture
def state_ns(kube):
    name = kube.create_namespace("harden-state")
    yield name
    kube.delete_namespace(name)


def checkout(root: Path, name: str) -> Path:
    """A runner's own checkout: the repository's examples, and the stack file."""
    d = root / name
    shutil.copytree(REPO / "examples", d / "examples")
    (d / "stack.yaml").write_text(yaml.safe_dump(STACK))
    return d


def harden_args(*args: str, kubeconfig: str) -> list[str]:
    return [sys.executable, "-m", "harden.cli", *args, "--kubeconfig", kubeconfig]


def run(where: Path, *args: str, kubeconfig: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(harden_args(*args, kubeconfig=kubeconfig), cwd=where, capture_output=True, text=True,
                          env=CLI_ENV, timeout=timeout)


def start(where: Path, *args: str, kubeconfig: str) -> subprocess.Popen:
    return subprocess.Popen(harden_args(*args, kubeconfig=kubeconfig), cwd=where, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=CLI_ENV)


def lease(kube, ns: str) -> dict | None:
    try:
        return client.CoordinationV1Api(kube.api_client).read_namespaced_lease(LEASE, ns).to_dict()
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def held_by(kube, ns: str, pid: int) -> bool:
    found = lease(kube, ns)
    info = json.loads(((found or {}).get("metadata") or {}).get("annotations", {}).get("harden.dev/lock", "{}"))
    return info.get("pid") == pid


def state_of(kube, ns: str):
    """The state as the next runner would read it (journal folded in); raises if it is not valid."""
    return KubeBackend(KubeClient(kube.kubeconfig), ns, "it-pipeline").read()


def ok(r: subprocess.CompletedProcess, *codes: int) -> subprocess.CompletedProcess:
    assert r.returncode in (codes or (0,)), f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_two_runners_one_stack_one_at_a_time(kube, install, state_ns, tmp_path):
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    state = ["--state", f"kubernetes://{state_ns}"]
    first = start(a, "apply", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=install["proxied"])
    try:
        wait_for(lambda: held_by(kube, state_ns, first.pid), timeout=60, interval=0.05, what="runner A's Lease")
        r = ok(run(b, "apply", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=kube.kubeconfig), 1)
        assert f"locked by pid {first.pid} on host" in r.stderr, r.stderr
        assert "lock ID" in r.stderr and "Apply complete" not in r.stdout
        assert first.wait(timeout=180) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert lease(kube, state_ns) is None  # released at the end, not left to expire
    r = ok(run(b, "plan", "-f", "stack.yaml", *state, "--detailed-exitcode", kubeconfig=kube.kubeconfig))
    assert "No changes" in r.stdout or r.returncode == 0
    secrets = client.CoreV1Api(kube.api_client).list_namespaced_secret(
        state_ns, label_selector="app.kubernetes.io/managed-by=harden").items
    assert [s.type for s in secrets] == ["Opaque"]  # one Secret per stack, the journal compacted into it
    ok(run(b, "destroy", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=kube.kubeconfig))
    assert _patched(kube) == install["upstream"]


def test_a_killed_runner_s_lease_is_taken_over_after_it_expires(kube, install, state_ns, tmp_path):
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    state = ["--state", f"kubernetes://{state_ns}"]
    first = start(a, "apply", "-f", "stack.yaml", *state, "--lock-duration", "3s", "--auto-approve",
                  kubeconfig=install["proxied"])
    wait_for(lambda: held_by(kube, state_ns, first.pid), timeout=60, interval=0.05, what="runner A's Lease")
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert held_by(kube, state_ns, first.pid)  # left behind: nobody released it
    state_of(kube, state_ns)  # valid

    t0 = time.monotonic()
    ok(run(b, "apply", "-f", "stack.yaml", *state, "--auto-approve", "--lock-timeout", "30s",
           kubeconfig=kube.kubeconfig))
    assert time.monotonic() - t0 < 30
    assert lease(kube, state_ns) is None
    ok(run(b, "plan", "-f", "stack.yaml", *state, "--detailed-exitcode", kubeconfig=kube.kubeconfig))
    assert state_of(kube, state_ns).records
    ok(run(b, "destroy", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=kube.kubeconfig))
    assert _patched(kube) == install["upstream"]


def test_kill_9_at_random_moments_across_apply_and_destroy(kube, install, state_ns, tmp_path):
    rng = random.Random(20261124)
    where = checkout(tmp_path, "runner")
    state = ["--state", f"kubernetes://{state_ns}"]
    short = ["--lock-duration", "1s"]
    counts = {"apply": 0, "destroy": 0, "finished-before-kill": 0}
    for i in range(KILLS):
        op = rng.choice(["apply", "destroy"])
        counts[op] += 1
        proc = start(where, op, "-f", "stack.yaml", *state, *short, "--auto-approve", "--lock-timeout", "10s",
                     kubeconfig=kube.kubeconfig)
        try:
            proc.wait(timeout=rng.uniform(0.5, 3.5))
            counts["finished-before-kill"] += 1
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        state_of(kube, state_ns)  # valid after every kill
        if i % 10 == 9:  # a re-run converges (and its lock is released or expires)
            ok(run(where, op, "-f", "stack.yaml", *state, *short, "--auto-approve", "--lock-timeout", "10s",
                   kubeconfig=kube.kubeconfig))
            ok(run(where, "plan", "-f", "stack.yaml", *state, "--detailed-exitcode", kubeconfig=kube.kubeconfig)
               if op == "apply" else run(where, "destroy", "-f", "stack.yaml", *state, *short, "--auto-approve",
                                         kubeconfig=kube.kubeconfig))
    print(f"kill -9 runs: {counts}")
    ok(run(where, "destroy", "-f", "stack.yaml", *state, *short, "--auto-approve", "--lock-timeout", "10s",
           kubeconfig=kube.kubeconfig))
    assert state_of(kube, state_ns).records == {}
    assert lease(kube, state_ns) is None
    assert _patched(kube) == install["upstream"]  # every patched field back to its value and owner


# -- bad input: one clear line, nothing applied ------------------------------------------------------

def _one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def test_unknown_state_scheme(kube, install, tmp_path):
    where = checkout(tmp_path, "r")
    line = _one_error(run(where, "apply", "-f", "stack.yaml", "--state", "s3://bucket/x", "--auto-approve",
                          kubeconfig=kube.kubeconfig))
    assert "unknown state backend 's3'" in line
    assert _patched(kube) == install["upstream"]


def test_state_namespace_that_does_not_exist(kube, install, tmp_path):
    where = checkout(tmp_path, "r")
    line = _one_error(run(where, "apply", "-f", "stack.yaml", "--state", "kubernetes://no-such-ns-4711",
                          "--auto-approve", kubeconfig=kube.kubeconfig))
    assert "namespace 'no-such-ns-4711' does not exist" in line
    assert _patched(kube) == install["upstream"]


def test_no_rbac_on_leases(kube, install, state_ns, tmp_path):
    where = checkout(tmp_path, "r")
    line = _one_error(run(where, "apply", "-f", "stack.yaml", "--state", f"kubernetes://{state_ns}", "--auto-approve",
                          kubeconfig=kube.restricted["alice"]))
    assert "Lease" in line and "forbidden" in line
    assert _patched(kube) == install["upstream"] and lease(kube, state_ns) is None


def test_no_rbac_on_secrets(kube, install, state_ns, tmp_path):
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    rbac.create_namespaced_role(state_ns, {"metadata": {"name": "leases"}, "rules": [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]}]})
    rbac.create_namespaced_role_binding(state_ns, {"metadata": {"name": "bob-leases"},
                                                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                               "name": "leases"},
                                                   "subjects": [{"kind": "User", "name": "bob"}]})
    where = checkout(tmp_path, "r")
    line = wait_for(lambda: (lambda r: _one_error(r) if "Lease" not in r.stderr else None)(
        run(where, "apply", "-f", "stack.yaml", "--state", f"kubernetes://{state_ns}", "--auto-approve",
            kubeconfig=kube.restricted["bob"])), timeout=30, what="bob's Role to take effect")
    assert "Secret" in line and "forbidden" in line
    assert _patched(kube) == install["upstream"] and lease(kube, state_ns) is None  # lock released on the way out


# -- several clusters in one run -----------------------------------------------------------------------

def test_many_clusters_one_run_a_failing_cluster_does_not_stop_the_others(kube, install, tmp_path):
    cfg = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster, user = cfg["clusters"][0], cfg["users"][0]
    # `down`: nothing listens there, so every request is refused.
    cfg["clusters"].append({"name": "down", "cluster": {**cluster["cluster"], "server": "https://127.0.0.1:9"}})
    cfg["contexts"] = [{"name": "good", "context": {"cluster": cluster["name"], "user": user["name"]}},
                       {"name": "down", "context": {"cluster": "down", "user": user["name"]}}]
    cfg["current-context"] = "good"
    kc = tmp_path / "two.kubeconfig"
    kc.write_text(yaml.safe_dump(cfg))
    where = checkout(tmp_path, "r")
    (where / "stack.yaml").write_text(yaml.safe_dump({**STACK, "clusters": ["good", "down"]}))
    state = ["--state", f"file://{tmp_path / 'state'}", "--request-timeout", "5s"]

    r = ok(run(where, "plan", "-f", "stack.yaml", *state, kubeconfig=str(kc)), 1)
    assert "Plan:" in r.stdout                                   # good was planned
    assert "good: exit 0" in r.stderr and "down: exit 1" in r.stderr

    r = ok(run(where, "apply", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=str(kc)), 1)
    assert "Apply complete" in r.stdout and "good: exit 0 (applied)" in r.stderr and "down: exit 1" in r.stderr
    assert sorted(p.name for p in (tmp_path / "state").glob("*.json")) == ["it-pipeline@good.json"]
    # The good cluster converged; asked alone, it uses the same state key.
    ok(run(where, "plan", "-f", "stack.yaml", *state, "--context", "good", "--detailed-exitcode", kubeconfig=str(kc)))
    ok(run(where, "destroy", "-f", "stack.yaml", *state, "--context", "good", "--auto-approve", kubeconfig=str(kc)))
    assert _patched(kube) == install["upstream"]


# -- the in-cluster backend's layout, against the real API server -------------------------------------

def test_large_state_splits_across_secrets_and_old_parts_go(kube, state_ns, monkeypatch):
    import harden.statebackend_kube as kb
    from harden.model import ChangeKind
    from harden.state import Record

    monkeypatch.setattr(kb, "CHUNK", 4096)
    backend = KubeBackend(KubeClient(kube.kubeconfig), state_ns, "big")
    records = {f"v1/ConfigMap/ns/c{i}": Record(f"v1/ConfigMap/ns/c{i}", "v1", ChangeKind.OBJECT, ("p",), os.urandom(16).hex())
               for i in range(400)}
    big = backend.read().with_records(records)
    backend.write(big)
    names = sorted(s.metadata.name for s in client.CoreV1Api(kube.api_client).list_namespaced_secret(state_ns).items
                   if s.metadata.name.startswith("harden-state-big"))
    assert len(names) > 2 and "harden-state-big" in names
    assert KubeBackend(KubeClient(kube.kubeconfig), state_ns, "big").read() == big
    small = big.with_records({})
    backend.write(small)
    left = [s.metadata.name for s in client.CoreV1Api(kube.api_client).list_namespaced_secret(state_ns).items
            if s.metadata.name.startswith("harden-state-big")]
    assert left == ["harden-state-big"]
    assert KubeBackend(KubeClient(kube.kubeconfig), state_ns, "big").read() == small


def test_two_writers_of_one_serial_the_second_is_refused(kube, state_ns):
    from harden.statebackend_kube import StateConflict

    one = KubeBackend(KubeClient(kube.kubeconfig), state_ns, "race")
    two = KubeBackend(KubeClient(kube.kubeconfig), state_ns, "race")
    one.write(one.read().with_records({}))
    s1, s2 = one.read(), two.read()
    one.write(s1.with_records({}))
    with pytest.raises(StateConflict):
        two.write(s2.with_records({}))


def test_migrate_file_state_into_the_cluster_then_push_refuses_another_lineage(kube, install, state_ns, tmp_path):
    where = checkout(tmp_path, "r")
    local = ["--state", f"file://{tmp_path / 'local'}"]
    remote = ["--state", f"kubernetes://{state_ns}"]
    ok(run(where, "apply", "-f", "stack.yaml", *local, "--auto-approve", kubeconfig=kube.kubeconfig))
    ok(run(where, "state", "migrate", "-f", "stack.yaml", *local, "--to", f"kubernetes://{state_ns}",
           kubeconfig=kube.kubeconfig))
    pulled = json.loads(ok(run(where, "state", "pull", "-f", "stack.yaml", *remote, kubeconfig=kube.kubeconfig)).stdout)
    assert pulled["records"] and pulled["lineage"] == json.loads((tmp_path / "local/it-pipeline.json").read_text())["lineage"]
    ok(run(where, "plan", "-f", "stack.yaml", *remote, "--detailed-exitcode", kubeconfig=kube.kubeconfig))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**pulled, "lineage": "another-lineage"}))
    r = ok(run(where, "state", "push", str(other), "-f", "stack.yaml", *remote, kubeconfig=kube.kubeconfig), 1)
    assert "lineage" in r.stderr
    ok(run(where, "destroy", "-f", "stack.yaml", *remote, "--auto-approve", kubeconfig=kube.kubeconfig))
    assert _patched(kube) == install["upstream"]


def test_force_unlock_releases_a_dead_holder_s_lock_only_with_its_id(kube, install, state_ns, tmp_path):
    from harden.state import holder_info

    # A holder that died with an hour-long lease: nobody renews it, nobody releases it.
    dead = KubeBackend(KubeClient(kube.kubeconfig), state_ns, "it-pipeline", lease_seconds=3600)
    lock_id = dead._acquire(holder_info("apply"), 0)["spec"]["holderIdentity"]
    where = checkout(tmp_path, "r")
    state = ["--state", f"kubernetes://{state_ns}"]
    r = ok(run(where, "apply", "-f", "stack.yaml", *state, "--auto-approve", kubeconfig=kube.kubeconfig), 1)
    assert f"harden force-unlock {lock_id}" in r.stderr
    r = ok(run(where, "force-unlock", "not-the-id", "-f", "stack.yaml", *state, kubeconfig=kube.kubeconfig), 1)
    assert lease(kube, state_ns) is not None
    ok(run(where, "force-unlock", lock_id, "-f", "stack.yaml", *state, kubeconfig=kube.kubeconfig))
    assert lease(kube, state_ns) is None
    assert _patched(kube) == install["upstream"]  # the refused apply wrote nothing
