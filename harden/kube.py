"""The Kubernetes client edge: the only module that imports `kubernetes`.

Everything that crosses it is plain data (dicts) going out and typed `ClusterError`s coming back:
API errors are translated here, once, into not-found / conflict / forbidden / unreachable /
timed-out / untrusted / server-error, with the cause chained and a hint, so no other module knows
the client's exception types. Reads are paginated LISTs (one per kind and scope); writes are
server-side apply with field manager `harden`.

Every request carries a connect and a read timeout (a half-open connection would otherwise hang a
pipeline forever) and is retried here, one request at a time, never a whole multi-request write:
on 429 and 5xx (honouring Retry-After, with jitter) and on a lost connection. A write whose fate is
unknown (the connection dropped after it was sent) is settled by reading the object back before it
is sent again: if it already landed, it is done. A request that timed out is not retried: the
timeout is the user's bound on how long one request may take.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import tenacity
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from .diff import diff_fields
from .errors import ClusterError, Conflict, Forbidden, InputError, NotFound, TimedOut, Unreachable, Untrusted
from .fieldpath import get_at
from .mergekeys import BUILTIN
from .model import MANAGER, Obj
from .yamlsrc import load_documents

# Objects per LIST page. kubectl and client-go's pager use 500; each page is a round trip in which
# the client waits for the server, so fewer pages overlap less idle time. Measured on the 10,000-policy
# benchmark (bench/), reading the whole live state: 500 -> 0.36 s, 1,000 -> 0.30 s, 2,000 -> 0.29 s,
# 5,000 -> 0.29 s (medians of 5). A page of 2,000 NetworkPolicies is about 1.5 MB of JSON, and a
# connection reset re-reads one page. Kinds whose objects can be large (a ConfigMap or Secret holds
# up to 1 MiB) keep kubectl's 500.
PAGE = 2000
PAGE_LARGE = 500
LARGE_KINDS = frozenset({"ConfigMap", "Secret"})
T = TypeVar("T")

NO_INSECURE = ("fix certificate-authority or certificate-authority-data for this cluster in the kubeconfig "
               "(harden has no --insecure: it would trust any server with your credentials)")


@dataclass(frozen=True)
class Timeouts:
    """Per request: how long to wait for the TCP/TLS connection, and then for each read."""

    connect: float = 10.0
    read: float = 60.0

    @classmethod
    def of(cls, seconds: float) -> Timeouts:
        """`--request-timeout`: the read timeout; connecting never takes longer than the default either."""
        return cls(connect=min(cls.connect, seconds), read=seconds)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5          # tries of one request, the first included
    base: float = 0.2          # backoff scale: waits are random in [0, base * 2**n] ("full jitter")
    cap: float = 8.0           # longest wait between two tries
    budget: float = 60.0       # no new try of one request after this many seconds
    retry_after_cap: float = 30.0  # a server asking for longer is not waited for that long


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server gave one (plus a little jitter, so parallel writers spread out),
    else exponential backoff with full jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = tenacity.wait_random_exponential(multiplier=policy.base, max=policy.cap)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return min(after, self.policy.retry_after_cap) + random.uniform(0, self.policy.base)
        return self.backoff(retry_state)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ClusterError) and exc.retryable


def call(fn: Callable[[], T], policy: RetryPolicy, *, settle: Callable[[], T | None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Run one request `fn` (raising translated errors), retrying it under `policy`.

    `settle` is given for a write that is not idempotent as sent (it carries a resourceVersion
    precondition, or deletes): once a try's fate is unknown, `settle` reads the object back before
    the next try and returns a result if the write already landed (None if not). A conflict after
    such a try is settled the same way: it is usually our own earlier try that moved the object on.
    """
    unsure = False
    stop = tenacity.stop_after_attempt(policy.attempts) | tenacity.stop_after_delay(policy.budget)
    retrying = tenacity.Retrying(stop=stop,
                                 wait=_Wait(policy), retry=tenacity.retry_if_exception(_retryable),
                                 reraise=True, sleep=sleep)
    for attempt in retrying:
        with attempt:
            if unsure and settle is not None:
                landed = settle()
                if landed is not None:
                    return landed
            try:
                return fn()
            except Conflict:
                landed = settle() if unsure and settle is not None else None
                if landed is not None:
                    return landed
                raise
            except ClusterError as exc:
                unsure = unsure or exc.outcome_unknown
                raise
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate client exceptions raised while doing `what` into harden's error hierarchy."""
    try:
        yield
    except ApiException as exc:
        raise _from_api(what, exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise TimedOut(f"{what}: no answer from the Kubernetes API server in time ({exc})",
                       outcome_unknown=True,
                       hint="the connection may be half-open or the server overloaded; "
                            "run again, or allow more time with --request-timeout") from exc
    except urllib3.exceptions.NewConnectionError as exc:  # (a subclass of ConnectTimeoutError: first)
        # Refused or unresolvable: never connected, so nothing was sent; safe to try again.
        raise Unreachable(f"{what}: cannot reach the Kubernetes API server ({_cause(exc)})", retryable=True,
                          hint="check that the cluster is up and --kubeconfig/--context point at it") from exc
    except urllib3.exceptions.ConnectTimeoutError as exc:
        raise TimedOut(f"{what}: could not connect to the Kubernetes API server in time ({exc})",
                       hint="check that the cluster is up, reachable from here (firewall, VPN), and that "
                            "--kubeconfig/--context point at it") from exc
    except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as exc:
        # Connection reset or closed mid-request: the server may have acted on it.
        raise Unreachable(f"{what}: lost the connection to the Kubernetes API server ({_cause(exc)})",
                          retryable=True, outcome_unknown=True,
                          hint="check that the cluster is up and --kubeconfig/--context point at it") from exc


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "reason", None)  # MaxRetryError and ProtocolError wrap the real cause
    return cause if isinstance(cause, BaseException) else exc


