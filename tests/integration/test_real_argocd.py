"""The real Argo CD keeps working after `harden apply`: its own components run against the test cluster.

Argo CD v3.5.7's application-controller and repo-server (built from the published Go module by
tests/argocd/) and Debian's redis run as local processes. Each Argo CD component gets the
environment its upstream pod would get (the container's `env` of the live Deployment or
StatefulSet, resolved against the live ConfigMaps and Secrets), so a key harden writes into
argocd-cmd-params-cm reaches the process exactly as in a pod. The controller authenticates as its
own ServiceAccount with a TokenRequest token; the repo-server gets no Kubernetes credentials at all.

The scenario runs three times on one upstream install (tests/fixtures/argo-cd): unhardened (both
Applications sync: the set-up is right), hardened with harden's Argo CD profiles (the allowed
namespace syncs, the other fails with the Forbidden error harden's plan and `can-i` predicted) and
with a deliberately broken profile that drops `create` in the allowed namespace (the sync fails: the
test can tell). No pods run (no kubelet, no CNI): flows and NetworkPolicies are not exercised here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubeutil import REPO, load_script, require_fixture, run_harden, wait_for

ARGOCD_PY = REPO / "tests" / "argocd" / "argocd.py"
BROKEN_PROFILE = Path(__file__).resolve().parent / "profiles" / "argocd-controller-namespaces-no-create.yaml"

NS = "argocd"  # the upstream install's ClusterRoleBindings name this namespace
ALLOWED = "real-argocd-allowed"
DENIED = "real-argocd-denied"
CONTROLLER_SA = "argocd-application-controller"
CONTROLLER = f"system:serviceaccount:{NS}:{CONTROLLER_SA}"
CONFIGMAP = "harden-real-argocd"  # the one manifest in the git repository
IN_CLUSTER = "https://kubernetes.default.svc"
SYNC_TIMEOUT = 120.0


argocd = load_script("harden_test_argocd", ARGOCD_PY)


# -- set-up -------------------------------------------------------------------------------------


def _create(fn, *args) -> None:
    try:
        fn(*args)
    except ApiException as e:
        if e.status != 409:
            raise


def _git_repo(d: Path) -> str:
    """A local repository with one ConfigMap manifest (a kind that needs no pods to be Healthy)."""
    d.mkdir(parents=True)
    (d / "manifests").mkdir()
    (d / "manifests" / "configmap.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP},
        "data": {"rendered-by": "argocd-repo-server"}}))
    git = ["git", "-C", str(d), "-c", "user.name=harden tests", "-c", "user.email=tests@harden.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "one ConfigMap"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return f"file://{d}"


@pytest.fixture(scope="module")
def install(kube, tmp_path_factory):
    try:
        binary = argocd.build()
    except argocd.ArgoCDError as e:
        pytest.fail(f"could not build Argo CD: {e}", pytrace=False)
    kube.apply_manifests(require_fixture("argo-cd/crds.yaml"))
    kube.apply_manifests(require_fixture("argo-cd/install.yaml"), NS)
    for ns in (ALLOWED, DENIED):
        _create(kube.core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    # upstream install.yaml: the argocd-redis-secret-init Job (`argocd admin redis-initial-password`)
    # creates this Secret before redis and the components start; no Job runs here, so the test does.
    _create(kube.core.create_namespaced_secret, NS, client.V1Secret(
        metadata=client.V1ObjectMeta(name="argocd-redis"), string_data={"auth": secrets.token_hex(16)}))
    # server/server.go initializeDefaultProject: argocd-server creates the `default` AppProject at
    # start-up; argocd-server does not run here, so the test creates the same object.
    _create(client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object,
            "argoproj.io", "v1alpha1", NS, "appprojects", {
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                "metadata": {"name": "default", "namespace": NS},
                "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                         "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}})
    d = tmp_path_factory.mktemp("real-argocd")
    yield {"binary": binary, "dir": d, "repo": _git_repo(d / "git")}
    # Leave the install as the fixture files make it, for later tests in the session.
    _clean_applications(kube)
    for delete in (lambda: kube.core.delete_namespaced_secret("argocd-redis", NS),
                   lambda: client.CustomObjectsApi(kube.api_client).delete_namespaced_custom_object(
                       "argoproj.io", "v1alpha1", NS, "appprojects", "default")):
        try:
            delete()
        except ApiException as e:
            if e.status != 404:
                raise
    for ns in (ALLOWED, DENIED):
        kube.delete_namespace(ns)


@contextmanager
def applied(kube, common: list[str], *apply_args: str):
    """`harden apply *apply_args` for the block; afterwards the Applications go and `harden destroy`
    (with `common`) hands back everything it changed, whatever the block did."""
    r = harden("apply", *apply_args)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield
    finally:
        _clean_applications(kube)
        r = harden("destroy", *common, "--auto-approve")
        assert r.returncode == 0, r.stdout + r.stderr


def _clean_applications(kube) -> None:
    objs = client.CustomObjectsApi(kube.api_client)
    for app in objs.list_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications")["items"]:
        if app["metadata"]["name"].startswith("real-"):
            objs.delete_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications",
                                                 app["metadata"]["name"])
    for ns in (ALLOWED, DENIED):
        try:
            kube.core.delete_namespaced_config_map(CONFIGMAP, ns)
        except ApiException as e:
            if e.status != 404:
                raise


# -- running Argo CD's components ---------------------------------------------------------------


def pod_env(kube, kind: str, name: str) -> dict[str, str]:
    """The environment the workload's first container would get in a pod, from the live objects.

    Only `value`, `configMapKeyRef` and `secretKeyRef` occur in the upstream install for the
    components run here; a missing optional key is left out, as the kubelet does.
    """
    apps = client.AppsV1Api(kube.api_client)
    read = apps.read_namespaced_stateful_set if kind == "StatefulSet" else apps.read_namespaced_deployment
    container = read(name, NS).spec.template.spec.containers[0]
    env: dict[str, str] = {}
    config_maps: dict[str, dict] = {}
    for e in container.env or []:
        if e.value is not None:
            env[e.name] = e.value
            continue
        ref = e.value_from
        if ref.config_map_key_ref:
            r = ref.config_map_key_ref
            if r.name not in config_maps:
                config_maps[r.name] = kube.core.read_namespaced_config_map(r.name, NS).data or {}
            if r.key in config_maps[r.name]:
                env[e.name] = config_maps[r.name][r.key]
        elif ref.secret_key_ref:
            r = ref.secret_key_ref
            data = kube.core.read_namespaced_secret(r.name, NS).data or {}
            if r.key in data:
                env[e.name] = base64.b64decode(data[r.key]).decode()
    return env


def token_kubeconfig(kube, service_account: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the ServiceAccount: it acts with exactly its RBAC."""
    token = kube.core.create_namespaced_service_account_token(service_account, NS, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": service_account,
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": service_account,
                      "context": {"cluster": "test", "user": service_account, "namespace": NS}}],
    }))
    path.chmod(0o600)
    return path


