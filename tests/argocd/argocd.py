#!/usr/bin/env python3
"""Build and run Argo CD's own components against the test API server.

The `argocd` binary is built from this directory's Go module (Argo CD's
application-controller and repo-server from the published module, see
go.mod). redis is Debian's `redis-server` (tests/run.sh installs it). Each
Argo CD component runs as a local process that authenticates as its own
ServiceAccount of the upstream install.yaml with a TokenRequest token, so it
acts with exactly the permissions RBAC gives that ServiceAccount.

Usage:
    python tests/argocd/argocd.py build      # prints the binary path

tests/integration/test_real_argocd.py imports it for `build`, `start`,
`start_redis`, `wait_listening` and `stop`.

The build is cached like tests/kube's kubestack, keyed by a hash of this
directory's go.mod, go.sum and *.go. Only the standard library is
used so `build` works before the project is installed.

Environment:
    HARDEN_ARGOCD_CACHE   build cache root (default ~/.cache/harden/argocd)
    HARDEN_ARGOCD         use this argocd binary instead of building one
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kube"))

from cluster import _tail, free_port, source_hash  # noqa: E402  (a script directory, not a package)

APPLICATION_CONTROLLER = "argocd-application-controller"
REPO_SERVER = "argocd-repo-server"


class ArgoCDError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("HARDEN_ARGOCD_CACHE") or Path.home() / ".cache" / "harden" / "argocd")


def argocd_version() -> str:
    m = re.search(r"^(?:require)?\s+github\.com/argoproj/argo-cd/v3\s+(v\S+)", (HERE / "go.mod").read_text(), re.M)
    if not m:
        raise ArgoCDError("github.com/argoproj/argo-cd/v3 not found in tests/argocd/go.mod")
    return m.group(1)


def build(verbose: bool = True) -> Path:
    """Return the argocd binary, building it only if it is not cached."""
    override = os.environ.get("HARDEN_ARGOCD")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise ArgoCDError(f"HARDEN_ARGOCD={override} is not an executable file")
        return path

    out_dir = cache_root() / source_hash(HERE)
    binary = out_dir / "argocd"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if not go:
        raise ArgoCDError("`go` is not on PATH; it is needed once to build tests/argocd")
    out_dir.mkdir(parents=True, exist_ok=True)
    version = argocd_version()
    # Stamped as upstream's Makefile does (PACKAGE=.../common; -X version=...),
    # so the components log and report the real release.
    pkg = "github.com/argoproj/argo-cd/v3/common"
    ldflags = f"-s -w -X {pkg}.version={version.lstrip('v')} -X {pkg}.gitTag={version} -X {pkg}.gitTreeState=clean"
    tmp = out_dir / f".argocd.{os.getpid()}.tmp"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    cmd = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(tmp), "."]
    if verbose:
        print(f"building argocd ({version}) into {out_dir} -- the first build takes several minutes",
              file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=HERE, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ArgoCDError(f"go build failed with exit code {proc.returncode}")
    os.replace(tmp, binary)
    elapsed = time.monotonic() - started
    (out_dir / "build.json").write_text(json.dumps({
        "argocd_version": version,
        "build_seconds": round(elapsed, 1),
        "go": subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip(),
        "size_bytes": binary.stat().st_size,
    }, indent=2) + "\n")
    if verbose:
        print(f"built argocd in {elapsed:.0f}s", file=sys.stderr, flush=True)
    image_scripts(binary)
    return binary


def image_scripts(binary: Path) -> Path:
    """A directory with the scripts Argo CD's image puts beside the binary, to prepend to PATH.

    Upstream's Dockerfile copies hack/gpg-wrapper.sh and hack/git-verify-wrapper.sh into
    /usr/local/bin; the repo-server runs git-verify-wrapper.sh on every revision it renders
    (util/git/client.go VerifyCommitSignature) and fails with "permission denied" without it.
    They come from the same module version the binary is built from (the Go module cache).
    """
    out = binary.parent / "bin"
    names = ("gpg-wrapper.sh", "git-verify-wrapper.sh")
    if all((out / n).exists() for n in names):
        return out
    go = shutil.which("go")
    if not go:
        raise ArgoCDError("`go` is not on PATH; it locates Argo CD's image scripts in the module cache")
    proc = subprocess.run([go, "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-cd/v3"], cwd=HERE,
                          env=dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local"),
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ArgoCDError(f"go list of the Argo CD module failed: {proc.stderr.strip()}")
    module = Path(proc.stdout.strip())
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        tmp = out / f".{n}.{os.getpid()}.tmp"
        shutil.copyfile(module / "hack" / n, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, out / n)
    return out


# --------------------------------------------------------------------------
# processes


def _die_with_parent() -> None:
    # Argo CD has no --watch-pid like kubestack: ask the kernel to kill the
    # component when the test process is gone, so a killed pytest leaves
    # nothing behind. Linux only; elsewhere the fixture's teardown must do.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start(cmd: list[str], env: dict[str, str], d: Path, name: str) -> subprocess.Popen:
    """Start one process with exactly `env` (nothing inherited), logging to d/NAME.log."""
    d.mkdir(parents=True, exist_ok=True)
    log = open(d / f"{name}.log", "ab")  # noqa: SIM115  (the child process writes it; closed below)
    try:
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        log.close()
    (d / f"{name}.cmd").write_text(" ".join(cmd) + "\n")
    return proc


def start_redis(d: Path, password: str) -> tuple[subprocess.Popen, int]:
    """redis-server on a free loopback port with the password, no persistence.

    The flags are those of the argocd-redis Deployment in upstream
    manifests/install.yaml (`--save "" --appendonly no --requirepass $(REDIS_PASSWORD)`).
    """
    binary = shutil.which("redis-server")
    if not binary:
        raise ArgoCDError("redis-server is not on PATH (tests/run.sh installs Debian's redis-server)")
    port = free_port()
    cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
           "--dir", str(d)]
    # The password goes in a 0600 config file, not argv: argv is readable by every user of the machine.
    conf = d / "redis.conf"
    d.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"requirepass {password}\n")
    conf.chmod(0o600)
    proc = start([cmd[0], str(conf), *cmd[1:]], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, d, "redis")
    wait_listening(port, proc, d / "redis.log")
    return proc, port


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port; fail early if proc died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ArgoCDError(f"{log.stem} exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ArgoCDError(f"{log.stem} did not listen on port {port} within {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after `grace` seconds."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["build"]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(build())
    except ArgoCDError as e:
        print(f"argocd: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
