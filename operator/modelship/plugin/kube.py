"""The real ClusterApi on the kubernetes client, and the translation of its failures into plain sentences.

Every call names its verb, so a 403 can say exactly which permission is missing; a 404 is told apart as
"no such object" (a Status naming the kind) or "the CRD is not installed" (no such API path).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes import client
from kubernetes import config as _config
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from modelship.domain.api import GROUP, PLURAL, VERSION
from modelship.plugin.errors import PluginError

FIELD_MANAGER = "kubectl-modelship"
RESOURCE = f"{PLURAL}.{GROUP}"
# The config and watch modules are untyped; Any keeps mypy --strict honest about that boundary.
config: Any = _config
watch: Any = _watch
REQUEST_TIMEOUT = (5, 30)
POLL_S = 2.0
WATCH_WINDOW_S = 60


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def translate(exc: Exception, verb: str, namespace: str | None, name: str | None, server: str) -> PluginError:
    """One actionable sentence for each failure an SRE can meet; unknown ones keep the server's message."""
    scope = f"in namespace {namespace}" if namespace else "in all namespaces"
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        cause = getattr(exc, "reason", None) or exc
        detail = str(cause).split("): ", 1)[-1].rstrip(")\"'")
        return PluginError(
            f"cannot reach the API server at {server} ({detail}). "
            "Check the cluster is up and --kubeconfig/--context point at it."
        )
    if not isinstance(exc, ApiException):
        return PluginError(f"{verb} {RESOURCE}: {exc}")
    body = _status_body(exc)
    message = str(body.get("message") or exc.reason or "")
    if exc.status == 401:
        return PluginError(
            f"the API server at {server} rejected your credentials (401 Unauthorized): "
            "log in again or check the kubeconfig user"
        )
    if exc.status == 403:
        return PluginError(
            f"forbidden: you may not {verb} {RESOURCE} {scope}: {message}. "
            f"Ask a cluster admin for a Role granting verb '{verb}' on resource '{PLURAL}' in API group "
            f"'{GROUP}' (check with: kubectl auth can-i {verb} {RESOURCE}"
            + (f" -n {namespace})" if namespace else " -A)")
        )
    if exc.status == 404:
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        if body.get("reason") == "NotFound" and details and details.get("kind") == PLURAL and name:
            return PluginError(
                f"modeldeployment {namespace}/{name} not found; list them with kubectl modelship get -n {namespace}"
            )
        return PluginError(
            f"the ModelDeployment API ({GROUP}/{VERSION}) is not installed on {server}: install the CRD "
            "(kubectl apply -f crds/modeldeployments.yaml, or the modelship Helm chart)"
        )
    return PluginError(f"{verb} {RESOURCE} {scope} failed ({exc.status} {exc.reason}): {message}")