def _from_api(what: str, exc: ApiException) -> ClusterError:
    status = exc.status or 0
    reason = _message(exc)
    if status == 0 and "SSLError" in str(exc.reason):
        return _tls_error(what, str(exc.reason))
    if status == 404:
        return NotFound(f"{what}: not found ({reason})", status=status)
    if status == 403:
        return Forbidden(f"{what}: forbidden: {reason}", status=status,
                         hint="the identity in your kubeconfig lacks this permission; see `kubectl auth can-i`")
    if status == 401:
        return Forbidden(f"{what}: unauthorized: {reason}", status=status,
                         hint="your kubeconfig credentials were rejected; refresh them")
    if status == 409:
        return Conflict(f"{what}: conflict: {reason}", status=status)
    if status == 400 and "HTTP request to an HTTPS server" in str(exc.body):
        # Go's TLS listener answers plain HTTP with exactly this 400: golang/go src/net/http/server.go,
        # (*conn).serve, when the first TLS record looks like HTTP (tlsRecordHeaderLooksLikeHTTP).
        return ClusterError(f"{what}: the API server speaks HTTPS, but the kubeconfig's server URL says http://",
                            status=status, hint="change the cluster's server to https://... in the kubeconfig")
    if status == 422 or status == 400:
        return ClusterError(f"{what}: rejected by the API server: {reason}", status=status)
    if status == 429:
        return ClusterError(f"{what}: the API server is throttling requests (429): {reason}", status=status,
                            retryable=True, retry_after=parse_retry_after(_header(exc, "Retry-After")),
                            hint="the server stayed busy through every retry; run again later or lower --parallelism")
    # 503 means the request was not handled (RFC 9110 section 15.6.4); other 5xx may have been.
    retry = status >= 500
    return ClusterError(f"{what}: API server error {status}: {reason}", status=status, retryable=retry,
                        outcome_unknown=retry and status != 503,
                        retry_after=parse_retry_after(_header(exc, "Retry-After")) if retry else None)


def _tls_error(what: str, text: str) -> ClusterError:
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip(" )") \
            if "certificate verify failed:" in text else "the server's certificate is not trusted"
        return Untrusted(f"{what}: TLS certificate verify failed: {detail}", hint=NO_INSECURE)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "wrong version number" in text:
        return ClusterError(f"{what}: TLS handshake failed: the server did not answer in TLS",
                            hint="the kubeconfig's server URL says https:// but that port speaks plain HTTP; "
                                 "check the URL and port")
    first = next((line for line in text.splitlines()[1:] if line.strip()), text)
    return Untrusted(f"{what}: TLS handshake failed: {first.strip()}", hint=NO_INSECURE)


