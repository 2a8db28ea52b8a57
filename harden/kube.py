"""The Kubernetes client edge: the only module that imports `kubernetes`.

Everything that crosses it is plain data (dicts) going out and typed `ClusterError`s coming back:
API errors are translated here, once, into not-found / conflict / forbidden / unreachable /
server-error, with the cause chained and a hint, so no other module knows the client's exception
types. Reads are paginated LISTs (one per kind and scope); writes are server-side apply with field
manager `harden`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Any, Iterator

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from .errors import ClusterError, Conflict, Forbidden, InputError, NotFound, Unreachable
from .model import MANAGER, Obj

PAGE = 500


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate client exceptions raised while doing `what` into harden's error hierarchy."""
    try:
        yield
    except ApiException as exc:
        status = exc.status or 0
        reason = _message(exc)
        if status == 404:
            raise NotFound(f"{what}: not found ({reason})", status=status) from exc
        if status == 403:
            raise Forbidden(f"{what}: forbidden: {reason}", status=status,
                            hint="the identity in your kubeconfig lacks this permission; see `kubectl auth can-i`") from exc
        if status == 401:
            raise Forbidden(f"{what}: unauthorized: {reason}", status=status,
                            hint="your kubeconfig credentials were rejected; refresh them") from exc
        if status == 409:
            raise Conflict(f"{what}: conflict: {reason}", status=status) from exc
        if status == 422 or status == 400:
            raise ClusterError(f"{what}: rejected by the API server: {reason}", status=status) from exc
        retry = status == 429 or status >= 500 or status == 0
        raise ClusterError(f"{what}: API server error {status}: {reason}", status=status, retryable=retry) from exc
    except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as exc:
        cause = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the real cause
        raise Unreachable(f"{what}: cannot reach the Kubernetes API server ({cause})",
                          retryable=True, hint="check that the cluster is up and --kubeconfig/--context point at it") from exc


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


class KubeClient:
    """A thin, typed face over the official client for what harden needs."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        first = path.split(os.pathsep)[0]
        if not os.path.exists(first):
            raise InputError(f"kubeconfig not found: {first}", field="--kubeconfig",
                             hint="pass --kubeconfig FILE, set KUBECONFIG, or plan offline with --snapshot PATH")
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        except (ConfigException, yaml.YAMLError, TypeError, AttributeError, ValueError, KeyError) as exc:
            raise InputError(f"cannot use kubeconfig {path}: {type(exc).__name__}: {exc}", field="--context" if context else "--kubeconfig",
                             hint="check the context name with `kubectl config get-contexts`") from None
        configuration.retries = 1  # harden retries itself, with backoff, where it is safe
        self.context = context or "(current-context)"
        self.host = configuration.host
        self.api = k8s.ApiClient(configuration)
        self._dyn: DynamicClient | None = None

    @property
    def dynamic(self) -> DynamicClient:
        if self._dyn is None:
            with translated(f"discover API resources at {self.host}"):
                self._dyn = DynamicClient(self.api)
        return self._dyn

    def resource(self, api_version: str, kind: str) -> Any | None:
        try:
            with translated(f"discover {kind}.{api_version}"):
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every object of a kind (all namespaces unless given), paginated; [] if the kind is unknown."""
        res = self.resource(api_version, kind)
        if res is None:
            return []
        out: list[Obj] = []
        token = None
        while True:
            with translated(f"list {kind}"):
                page = res.get(namespace=namespace, limit=PAGE, _continue=token)
            body = page.to_dict()
            for item in body.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                out.append(item)
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return out

    def apply(self, body: Obj, *, manager: str = MANAGER, dry_run: bool = False, force: bool = True) -> Obj:
        res = self._res_for(body)
        meta = body["metadata"]
        with translated(f"apply {body['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")):
            result = res.server_side_apply(body=body, name=meta["name"], namespace=meta.get("namespace"),
                                           field_manager=manager, force_conflicts=force,
                                           dry_run="All" if dry_run else None)
        return result.to_dict()

    def patch(self, body: Obj, *, manager: str, dry_run: bool = False) -> Obj:
        """A strategic-merge PATCH (an Update operation) under `manager`: used to hand fields back."""
        res = self._res_for(body)
        meta = body["metadata"]
        with translated(f"restore {body['kind']} {meta['name']}"):
            result = res.patch(body=body, name=meta["name"], namespace=meta.get("namespace"),
                               content_type="application/strategic-merge-patch+json",
                               field_manager=manager, dry_run="All" if dry_run else None)
        return result.to_dict()

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
        try:
            with translated(f"delete {kind} {namespace + '/' if namespace else ''}{name}"):
                res.delete(name=name, namespace=namespace or None, body=opts)
        except NotFound:
            pass  # already gone: the desired end state

    def openapi(self, path: str) -> dict | None:
        """An OpenAPI v3 document of the server (`/openapi/v3/apis/apps/v1`), None if not served."""
        try:
            with translated(f"read {path}"):
                request = self.api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                                   auth_settings=["BearerToken"])
                response = self.api.call_api(*request)
                response.read()
                return self.api.response_deserialize(response, {"200": "object"}).data
        except NotFound:
            return None

    def version(self) -> str:
        with translated("read the server version"):
            v = k8s.VersionApi(self.api).get_code()
        return v.git_version

    def _res_for(self, body: Obj) -> Any:
        res = self.resource(body["apiVersion"], body["kind"])
        if res is None:
            raise ClusterError(f"the API server does not serve {body['kind']} ({body['apiVersion']})",
                               hint="install the CRD first, or deselect the profile that needs it")
        return res