class KubeApi:
    """ClusterApi over a kubeconfig (or in-cluster credentials), with short timeouts and one retry."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        configuration = client.Configuration()
        if kubeconfig and not os.path.exists(kubeconfig):
            raise PluginError(f"kubeconfig {kubeconfig} does not exist")
        self._namespace, self._user = "default", ""
        try:
            if (
                kubeconfig is None
                and "KUBECONFIG" not in os.environ
                and os.environ.get("KUBERNETES_SERVICE_HOST")
                and not os.path.exists(os.path.expanduser("~/.kube/config"))
            ):
                config.load_incluster_config(client_configuration=configuration)
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                    self._namespace = handle.read().strip() or "default"
            else:
                contexts, current = config.list_kube_config_contexts(kubeconfig)
                chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
                if chosen is None:
                    raise PluginError(
                        f"context {context!r} not found in kubeconfig "
                        f"(have: {', '.join(c.get('name', '?') for c in contexts)})"
                    )
                self._namespace = chosen.get("context", {}).get("namespace") or "default"
                self._user = chosen.get("context", {}).get("user") or ""
                config.load_kube_config(
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise PluginError(f"cannot load kubeconfig: {exc}") from None
        configuration.retries = 1
        self._server = str(configuration.host)
        self._client = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._client)

    @property
    def default_namespace(self) -> str:
        return self._namespace

    def _call(self, verb: str, namespace: str | None, name: str | None, func: Any, *args: Any, **kw: Any) -> Any:
        try:
            return func(*args, **kw)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc, verb, namespace, name, self._server) from None

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "get",
            namespace,
            name,
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return result

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            result = self._call(
                "list",
                None,
                None,
                self._custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                _request_timeout=REQUEST_TIMEOUT,
            )
        else:
            result = self._call(
                "list",
                namespace,
                None,
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                _request_timeout=REQUEST_TIMEOUT,
            )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        body = {"metadata": {"annotations": annotations}}
        result: dict[str, Any] = self._call(
            "patch",
            namespace,
            name,
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )
        return result

    def whoami(self) -> str:
        """SelfSubjectReview tells who the server thinks we are (OIDC, tokens, certs); else kubeconfig."""
        try:
            review = client.AuthenticationV1Api(self._client).create_self_subject_review(
                client.V1SelfSubjectReview(), _request_timeout=REQUEST_TIMEOUT
            )
            username = review.status.user_info.username if review.status and review.status.user_info else None
        except (ApiException, urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError):
            username = None
        return str(username or self._user or "unknown")

    def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """List+watch on metadata.name; falls back to polling every 2 s when watching is not allowed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        selector = f"metadata.name={name}"
        while deadline is None or time.monotonic() < deadline:
            listing = self._call(
                "list",
                namespace,
                name,
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=selector,
                _request_timeout=REQUEST_TIMEOUT,
            )
            items = listing.get("items") or []
            if not items:
                self.get(namespace, name)  # raises the clear "not found"
            yield items[0]
            version = (listing.get("metadata") or {}).get("resourceVersion")
            try:
                yield from self._stream(namespace, selector, version, deadline)
            except _WatchForbidden:
                yield from self._poll(namespace, name, deadline)
                return

    def _stream(
        self, namespace: str, selector: str, version: str | None, deadline: float | None
    ) -> Iterator[dict[str, Any]]:
        """Watch events until the deadline or until the server ends the stream (then the caller re-lists)."""
        while deadline is None or time.monotonic() < deadline:
            window = (
                WATCH_WINDOW_S if deadline is None else max(1, min(WATCH_WINDOW_S, int(deadline - time.monotonic())))
            )
            stream = watch.Watch().stream(
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=selector,
                resource_version=version,
                timeout_seconds=window,
                _request_timeout=(5, window + 10),
            )
            try:
                for event in stream:
                    kind, obj = event.get("type"), event.get("object")
                    if kind == "ERROR":
                        return  # e.g. 410 Gone: re-list
                    if kind == "DELETED":
                        raise PluginError(f"modeldeployment {namespace}/{selector.split('=', 1)[1]} was deleted")
                    if isinstance(obj, dict):
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED"):
                            yield obj
            except ApiException as exc:
                if exc.status == 403:
                    raise _WatchForbidden() from None
                if exc.status == 410:
                    return
                raise translate(exc, "watch", namespace, None, self._server) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise translate(exc, "watch", namespace, None, self._server) from None

    def _poll(self, namespace: str, name: str, deadline: float | None) -> Iterator[dict[str, Any]]:
        last = None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(POLL_S)
            obj = self.get(namespace, name)
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version != last:
                last = version
                yield obj


    def watch_collection(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every ModelDeployment of `namespace` (None: all) as ("RELIST", {}) then ("ADDED", obj) for each listed,
        then the watch's ("ADDED"|"MODIFIED"|"DELETED", obj); lists again whenever the stream ends. Forever."""
        while True:
            if namespace is None:
                func: Any = self._custom.list_cluster_custom_object
                args: tuple[str, ...] = (GROUP, VERSION, PLURAL)
            else:
                func, args = self._custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
            listing = self._call("list", namespace, None, func, *args, _request_timeout=REQUEST_TIMEOUT)
            yield "RELIST", {}
            for obj in listing.get("items") or []:
                yield "ADDED", obj
            version = (listing.get("metadata") or {}).get("resourceVersion")
            try:
                for event in watch.Watch().stream(func, *args, resource_version=version, timeout_seconds=WATCH_WINDOW_S,
                                                  _request_timeout=(5, WATCH_WINDOW_S + 10)):
                    kind, obj = event.get("type"), event.get("object")
                    if kind == "ERROR" or not isinstance(obj, dict):
                        break  # e.g. 410 Gone: list again
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield str(kind), obj
            except ApiException as exc:
                if exc.status != 410:
                    raise translate(exc, "watch", namespace, None, self._server) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise translate(exc, "watch", namespace, None, self._server) from None


class _WatchForbidden(Exception):
    """The caller may get but not watch: poll instead."""