@contextmanager
def running_argocd(kube, install, name: str):
    """redis, repo-server and application-controller, as their pods would start now."""
    d = install["dir"] / name
    home = d / "home"  # an empty HOME: no ~/.kube/config to fall back on
    for sub in (home, d / "tmp"):
        sub.mkdir(parents=True)
    path = f"{argocd.image_scripts(install['binary'])}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    base = {"PATH": path, "HOME": str(home), "TMPDIR": str(d / "tmp")}
    procs = []
    try:
        redis_env = pod_env(kube, "Deployment", "argocd-redis")
        redis, redis_port = argocd.start_redis(d, redis_env["REDIS_PASSWORD"])
        procs.append(redis)
        redis_addr = f"127.0.0.1:{redis_port}"

        repo_env = pod_env(kube, "Deployment", "argocd-repo-server")
        repo_port = argocd.free_port()
        repo = argocd.start(
            [str(install["binary"]), argocd.REPO_SERVER, "--address", "127.0.0.1", "--port", str(repo_port),
             "--metrics-port", str(argocd.free_port()), "--redis", redis_addr],
            # No KUBECONFIG, no KUBERNETES_SERVICE_HOST, no token file: the repo-server renders
            # with no Kubernetes credentials at all. GnuPG (for commit verification) is off: no
            # gpg keyring is provisioned here and the repository is unsigned.
            {**repo_env, **base, "ARGOCD_GPG_ENABLED": "false", "ARGOCD_ASK_PASS_SOCK": str(d / "askpass.sock"),
             "HELM_CACHE_HOME": str(d / "helm"), "HELM_CONFIG_HOME": str(d / "helm"),
             "HELM_DATA_HOME": str(d / "helm")},
            d, "repo-server")
        procs.append(repo)
        argocd.wait_listening(repo_port, repo, d / "repo-server.log")

        controller_env = pod_env(kube, "StatefulSet", "argocd-application-controller")
        kubeconfig = token_kubeconfig(kube, CONTROLLER_SA, d / "controller.kubeconfig")
        controller = argocd.start(
            [str(install["binary"]), argocd.APPLICATION_CONTROLLER, "--redis", redis_addr,
             "--repo-server", f"127.0.0.1:{repo_port}", "--metrics-port", str(argocd.free_port())],
            # ARGOCD_FAKE_IN_CLUSTER (pkg/apis/application/v1alpha1/cluster_constants.go) makes the
            # in-cluster destination https://kubernetes.default.svc use $KUBECONFIG instead of the
            # pod's mounted token: the same ServiceAccount token, handed over as a file.
            {**controller_env, **base, "KUBECONFIG": str(kubeconfig), "ARGOCD_FAKE_IN_CLUSTER": "true",
             "KUBECACHEDIR": str(d / "kubecache")},
            d, "controller")
        procs.append(controller)
        yield {"dir": d, "repo_port": repo_port, "procs": procs, "repo_env": repo_env, "repo_pid": repo.pid}
    finally:
        argocd.stop(procs)