def _header(exc: ApiException, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        return headers.get(name)
    except AttributeError:
        return None


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "").get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def check_kubeconfig(path: str, context: str | None, *, whole: bool = True) -> None:
    """Say what is wrong with a kubeconfig file in words about the file, before the client reads it.
    `whole`: the file is the whole kubeconfig, not one of several merged from KUBECONFIG."""
    if context == "":
        raise InputError("--context is empty", field="--context",
                         hint="name a context (`kubectl config get-contexts`), "
                              "or leave --context out for the current one")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise InputError("the kubeconfig is not a text file", file=path, field="--kubeconfig",
                         hint="point --kubeconfig (or KUBECONFIG) at a kubeconfig YAML file") from None
    except OSError as exc:
        raise InputError(f"cannot read the kubeconfig: {exc.strerror}", file=path, field="--kubeconfig") from None
    if not text.strip():
        raise InputError("the kubeconfig is empty", file=path, field="--kubeconfig",
                         hint="point --kubeconfig (or KUBECONFIG) at a kubeconfig with clusters, users and contexts")
    try:
        docs = load_documents(text, path)
    except InputError as exc:
        d = exc.diagnostic
        raise InputError(f"the kubeconfig is not valid YAML: {d.summary}", file=path, line=d.line, field="--kubeconfig",
                         hint=d.hint) from None
    data = docs[0].data if len(docs) == 1 else None
    if not isinstance(data, dict) or (whole and not isinstance(data.get("clusters"), list)):
        raise InputError("not a kubeconfig: expected one YAML mapping with `clusters`, `users` and `contexts` lists",
                         file=path, field="--kubeconfig",
                         hint="a kubeconfig looks like `kubectl config view --raw` output")
    for section, inner, keys in (("clusters", "cluster", ("certificate-authority-data",)),
                                 ("users", "user", ("client-certificate-data", "client-key-data"))):
        for i, entry in enumerate(data.get(section) or []):
            body = entry.get(inner) if isinstance(entry, dict) else None
            for key in keys:
                value = body.get(key) if isinstance(body, dict) else None
                if value is None:
                    continue
                try:
                    base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError):
                    name = entry.get("name", i)
                    raise InputError(f"{section}[{name}].{inner}.{key} is not valid base64", file=path,
                                     line=docs[0].line_of((section, i, inner, key)) or None, field="--kubeconfig",
                                     hint="paste the base64 of the PEM file (`base64 -w0 FILE`), or use the "
                                          f"{key.removesuffix('-data')} key with a file path") from None
    if context is not None and whole:
        names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
        if context not in names:
            has = ", ".join(map(str, names)) or "none"
            raise InputError(f"context {context!r} is not in the kubeconfig (it has: {has})", file=path,
                             field="--context", hint="check the context name with `kubectl config get-contexts`")


class _ApiClient(k8s.ApiClient):
    # Every request gets the timeouts, including the ones the client makes on its own (discovery),
    # which take no per-call timeout: without one urllib3 waits forever.
    timeouts: tuple[float, float] = (Timeouts.connect, Timeouts.read)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["_request_timeout"] = kwargs.get("_request_timeout") or self.timeouts
        return super().call_api(*args, **kwargs)


