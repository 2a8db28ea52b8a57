#!/usr/bin/env python3
"""Build and run a real, local Kubernetes control plane for the test suite.

The control plane is the `kubestack` binary built from this directory's Go
module (etcd + kube-apiserver + kube-controller-manager from the pinned
Kubernetes release, see README.md). No kubelet, no scheduler, no containers:
just the API server and the controllers that keep the API behaving like a real
cluster (namespace deletion, garbage collection, default service accounts,
kube-root-ca.crt, aggregated cluster roles).

Usage:
    python tests/kube/cluster.py build            # prints the binary path
    python tests/kube/cluster.py kubectl          # prints the path of kubectl (built in)
    python tests/kube/cluster.py up DIR [--watch-pid PID] [--timeout S]
    python tests/kube/cluster.py down DIR
    python tests/kube/cluster.py status DIR

Only the standard library and `cryptography` are used so the script works
before the project itself is installed. It is also imported by
tests/integration/conftest.py (functions `build`, `up`, `down`).

Environment:
    HARDEN_KUBE_CACHE   build cache root (default ~/.cache/harden/kube)
    HARDEN_KUBESTACK    use this kubestack binary instead of building one
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Identities that get a kubeconfig without any group beyond
# system:authenticated (so every permission must come from RBAC the test
# grants explicitly).
RESTRICTED_USERS = ("alice", "bob")

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Canonical controller names of the pinned release (the old short names such
# as "namespace" are still accepted as aliases). Only controllers that act on
# API objects alone; anything that needs nodes or pods running is left out.
CONTROLLERS = (
    "namespace-controller",  # finalizes deleted namespaces
    "garbage-collector-controller",  # ownerReferences / cascading deletion
    "serviceaccount-controller",  # "default" ServiceAccount per namespace
    "clusterrole-aggregation-controller",  # admin/edit/view aggregation
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt ConfigMap
)

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# build


def cache_root() -> Path:
    return Path(os.environ.get("HARDEN_KUBE_CACHE") or Path.home() / ".cache" / "harden" / "kube")


def source_hash(directory: Path = HERE) -> str:
    """sha256 over a Go build's go.mod, go.sum and *.go: any change means a new binary (the test
    Argo CD build in tests/argocd keys its cache the same way)."""
    h = hashlib.sha256()
    files = [directory / "go.mod", directory / "go.sum", *sorted(directory.glob("*.go"))]
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:32]


def kubernetes_version() -> str:
    m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (HERE / "go.mod").read_text(), re.M)
    if not m:
        raise ClusterError("k8s.io/kubernetes not found in tests/kube/go.mod")
    return m.group(1)


def build(verbose: bool = True) -> Path:
    """Return the kubestack binary, building it only if it is not cached."""
    override = os.environ.get("HARDEN_KUBESTACK")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise ClusterError(f"HARDEN_KUBESTACK={override} is not an executable file")
        return path

    out_dir = cache_root() / source_hash()
    binary = out_dir / "kubestack"
    if binary.exists():
        _link_kubectl(binary)
        return binary

    go = shutil.which("go")
    if not go:
        raise ClusterError("`go` is not on PATH; it is needed once to build tests/kube (see tests/kube/README.md)")
    out_dir.mkdir(parents=True, exist_ok=True)
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    # Stamp the version like the upstream release build does, so /version and
    # the components' own version checks report the real release instead of
    # the v0.0.0-master placeholder.
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    ldflags = " ".join(["-s", "-w", *stamps])
    # Build to a temporary name and rename: concurrent builds (two pytest
    # runs) never see a half-written binary.
    tmp = out_dir / f".kubestack.{os.getpid()}.tmp"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    cmd = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(tmp), "."]
    if verbose:
        print(f"building kubestack ({version}) into {out_dir} -- the first build takes several minutes",
              file=sys.stderr, flush=True)
    started = time.monotonic()
    # stdout of go goes to our stderr: our stdout is reserved for the path.
    proc = subprocess.run(cmd, cwd=HERE, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ClusterError(f"go build failed with exit code {proc.returncode}")
    os.replace(tmp, binary)
    _link_kubectl(binary)
    elapsed = time.monotonic() - started
    (out_dir / "build.json").write_text(json.dumps({
        "kubernetes_version": version,
        "build_seconds": round(elapsed, 1),
        "go": subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip(),
        "size_bytes": binary.stat().st_size,
    }, indent=2) + "\n")
    if verbose:
        print(f"built kubestack in {elapsed:.0f}s", file=sys.stderr, flush=True)
    return binary


def _link_kubectl(binary: Path) -> Path:
    """kubestack is multi-call: invoked as `kubectl` it is kubectl (main.go)."""
    link = binary.parent / "kubectl"
    if not link.exists():
        tmp = binary.parent / f".kubectl.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(binary.name)
        os.replace(tmp, link)
    return link


def kubectl(verbose: bool = True) -> Path:
    """kubectl of the pinned release, built into kubestack (no download)."""
    binary = build(verbose=verbose)
    if not os.environ.get("HARDEN_KUBESTACK"):
        return _link_kubectl(binary)
    # An override binary may live where we must not write: link from the cache.
    link = cache_root() / "override" / "kubectl"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(binary.resolve())
    return link


# --------------------------------------------------------------------------
# certificates (cryptography is imported lazily so `build` works without it)


def _pki(d: Path) -> dict:
    """Create a CA, serving/client certificates and the service-account key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=30)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def write(name: str, data: bytes, private: bool = False) -> Path:
        p = d / name
        p.write_bytes(data)
        if private:
            p.chmod(0o600)
        return p

    def name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    # EC P-256 keys are generated in microseconds; RSA would dominate start-up.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("harden-test-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, orgs: tuple[str, ...] = (), *, server: bool = False,
              sans: list[x509.GeneralName] | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn, orgs)).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    files: dict[str, Path] = {}
    files["ca_cert"] = write("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    files["ca_key"] = write("ca.key", key_pem(ca_key), private=True)

    # First IP of the service range is the in-cluster "kubernetes" Service.
    service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    sans = [x509.DNSName(n) for n in dns] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip)]
    crt, key = issue("kube-apiserver", server=True, sans=sans)
    files["serving_cert"] = write("apiserver.crt", crt)
    files["serving_key"] = write("apiserver.key", key, private=True)

    # Service-account token signing key pair. RSA because RS256 is what every
    # token consumer (and the OIDC discovery document) supports.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files["sa_key"] = write("sa.key", key_pem(sa_key), private=True)
    files["sa_pub"] = write("sa.pub", sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    clients = {
        # O=system:masters: bound to cluster-admin by the bootstrap RBAC policy
        # and bypasses authorization entirely.
        "admin": ("kubernetes-admin", ("system:masters",)),
        # The controller manager runs every controller with its own identity
        # (--use-service-account-credentials=false); system:masters spares us
        # from replicating per-controller RBAC in a throwaway test cluster.
        "controller-manager": ("system:kube-controller-manager", ("system:masters",)),
    }
    clients.update({u: (u, ()) for u in RESTRICTED_USERS})
    for ident, (cn, orgs) in clients.items():
        crt, key = issue(cn, orgs)
        files[f"{ident}_cert"] = write(f"{ident}.crt", crt)
        files[f"{ident}_key"] = write(f"{ident}.key", key, private=True)
    return files


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    """Self-contained kubeconfig (certificates inlined as *-data)."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    # JSON is valid YAML, and this keeps the script free of PyYAML.
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "harden-test", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": f"{user}@harden-test", "context": {
            "cluster": "harden-test", "user": user, "namespace": "default"}}],
        "current-context": f"{user}@harden-test",
        "preferences": {},
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------
# processes


def free_port() -> int:
    """Let the kernel pick a free loopback port (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    # Reap first if it is our own child (pytest starts the servers itself),
    # otherwise a zombie would look alive to kill(pid, 0).
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_kubestack(pid: int) -> bool:
    """Guard against PID reuse: only signal processes that run kubestack."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust pids.json
    return b"kubestack" in cmdline


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _start(binary: Path, component: str, args: list[str], d: Path, watch_pid: int | None) -> int:
    cmd = [str(binary), component, *args]
    if watch_pid:
        cmd += ["--watch-pid", str(watch_pid)]
    log = open(d / f"{component}.log", "ab")
    try:
        # start_new_session: own process group, so `down` can signal the
        # whole group and a Ctrl-C aimed at the caller does not race with it.
        proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    finally:
        log.close()
    (d / f"{component}.cmd").write_text(" ".join(cmd) + "\n")
    return proc.pid


def _ssl_context(files: dict) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files["ca_cert"]))
    ctx.load_cert_chain(str(files["admin_cert"]), str(files["admin_key"]))
    return ctx


def _get(url: str, ctx: ssl.SSLContext, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(what: str, check, deadline: float, pids: dict, d: Path) -> None:
    """Poll check() until it returns True; fail fast if a component died."""
    last = ""
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        for comp, pid in pids.items():
            if not _alive(pid):
                raise ClusterError(f"{comp} exited while waiting for {what}\n"
                                   f"--- {d / (comp + '.log')} (tail) ---\n{_tail(d / (comp + '.log'))}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {d / (c + '.log')} (tail) ---\n{_tail(d / (c + '.log'), 25)}"
                             for c in pids)
            raise ClusterError(f"timed out waiting for {what} (last error: {last or 'none'})\n{logs}")
        time.sleep(0.2)


def up(d: str | os.PathLike, *, watch_pid: int | None = None, timeout: float = 180.0,
       wait_controllers: bool = True) -> dict:
    """Start etcd, kube-apiserver and kube-controller-manager; return cluster.json's content."""
    d = Path(d).resolve()
    d.mkdir(parents=True, exist_ok=True)
    if (d / "pids.json").exists():
        running = {c: p for c, p in json.loads((d / "pids.json").read_text()).items()
                   if _alive(p) and _is_kubestack(p)}
        if running:
            raise ClusterError(f"a cluster is already running in {d} ({running}); run `down` first")
    t0 = time.monotonic()
    binary = build()
    t_build = time.monotonic()

    # A fresh cluster every time: stale etcd data would not match the new PKI.
    shutil.rmtree(d / "etcd-data", ignore_errors=True)
    for c in COMPONENTS:
        (d / f"{c}.log").unlink(missing_ok=True)
    files = _pki(d / "pki")
    t_pki = time.monotonic()

    ports = {"etcd_client": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    etcd_url = f"http://127.0.0.1:{ports['etcd_client']}"

    kubeconfigs = {"admin": write_kubeconfig(d / "kubeconfig", server, files["ca_cert"],
                                             files["admin_cert"], files["admin_key"], "admin")}
    cm_kubeconfig = write_kubeconfig(d / "kubeconfig-controller-manager", server, files["ca_cert"],
                                     files["controller-manager_cert"], files["controller-manager_key"],
                                     "system:kube-controller-manager")
    for u in RESTRICTED_USERS:
        kubeconfigs[u] = write_kubeconfig(d / f"kubeconfig-{u}", server, files["ca_cert"],
                                          files[f"{u}_cert"], files[f"{u}_key"], u)

    pids: dict[str, int] = {}

    def save_pids() -> None:
        (d / "pids.json").write_text(json.dumps(pids, indent=2) + "\n")

    try:
        pids["etcd"] = _start(binary, "etcd", [
            f"--data-dir={d / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
        ], d, watch_pid)
        save_pids()

        pids["kube-apiserver"] = _start(binary, "kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={files['serving_cert']}",
            f"--tls-private-key-file={files['serving_key']}",
            f"--client-ca-file={files['ca_cert']}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={files['sa_pub']}",
            f"--service-account-signing-key-file={files['sa_key']}",
            # Hardening profiles manipulate privileged workloads; let them in
            # so tests see admission behave as on a real cluster.
            "--allow-privileged=true",
            # The endpoint reconciler would publish 127.0.0.1 as the endpoint
            # of the "kubernetes" Service, which Endpoints validation rejects
            # (loopback), and log the failure forever. Nothing here needs it.
            "--endpoint-reconciler-type=none",
        ], d, watch_pid)
        save_pids()

        ctx = _ssl_context(files)
        deadline = time.monotonic() + timeout
        _wait("kube-apiserver /readyz", lambda: _get(f"{server}/readyz", ctx)[0] == 200,
              deadline, pids, d)
        t_ready = time.monotonic()

        pids["kube-controller-manager"] = _start(binary, "kube-controller-manager", [
            f"--kubeconfig={cm_kubeconfig}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            # No HTTPS endpoint of its own: nothing scrapes it, and it would
            # need yet another free port.
            "--secure-port=0",
            # Published as the kube-root-ca.crt ConfigMap in every namespace.
            f"--root-ca-file={files['ca_cert']}",
        ], d, watch_pid)
        save_pids()

        t_ctrl = None
        if wait_controllers:
            # The "default" ServiceAccount in "default" appears once the
            # controller manager has synced: proof that controllers run.
            _wait("kube-controller-manager (default/default ServiceAccount)",
                  lambda: _get(f"{server}/api/v1/namespaces/default/serviceaccounts/default",
                               ctx)[0] == 200,
                  deadline, pids, d)
            t_ctrl = time.monotonic()
    except BaseException:
        down(d, quiet=True)
        raise

    info = {
        "dir": str(d),
        "server": server,
        "kubernetes_version": kubernetes_version(),
        "binary": str(binary),
        "ports": ports,
        "pids": pids,
        "watch_pid": watch_pid,
        "kubeconfig": str(kubeconfigs["admin"]),
        "kubeconfigs": {k: str(v) for k, v in kubeconfigs.items()},
        "ca_file": str(files["ca_cert"]),
        "logs": {c: str(d / f"{c}.log") for c in COMPONENTS},
        "timings": {
            "build_lookup_s": round(t_build - t0, 3),
            "pki_s": round(t_pki - t_build, 3),
            # time from launching etcd to kube-apiserver answering /readyz
            "readyz_s": round(t_ready - t_pki, 3),
            "controllers_s": round(t_ctrl - t_ready, 3) if t_ctrl else None,
            "total_s": round((t_ctrl or t_ready) - t0, 3),
        },
    }
    (d / "cluster.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _stop(procs: dict[str, int], grace: float, quiet: bool) -> None:
    """SIGTERM the process groups, SIGKILL whatever is still alive after grace."""
    for pid in procs.values():
        try:
            os.killpg(pid, signal.SIGTERM)  # pid == pgid (start_new_session)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    live = dict(procs)
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = {c: p for c, p in live.items() if _alive(p)}
    for comp, pid in live.items():
        if not quiet:
            print(f"{comp} (pid {pid}) still running {grace:.0f}s after SIGTERM, killing",
                  file=sys.stderr)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in live.values():
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)


def down(d: str | os.PathLike, *, grace: float = 8.0, quiet: bool = False) -> None:
    """Stop whatever `up` started in d. Safe to call repeatedly."""
    d = Path(d)
    pids_file = d / "pids.json"
    if not pids_file.exists():
        return
    pids = json.loads(pids_file.read_text())
    live = {c: p for c, p in pids.items() if _alive(p) and _is_kubestack(p)}
    # Two phases: the API server drains cleanly (~3s) only while etcd is still
    # there; with etcd gone first it hangs on storage until SIGKILL.
    _stop({c: p for c, p in live.items() if c != "etcd"}, grace, quiet)
    _stop({c: p for c, p in live.items() if c == "etcd"}, grace, quiet)
    pids_file.unlink(missing_ok=True)


def status(d: str | os.PathLike) -> dict:
    d = Path(d)
    pids = json.loads((d / "pids.json").read_text()) if (d / "pids.json").exists() else {}
    return {c: {"pid": p, "alive": _alive(p) and _is_kubestack(p)} for c, p in pids.items()}


# --------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build kubestack if not cached; print its path")
    sub.add_parser("kubectl", help="build kubestack if not cached; print the path of its kubectl")
    pu = sub.add_parser("up", help="start a cluster in DIR; print the admin kubeconfig path")
    pu.add_argument("dir")
    pu.add_argument("--watch-pid", type=int, default=None,
                    help="servers exit when this PID dies (e.g. the test runner)")
    pu.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    pu.add_argument("--no-wait-controllers", action="store_true",
                    help="return as soon as /readyz is ok")
    pd = sub.add_parser("down", help="stop the cluster in DIR (idempotent)")
    pd.add_argument("dir")
    ps = sub.add_parser("status", help="show the processes of the cluster in DIR")
    ps.add_argument("dir")
    a = p.parse_args(argv)
    try:
        if a.cmd == "build":
            print(build())
        elif a.cmd == "kubectl":
            print(kubectl())
        elif a.cmd == "up":
            info = up(a.dir, watch_pid=a.watch_pid, timeout=a.timeout,
                      wait_controllers=not a.no_wait_controllers)
            t = info["timings"]
            print(f"cluster up: {info['server']} (kubernetes {info['kubernetes_version']}), "
                  f"/readyz after {t['readyz_s']:.1f}s, controllers after +{t['controllers_s'] or 0:.1f}s",
                  file=sys.stderr)
            print(info["kubeconfig"])
        elif a.cmd == "down":
            down(a.dir)
        elif a.cmd == "status":
            print(json.dumps(status(a.dir), indent=2))
    except ClusterError as e:
        print(f"cluster.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