def create_application(kube, install, name: str, namespace: str) -> None:
    client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NS, "applications", {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"project": "default",
                     "source": {"repoURL": install["repo"], "path": "manifests", "targetRevision": "main"},
                     "destination": {"server": IN_CLUSTER, "namespace": namespace},
                     # An automated sync is retried 5 times by default (controller/appcontroller.go,
                     # RetryStrategy{Limit: 5}), its phase Running in between; limit 0 lets a
                     # failed sync end as Failed at once.
                     "syncPolicy": {"automated": {}, "retry": {"limit": 0}}}})


def finished_operation(kube, name: str, argo: dict) -> dict:
    """Wait until the Application's first sync operation has ended; return the Application."""
    objs = client.CustomObjectsApi(kube.api_client)

    def done():
        for p in argo["procs"]:
            if p.poll() is not None:
                pytest.fail(f"{' '.join(p.args[:2])} exited with {p.returncode}; logs in {argo['dir']}",
                            pytrace=False)
        app = objs.get_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications", name)
        phase = ((app.get("status") or {}).get("operationState") or {}).get("phase")
        return app if phase in ("Succeeded", "Failed", "Error") else None

    try:
        return wait_for(done, SYNC_TIMEOUT, interval=0.5, what=f"Application {name} to finish its sync")
    except TimeoutError as e:
        app = objs.get_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications", name)
        logs = "\n".join(f"--- {f.name}\n{argocd._tail(f, 15)}" for f in sorted(argo["dir"].glob("*.log")))
        pytest.fail(f"{e}\nstatus: {json.dumps(app.get('status'), indent=1)[:3000]}\n{logs}", pytrace=False)


def synced_and_healthy(kube, name: str, namespace: str, argo: dict) -> None:
    app = finished_operation(kube, name, argo)
    status = app["status"]
    assert status["operationState"]["phase"] == "Succeeded", status["operationState"]
    objs = client.CustomObjectsApi(kube.api_client)

    def settled():
        s = objs.get_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications", name)["status"]
        return s if s["sync"]["status"] == "Synced" and s["health"]["status"] == "Healthy" else None

    wait_for(settled, 60, interval=0.5, what=f"Application {name} Synced and Healthy")
    cm = kube.core.read_namespaced_config_map(CONFIGMAP, namespace)
    assert cm.data == {"rendered-by": "argocd-repo-server"}


FORBIDDEN = re.compile(r'cannot (\w+) resource "([\w./-]+)" in API group "([\w.]*)" in the namespace "([\w-]+)"')


def sync_forbidden(kube, name: str, namespace: str, argo: dict) -> tuple[str, str]:
    """The sync failed with the API server's Forbidden for the controller; return (verb, resource)."""
    state = finished_operation(kube, name, argo)["status"]["operationState"]
    assert state["phase"] in ("Failed", "Error"), state
    text = json.dumps(state)
    assert f'User \\"{CONTROLLER}\\"' in text, state
    m = FORBIDDEN.search(text.replace('\\"', '"'))
    assert m, state
    verb, resource, group, ns = m.groups()
    assert (resource, group, ns) == ("configmaps", "", namespace), m.group(0)
    with pytest.raises(ApiException) as e:
        kube.core.read_namespaced_config_map(CONFIGMAP, namespace)
    assert e.value.status == 404
    return verb, resource


def tls_handshake(port: int, version: ssl.TLSVersion) -> bool:
    """Does the server accept a client that speaks only this TLS version?"""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the repo-server's cert is self-signed
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                ctx.wrap_socket(sock, server_hostname="localhost"):
            return True
    except ssl.SSLError:
        return False