class KubeClient:
    """A thin, typed face over the official client for what harden needs."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, *,
                 timeouts: Timeouts = Timeouts(), policy: RetryPolicy = RetryPolicy()) -> None:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        first = path.split(os.pathsep)[0]
        if not os.path.exists(first):
            raise InputError(f"kubeconfig not found: {first}", field="--kubeconfig",
                             hint="pass --kubeconfig FILE, set KUBECONFIG, or plan offline with --snapshot PATH")
        check_kubeconfig(first, context, whole=os.pathsep not in path)
        for other in path.split(os.pathsep)[1:]:
            if os.path.exists(other):
                check_kubeconfig(other, None, whole=False)
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        except (ConfigException, yaml.YAMLError, TypeError, AttributeError, ValueError, KeyError) as exc:
            raise InputError(f"cannot use kubeconfig {path}: {type(exc).__name__}: {exc}",
                             field="--context" if context else "--kubeconfig",
                             hint="check the context name with `kubectl config get-contexts`" if context else
                             "check the kubeconfig's current-context and the cluster and user it names "
                             "(`kubectl config view`)") from None
        configuration.retries = False  # one try per urllib3 call: `call` retries, knowing what is safe to resend
        self.context = context or "(current-context)"
        self.host = configuration.host
        self.policy = policy
        self.api = _ApiClient(configuration)
        self.api.timeouts = (timeouts.connect, timeouts.read)
        self._dyn: DynamicClient | None = None
        self._dyn_lock = threading.Lock()
        self._dyn_error: ClusterError | None = None

    def _call(self, what: str, fn: Callable[[], T], settle: Callable[[], T | None] | None = None) -> T:
        def once() -> T:
            with translated(what):
                return fn()
        return call(once, self.policy, settle=settle)

    @property
    def dynamic(self) -> DynamicClient:
        with self._dyn_lock:  # kinds are listed in parallel: discover once, not once per thread
            if self._dyn_error is not None:
                raise self._dyn_error  # it already failed through every retry; say so at once
            if self._dyn is None:
                try:
                    self._dyn = self._call(f"discover API resources at {self.host}", lambda: DynamicClient(self.api))
                except ClusterError as exc:
                    self._dyn_error = exc
                    raise
        return self._dyn

    def resource(self, api_version: str, kind: str) -> Any | None:
        dyn = self.dynamic
        try:
            return self._call(f"discover {kind}.{api_version}",
                              lambda: dyn.resources.get(api_version=api_version, kind=kind))
        except ResourceNotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every object of a kind (all namespaces unless given), paginated; [] if the kind is unknown."""
        res = self.resource(api_version, kind)
        if res is None:
            return []
        out: list[Obj] = []
        token = None
        limit = PAGE_LARGE if kind in LARGE_KINDS else PAGE
        while True:
            # Each page is its own request, retried on its own: a reset mid-list costs one page. The
            # page is parsed straight from JSON (serialize=False): the client's ResourceInstance
            # model and its to_dict() cost five times the request at 10,000 objects.
            page = self._call(f"list {kind}", lambda: _json(res.get(
                namespace=namespace, limit=limit, _continue=token, serialize=False).data))  # noqa: B023
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                out.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return out

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        """One object, or None if it does not exist (used only to settle a write of unknown fate)."""
        res = self.resource(api_version, kind)
        if res is None:
            return None
        try:
            return self._call(f"read {kind} {_where(namespace, name)}",
                              lambda: res.get(name=name, namespace=namespace or None).to_dict())
        except NotFound:
            return None

    def apply(self, body: Obj, *, manager: str = MANAGER, dry_run: bool = False, force: bool = True) -> Obj:
        res = self._res_for(body)
        meta = body["metadata"]
        return self._call(f"apply {body['kind']} {_where(meta.get('namespace'), meta['name'])}",
                          lambda: res.server_side_apply(body=body, name=meta["name"], namespace=meta.get("namespace"),
                                                        field_manager=manager, force_conflicts=force,
                                                        dry_run="All" if dry_run else None).to_dict(),
                          settle=None if dry_run or "resourceVersion" not in meta else lambda: self._landed(body))

    def patch(self, body: Obj, *, manager: str, dry_run: bool = False) -> Obj:
        """A strategic-merge PATCH (an Update operation) under `manager`: used to hand fields back."""
        res = self._res_for(body)
        meta = body["metadata"]
        return self._call(f"restore {body['kind']} {meta['name']}",
                          lambda: res.patch(body=body, name=meta["name"], namespace=meta.get("namespace"),
                                            content_type="application/strategic-merge-patch+json",
                                            field_manager=manager, dry_run="All" if dry_run else None).to_dict(),
                          settle=None if dry_run else lambda: self._landed(body))

    def delete(self, api_version: str, kind: str, namespace: str, name: str, *,
               resource_version: str | None = None, dry_run: bool = False) -> None:
        res = self.resource(api_version, kind)
        if res is None:
            return
        opts: dict[str, Any] = {"propagationPolicy": "Background"}
        if resource_version:
            opts["preconditions"] = {"resourceVersion": resource_version}
        if dry_run:
            opts["dryRun"] = ["All"]

        def gone() -> bool | None:
            # Deleted, or deletion started (finalizers still pending): a lost answer to our delete.
            live = self.get(api_version, kind, namespace, name)
            return True if live is None or live["metadata"].get("deletionTimestamp") else None

        def send() -> bool:
            res.delete(name=name, namespace=namespace or None, body=opts)
            return True

        with contextlib.suppress(NotFound):  # already gone: the desired end state
            self._call(f"delete {kind} {_where(namespace, name)}", send, settle=None if dry_run else gone)

    # -- plain object calls, for the in-cluster state backend (Secrets and Leases) -----------------

    def select(self, api_version: str, kind: str, namespace: str, labels: dict[str, str]) -> builtins.list[Obj]:
        """The objects of a kind in one namespace carrying `labels` (one LIST, not paginated: state
        objects are few)."""
        res = self._res_for({"apiVersion": api_version, "kind": kind})
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        page = self._call(f"list {kind} in {namespace}",
                          lambda: res.get(namespace=namespace, label_selector=selector).to_dict())
        return [{**item, "apiVersion": api_version, "kind": kind} for item in page.get("items") or []]

    def create(self, body: Obj) -> Obj:
        """POST; a lost answer is settled by reading the object back (it exists as sent: done)."""
        res = self._res_for(body)
        meta = body["metadata"]
        return self._call(f"create {body['kind']} {_where(meta.get('namespace'), meta['name'])}",
                          lambda: res.create(body=body, namespace=meta.get("namespace")).to_dict(),
                          settle=lambda: self._landed(body))

    def replace(self, body: Obj) -> Obj:
        """PUT with the body's resourceVersion as precondition (optimistic concurrency: a Conflict
        means someone else wrote the object since it was read)."""
        res = self._res_for(body)
        meta = body["metadata"]
        return self._call(f"update {body['kind']} {_where(meta.get('namespace'), meta['name'])}",
                          lambda: res.replace(body=body, name=meta["name"], namespace=meta.get("namespace")).to_dict(),
                          settle=lambda: self._landed({**body, "metadata": {k: v for k, v in meta.items()
                                                                             if k != "resourceVersion"}}))

    def openapi(self, path: str) -> dict[str, Any] | None:
        """An OpenAPI v3 document of the server (`/openapi/v3/apis/apps/v1`), None if not served."""
        def read() -> dict[str, Any]:
            request = self.api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                               auth_settings=["BearerToken"])
            response = self.api.call_api(*request)
            response.read()
            # The types map names the type as text ("object"); the client's annotation takes that text's
            # type, str, for the data's.
            return cast("dict[str, Any]", self.api.response_deserialize(response, {"200": "object"}).data)

        try:
            return self._call(f"read {path}", read)  # a read like any other: retried per request
        except NotFound:
            return None

    def version(self) -> str:
        return self._call("read the server version", lambda: k8s.VersionApi(self.api).get_code().git_version)

    def _landed(self, body: Obj) -> Obj | None:
        """The live object if it already carries every field `body` sets (and lacks those it nulls)."""
        meta = body["metadata"]
        live = self.get(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        return live if live is not None and carries(live, body) else None

    def _res_for(self, body: Obj) -> Any:
        res = self.resource(body["apiVersion"], body["kind"])
        if res is None:
            raise ClusterError(f"the API server does not serve {body['kind']} ({body['apiVersion']})",
                               hint="install the CRD first, or deselect the profile that needs it")
        return res


def _json(data: bytes) -> Any:
    """A response body as plain data; the API server answers LIST in JSON (Accept above)."""
    return json.loads(data)


def carries(live: Obj, body: Obj) -> bool:
    """Does `live` already hold what writing `body` sets? A null in `body` (a strategic-merge
    deletion) must be absent in `live`. Server-owned metadata (resourceVersion) is not compared."""
    nulls: list[list[str]] = []

    def strip(value: Any, path: list[str]) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if v is None:
                    nulls.append(path + [k])
                else:
                    out[k] = strip(v, path + [k])
            return out
        return value

    wanted = strip(body, [])
    if diff_fields(wanted, live, BUILTIN):
        return False
    for path in nulls:
        at = get_at(live, path)
        if at is not None:
            return False
    return True


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name
