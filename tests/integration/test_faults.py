"""Broken connections between harden and the API server, through a fault proxy of the tests' own.

The examples stack is applied to the quick-start install in `argo` through `faultproxy.FaultProxy`
(connection resets before and after the server acted, stalls, latency, 429 with Retry-After, 500
and 503, chosen by a fixed seed): apply converges; a stalled connection ends the run within the
request timeout, with valid state, and a re-run converges. A kubeconfig with the wrong CA or an
http:// URL gets a message about trust or the scheme, not "is the cluster up".

The install is the one test_engine.py and test_profiles.py use, so every test here ends with
`destroy`: the fields harden set are handed back and later tests see the upstream install.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import yaml
from faultproxy import FaultProxy, Seen
from kubeutil import require_fixture, run_harden

NS = "argo"
STACK = "examples/stack.yaml"
TIMEOUT = 3.0  # --request-timeout for the stall test, in seconds
MARGIN = 3.0   # for the last write started before the first stall, and the exit itself

harden = run_harden


@pytest.fixture(scope="module")
def install(kube, tmp_path_factory):
    kube.apply_manifests(require_fixture("argo-workflows/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-workflows/quick-start-postgres.yaml"), NS)
    d = tmp_path_factory.mktemp("faults")
    proxy = FaultProxy(kube.kubeconfig, d / "proxy", seed=20240611).start()
    try:
        yield {"dir": d, "proxy": proxy, "proxied": proxy.kubeconfig(d / "proxied.kubeconfig")}
    finally:
        proxy.stop()


def _args(kubeconfig: str, state: Path, *more: str) -> list[str]:
    return ["-f", STACK, "--kubeconfig", kubeconfig, "--state-dir", str(state), *more]


def _records(state: Path) -> dict:
    return json.loads(next(state.glob("*.json")).read_text())["records"]


def _is_precondition_write(s: Seen) -> bool:
    return s.write and not s.dry_run and b'"resourceVersion"' in s.body


def test_apply_and_destroy_converge_through_resets_throttling_and_server_errors(kube, install, tmp_path):
    proxy: FaultProxy = install["proxy"]
    state = tmp_path / "state"
    proxy.configure(
        rates={"reset_before": 0.06, "reset_after": 0.06, "throttle": 0.04, "error500": 0.03, "error503": 0.04,
               "latency": 0.1},
        # Each at least once, whatever the thread interleaving: a reset during the initial reads, and
        # a lost answer to an update sent with a resourceVersion precondition (it landed; resending it
        # unchanged would be refused as a conflict, so harden must read it back and count it done).
        first=[(lambda s: s.method == "GET" and "limit=" in s.path, "reset_before"),
               (_is_precondition_write, "reset_after")])
    r = harden("apply", *_args(install["proxied"], state, "--auto-approve"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Apply complete!" in r.stdout
    injected = dict(proxy.injected)
    assert all(injected.get(f, 0) >= 1 for f in ("reset_before", "reset_after", "throttle")), injected
    assert injected.get("error500", 0) + injected.get("error503", 0) >= 1, injected
    assert not proxy.first, "a targeted fault never found its request"
    # Straight to the API server: nothing left to do, and state knows every object.
    r = harden("plan", *_args(kube.kubeconfig, state, "--detailed-exitcode"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes." in r.stdout
    assert len(_records(state)) >= 17

    # Deletes and hand-backs through the same faults: a delete whose answer was lost is done.
    proxy.configure(rates={"reset_before": 0.06, "reset_after": 0.08, "throttle": 0.04, "error503": 0.04},
                    first=[(lambda s: s.method == "DELETE" and not s.dry_run, "reset_after")])
    r = harden("destroy", *_args(install["proxied"], state, "--auto-approve"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not proxy.first
    assert _records(state) == {}


def test_stalled_connection_fails_within_the_timeout_with_valid_state(kube, install, tmp_path):
    proxy: FaultProxy = install["proxy"]
    state = tmp_path / "state"
    passed: list[Seen] = []

    def stall(s: Seen) -> bool:
        # The first few real writes go through (and are recorded), then the connection goes dead.
        if not s.write or s.dry_run:
            return False
        if len(passed) < 3:
            passed.append(s)
            return False
        return True

    proxy.configure(stall=stall)
    r = harden("apply", *_args(install["proxied"], state, "--auto-approve", "--parallelism", "2",
                               "--request-timeout", f"{TIMEOUT:g}s"))
    ended = time.time()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "no answer from the Kubernetes API server in time" in r.stderr and "--request-timeout" in r.stderr
    assert proxy.first_stall is not None
    assert ended - proxy.first_stall < TIMEOUT + MARGIN, f"ran {ended - proxy.first_stall:.1f}s after the stall"
    done = _records(state)  # valid JSON, and holds what was written before the stall
    assert 3 <= len(done) < 30

    proxy.configure()  # the connection heals
    r = harden("apply", *_args(install["proxied"], state, "--auto-approve"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("plan", *_args(kube.kubeconfig, state, "--detailed-exitcode"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = harden("destroy", *_args(kube.kubeconfig, state, "--auto-approve"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_stalled_reads_fail_within_the_timeout(install, tmp_path):
    """Every LIST hangs: the plan stops at the first timeout instead of waiting one per batch of kinds."""
    proxy: FaultProxy = install["proxy"]
    proxy.configure(stall=lambda s: s.method == "GET" and "limit=" in s.path)
    r = harden("plan", *_args(install["proxied"], tmp_path / "state", "--request-timeout", f"{TIMEOUT:g}s"))
    ended, stalled = time.time(), proxy.first_stall
    proxy.configure()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no answer from the Kubernetes API server in time" in r.stderr and "Traceback" not in r.stderr
    assert stalled is not None
    assert ended - stalled < TIMEOUT + MARGIN, f"ran {ended - stalled:.1f}s after the stall"


def _kubeconfig_variant(kube, path: Path, **cluster) -> str:
    cfg = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cfg["clusters"][0]["cluster"].update(cluster)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_wrong_ca_is_a_trust_problem(kube, install, tmp_path):
    other_ca = base64.b64encode(install["proxy"].ca_pem).decode()  # a real CA, just not the server's
    kc = _kubeconfig_variant(kube, tmp_path / "kc", **{"certificate-authority-data": other_ca})
    r = harden("plan", "--profile", "read-only-server", "--kubeconfig", kc, "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 1
    text = " ".join(r.stderr.split())
    assert "certificate verify failed" in text and "certificate-authority" in text and "--insecure" in text, text
    assert "cluster is up" not in text and "Traceback" not in text


def test_http_url_against_the_https_port_says_so(kube, tmp_path):
    server = yaml.safe_load(Path(kube.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    kc = _kubeconfig_variant(kube, tmp_path / "kc", server=server.replace("https://", "http://"))
    r = harden("plan", "--profile", "read-only-server", "--kubeconfig", kc, "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 1
    text = " ".join(r.stderr.split())
    assert "speaks HTTPS" in text and "https://" in text, text
    assert "Traceback" not in text


def test_failed_apply_after_a_release_does_not_resend_the_release(kube, install, tmp_path):
    """Dropping a profile that shares a patched ConfigMap: the release (a strategic-merge patch with
    the observed resourceVersion) lands, then the apply after it gets a 503. Only the apply is sent
    again; re-sending the release too would carry a resourceVersion that is no longer current."""
    proxy: FaultProxy = install["proxy"]
    state = tmp_path / "state"
    full = _args(kube.kubeconfig, state, "--auto-approve")
    assert harden("apply", *full).returncode == 0
    stack = yaml.safe_load((Path(__file__).resolve().parents[2] / STACK).read_text())
    stack["profiles"] = [p for p in stack["profiles"] if p["profile"] != "workflow-restrictions"]
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(yaml.safe_dump(stack))
    released: list[Seen] = []

    def release(s: Seen) -> bool:  # the strategic-merge patch: no `force` (server-side apply has it)
        hit = s.method == "PATCH" and "configmaps/workflow-controller-configmap" in s.path \
            and "force=" not in s.path and not s.dry_run
        if hit:
            released.append(s)
        return False

    def apply_after_release(s: Seen) -> bool:
        return bool(released) and s.method == "PATCH" and "configmaps/workflow-controller-configmap" in s.path \
            and "force=true" in s.path and not s.dry_run

    proxy.configure(first=[(release, "never"), (apply_after_release, "error500")])
    common = ["-f", str(smaller), "--kubeconfig", install["proxied"], "--state-dir", str(state)]
    r = harden("apply", *common, "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(released) == 1 and proxy.injected.get("error500") == 1, (released, proxy.injected)
    cm = kube.core.read_namespaced_config_map("workflow-controller-configmap", NS)
    assert "workflowRestrictions" not in cm.data and "workflowDefaults" in cm.data
    r = harden("plan", "-f", str(smaller), "--kubeconfig", kube.kubeconfig, "--state-dir", str(state), "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert harden("destroy", *full).returncode == 0