def harden(*args: str):
    return run_harden(*args)


def stack_file(path: Path, *, broken: bool = False) -> Path:
    profiles = [
        {"profile": "argocd-tls", "with": {"minVersion": "1.3", "rollout": True}},
        {"profile": "argocd-repo-server-no-k8s"},
        {"profile": str(BROKEN_PROFILE) if broken else "argocd-controller-namespaces",
         "with": {"namespaces": [ALLOWED], **({} if broken else {"verifyNamespace": ALLOWED})}},
    ]
    path.write_text(yaml.safe_dump({
        "apiVersion": "harden.dev/v1alpha1", "kind": "Stack",
        "metadata": {"name": "real-argocd-broken" if broken else "real-argocd"},
        "parameters": {"namespace": NS}, "profiles": profiles}, sort_keys=False))
    return path


def findings(*common: str, profile: str = "argocd-controller-namespaces", rc: tuple[int, ...] = (0, 2)) -> dict[str, dict]:
    """The findings of `profile` in a fresh plan, by id; the plan's exit code must be one of `rc`."""
    r = harden("plan", *common, "-o", "json")
    assert r.returncode in rc, r.stdout + r.stderr
    return {f["id"]: f for f in json.loads(r.stdout)["findings"] if f["profile"] == profile}


def can_i(kube, verb: str, resource: str, namespace: str, *extra: str) -> int:
    r = harden("can-i", verb, resource, "--as", CONTROLLER, "-n", namespace, "--kubeconfig", kube.kubeconfig, *extra)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r.returncode


# -- the scenario -------------------------------------------------------------------------------


def test_unhardened_install_syncs_everywhere(kube, install):
    # The upstream install: the controller's ClusterRole is `*` on `*`, so both namespaces sync.
    # This tells hardening apart from a set-up mistake in the runs below.
    rules = client.RbacAuthorizationV1Api(kube.api_client).read_cluster_role(CONTROLLER_SA).rules
    assert rules[0].verbs == ["*"], "another test left the controller's ClusterRole changed"
    with running_argocd(kube, install, "unhardened") as argo:
        # upstream default (util/tls/tls.go DefaultTLSMinVersion "1.2"): a TLS 1.2 client gets in
        assert tls_handshake(argo["repo_port"], ssl.TLSVersion.TLSv1_2)
        create_application(kube, install, "real-unhardened-allowed", ALLOWED)
        create_application(kube, install, "real-unhardened-denied", DENIED)
        synced_and_healthy(kube, "real-unhardened-allowed", ALLOWED, argo)
        synced_and_healthy(kube, "real-unhardened-denied", DENIED, argo)
    _clean_applications(kube)


def test_hardened_install_syncs_where_allowed_and_is_forbidden_elsewhere(kube, install):
    d = install["dir"]
    stack = stack_file(d / "stack.yaml")
    common = ["-f", str(stack), "--kubeconfig", kube.kubeconfig, "--state-dir", str(d / "state")]
    plan_file = d / "plan.json"
    r = harden("plan", *common, "--out", str(plan_file), "--detailed-exitcode", "-o", "json")
    assert r.returncode == 2, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    assert not [n for n in plan["impact"]["needs"] if n["status"] == "broken"]
    # What harden predicts, before anything is written: may write in ALLOWED, not in DENIED.
    assert can_i(kube, "create", "configmaps", ALLOWED, "--plan", str(plan_file)) == 0
    assert can_i(kube, "create", "configmaps", DENIED, "--plan", str(plan_file)) == 1
    with applied(kube, common, str(plan_file), "--kubeconfig", kube.kubeconfig, "--state-dir", str(d / "state")):
        with running_argocd(kube, install, "hardened") as argo:
            # argocd-tls set reposerver.tls.minversion "1.3" in argocd-cmd-params-cm; the repo-server
            # reads it through ARGOCD_TLS_MIN_VERSION and refuses a TLS 1.2 client.
            assert argo["repo_env"]["ARGOCD_TLS_MIN_VERSION"] == "1.3"
            assert not tls_handshake(argo["repo_port"], ssl.TLSVersion.TLSv1_2)
            assert tls_handshake(argo["repo_port"], ssl.TLSVersion.TLSv1_3)
            create_application(kube, install, "real-hardened-allowed", ALLOWED)
            create_application(kube, install, "real-hardened-denied", DENIED)
            synced_and_healthy(kube, "real-hardened-allowed", ALLOWED, argo)
            # It rendered with no way to reach the API server: no kubeconfig, no in-cluster
            # variables, no token file; and the pod would mount none (argocd-repo-server-no-k8s).
            environ = Path(f"/proc/{argo['repo_pid']}/environ").read_bytes().split(b"\0")
            names = {e.split(b"=", 1)[0].decode() for e in environ if e}
            assert not names & {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}, names
            assert not (argo["dir"] / "home" / ".kube").exists()
            repo_spec = client.AppsV1Api(kube.api_client).read_namespaced_deployment("argocd-repo-server", NS)
            assert repo_spec.spec.template.spec.automount_service_account_token is False
            verb, resource = sync_forbidden(kube, "real-hardened-denied", DENIED, argo)
        # The verb and resource Argo CD was refused are the ones harden says the controller lacks.
        assert can_i(kube, verb, resource, DENIED) == 1
        assert can_i(kube, verb, resource, ALLOWED) == 0
        # The re-plan reads both Applications (their status lists what they sync): the allowed one
        # keeps what it needs, the denied one is named as stopped, as the real controller showed.
        found = findings(*common)
        assert found["application-syncs"]["passed"], found["application-syncs"]
        outside = found["applications-outside"]
        assert not outside["passed"] and f"{NS}/real-hardened-denied (ConfigMap in {DENIED})" in outside["message"]


def test_broken_profile_fails_the_sync(kube, install):
    # A variant of argocd-controller-namespaces that also drops `create` in the allowed namespace:
    # harden applies what it is told, and the real controller can no longer sync there.
    d = install["dir"]
    stack = stack_file(d / "stack-broken.yaml", broken=True)
    common = ["-f", str(stack), "--kubeconfig", kube.kubeconfig, "--state-dir", str(d / "state-broken")]
    with applied(kube, common, *common, "--auto-approve"):
        with running_argocd(kube, install, "broken") as argo:
            create_application(kube, install, "real-broken-allowed", ALLOWED)
            verb, resource = sync_forbidden(kube, "real-broken-allowed", ALLOWED, argo)
        assert (verb, resource) == ("create", "configmaps")
        assert can_i(kube, verb, resource, ALLOWED) == 1
        # Once the Application exists, harden sees what the real controller saw: the plan of this
        # variant fails, naming the Application and the request it is refused.
        found = findings(*common, profile="argocd-controller-namespaces-no-create", rc=(1,))
        assert not found["application-syncs"]["passed"]
        assert f"{NS}/real-broken-allowed (ConfigMap: create configmaps in {ALLOWED})" in found["application-syncs"]["message"]


def test_excluded_kind_is_not_synced(kube, install):
    # argocd-resource-exclusions with ConfigMap excluded: the controller drops the repository's one
    # manifest from the desired state (controller/state.go, ExcludedResourceWarning) and creates
    # nothing; destroy gives argocd-cm its upstream value back. This proves the key and entry format
    # harden writes are the ones Argo CD reads.
    d = install["dir"]
    before = kube.core.read_namespaced_config_map("argocd-cm", NS).data["resource.exclusions"]
    common = ["--profile", "argocd-resource-exclusions", "--set", f"namespace={NS}",
              "--set", 'exclusions=[{apiGroups: [""], kinds: [ConfigMap]}]',
              "--kubeconfig", kube.kubeconfig, "--state-dir", str(d / "state-excluded")]
    objs = client.CustomObjectsApi(kube.api_client)
    with applied(kube, common, *common, "--auto-approve"), running_argocd(kube, install, "excluded") as argo:
        create_application(kube, install, "real-excluded-allowed", ALLOWED)

        def warned():
            for p in argo["procs"]:
                if p.poll() is not None:
                    pytest.fail(f"{' '.join(p.args[:2])} exited with {p.returncode}; logs in {argo['dir']}",
                                pytrace=False)
            app = objs.get_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "applications",
                                                    "real-excluded-allowed")
            return [c for c in (app.get("status") or {}).get("conditions") or []
                    if c["type"] == "ExcludedResourceWarning"]

        [condition] = wait_for(warned, SYNC_TIMEOUT, interval=0.5, what="the ExcludedResourceWarning condition")
        assert f"ConfigMap {CONFIGMAP} is excluded" in condition["message"], condition
        with pytest.raises(ApiException) as e:
            kube.core.read_namespaced_config_map(CONFIGMAP, ALLOWED)
        assert e.value.status == 404
    assert kube.core.read_namespaced_config_map("argocd-cm", NS).data["resource.exclusions"] == before
