"""A thin Kubernetes client: server-side apply as `modelship`, label-scoped lists, Events, revision states.

Why raw REST over the generated typed APIs: every write is a server-side apply of a plain dict
(`application/apply-patch+yaml`, fieldManager=modelship, force=true), the same call for Deployments,
Services, HTTPRoutes and VirtualServices, and one seam (`Transport`) is all a unit test has to fake.
The blocking kubernetes client runs in a worker thread so the event loop never stalls. Request bodies
and headers are never logged: they may carry credentials.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from modelship.adapters import objects
from modelship.adapters.owner import OwnerLike
from modelship.domain.actions import EventType, Role
from modelship.domain.api import API_VERSION, KIND, ModelDeploymentSpec
from modelship.domain.observations import RevisionState
from modelship.domain.revision import revision_hash
from modelship.domain.status import Revision

FIELD_MANAGER = "modelship"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
REPORTING_CONTROLLER = "modelship.dev/operator"
EVENT_MESSAGE_LIMIT = 1024
API_CONCURRENCY = 32
"""Concurrent API requests (threads and pooled HTTP connections) one operator process makes."""

TRANSIENT_CLIENT_ERRORS = (408, 409, 429)
"""Request Timeout, Conflict and Too Many Requests: 4xx answers that a later retry may clear."""

log = logging.getLogger("modelship.kube")

Obj = dict[str, Any]
Objs = list[Obj]
Query = list[tuple[str, str]]

_PLURALS = {"HTTPRoute": "httproutes", "VirtualService": "virtualservices", "Endpoints": "endpoints"}


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def refused(self) -> bool:
        """The API server judged the request and said no (invalid, forbidden, denied by a webhook or policy,
        kind not served): retrying the same request cannot succeed. Timeouts, conflicts, throttling, 5xx and
        unreachable servers are transient."""
        return 400 <= self.status < 500 and self.status not in TRANSIENT_CLIENT_ERRORS


class Transport(Protocol):
    """One blocking HTTP call to the API server; returns the decoded JSON body or raises KubeError."""

    def request(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any: ...


class ApiClientTransport:
    """Transport over `kubernetes.client.ApiClient`: reuses its kubeconfig/in-cluster auth and TLS."""

    def __init__(self, api_client: Any, timeout_s: float = 30.0) -> None:
        self._api = api_client
        self._timeout = timeout_s

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None) -> ApiClientTransport:
        """In-cluster service account when running in a pod, else the kubeconfig (path or $KUBECONFIG)."""
        # Imported as Any: the client's own annotations are incomplete under mypy --strict.
        client: Any = importlib.import_module("kubernetes.client")
        config: Any = importlib.import_module("kubernetes.config")
        configuration = client.Configuration()
        configuration.connection_pool_maxsize = API_CONCURRENCY
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    def request(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            method_, url, headers_, body_, _ = self._api.param_serialize(
                method=method, resource_path=path, query_params=query or None, header_params=headers,
                body=body, auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method_, url, header_params=headers_, body=body_, _request_timeout=self._timeout
            )
            data: bytes = response.read()
        except ApiException as exc:
            raise KubeError(int(exc.status or 0), str(exc.reason or "error")) from None
        except OSError as exc:  # urllib3 connection errors derive from OSError
            raise KubeError(0, type(exc).__name__, str(exc)) from None
        if response.status >= 400:
            raise _error_from_body(response.status, str(response.reason), data)
        return json.loads(data) if data else None


def _error_from_body(status: int, reason: str, data: bytes) -> KubeError:
    """The API server's Status message names the field and the problem; keep it, drop the rest."""
    try:
        payload = json.loads(data)
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        reason = str(payload.get("reason", reason)) if isinstance(payload, dict) else reason
    except ValueError:
        message = ""
    return KubeError(status, reason, message)


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a namespaced resource (every kind Modelship touches is namespaced)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    plural = _PLURALS.get(kind, kind.lower() + "s")
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """Async verbs over a Transport. Writes are server-side applies owned by field manager `modelship`."""

    def __init__(self, transport: Transport, max_concurrency: int = API_CONCURRENCY) -> None:
        self._t = transport
        # Own pool, sized to the HTTP connection pool: asyncio's default pool (cpu+4 threads) made every
        # reconcile of a 1,000-object backlog queue behind a handful of blocking API calls.
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="kube-api")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        call = functools.partial(self._t.request, method, path, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        """Server-side apply with force: the desired state wins over hand edits of the fields we own."""
        meta = obj["metadata"]
        # Strict: an unknown field (e.g. an experimental-channel field on a standard-channel CRD) is an error,
        # never silently pruned into different routing.
        query: Query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        path = resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        result: Obj = await self._call(
            "PATCH", path, query=query, body=dict(obj), content_type=APPLY_CONTENT_TYPE
        )
        return result

    async def create(self, obj: Mapping[str, Any]) -> Obj:
        path = resource_path(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"])
        result: Obj = await self._call("POST", path, query=[("fieldManager", FIELD_MANAGER)], body=dict(obj))
        return result

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        return await self.read(resource_path(api_version, kind, namespace, name))

    async def read(self, path: str) -> Obj | None:
        """GET any path (cluster-scoped objects included); None when it is not found."""
        try:
            result: Obj = await self._call("GET", path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return result

    async def list(self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        query: Query = [("labelSelector", label_selector(labels))]
        result = await self._call("GET", resource_path(api_version, kind, namespace), query=query)
        items: list[Obj] = list((result or {}).get("items") or [])
        return items

    async def list_controlled(
        self, api_version: str, kind: str, owner: OwnerLike, labels: Mapping[str, str]
    ) -> Objs:
        """Objects with `labels` that `owner` controls: a decoy carrying our labels is not ours."""
        found = await self.list(api_version, kind, owner.namespace, labels)
        return [obj for obj in found if controlled_by(obj, owner.uid)]

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete with background propagation; False when it was already gone (or, with `uid`, replaced by
        another object of the same name: the precondition makes the API server refuse with 409)."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self._call(
                "DELETE", resource_path(api_version, kind, namespace, name),
                query=[("propagationPolicy", "Background")], body=body,
            )
        except KubeError as exc:
            if exc.not_found or (uid and exc.status == 409):
                return False
            raise
        return True

    async def delete_owned(self, api_version: str, kind: str, owner: OwnerLike, name: str) -> bool:
        """Delete `name` only when `owner` controls it: a name we compute may belong to someone else."""
        found = await self.get(api_version, kind, owner.namespace, name)
        if found is None:
            return False
        if not controlled_by(found, owner.uid):
            log.warning("%s %s/%s is not controlled by ModelDeployment %s (uid %s): not deleted",
                        kind, owner.namespace, name, owner.name, owner.uid)
            return False
        uid = found.get("metadata", {}).get("uid")
        return await self.delete(api_version, kind, owner.namespace, name, uid=str(uid) if uid else None)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (the ownerReference with controller=true), if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            return str(ref.get("uid") or "") or None
    return None


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Ours only when our uid is its controller: labels and names can be copied by anyone in the namespace."""
    return controller_uid(obj) == uid


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    """Why the scheduler left a pod Pending, e.g. '0/3 nodes are available: 3 Insufficient nvidia.com/gpu'."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and (
            cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "Unschedulable")
    return None


def _revision_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("labels", {}).get(objects.LABEL_REVISION, ""))


def revision_state(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> RevisionState:
    """A Deployment (and its pods, needed only when not all are ready) as the domain sees it."""
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status", {})
    desired = 1 if spec.get("replicas") is None else int(spec["replicas"])  # the API server's default is 1
    updated = int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)) and int(
        status.get("updatedReplicas", 0)
    ) >= desired
    unschedulable = next((m for m in map(unschedulable_message, pods) if m), None)
    return RevisionState(
        hash=_revision_of(deployment),
        desired_replicas=desired,
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated=updated,
        unschedulable=unschedulable,
    )


def event_object(owner: OwnerLike, type: EventType, reason: str, message: str, instance: str) -> Obj:
    """A core/v1 Event on the ModelDeployment, shown by `kubectl describe mdep` (no count de-dup)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(message) > EVENT_MESSAGE_LIMIT:
        message = message[: EVENT_MESSAGE_LIMIT - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
        "involvedObject": {
            "apiVersion": API_VERSION, "kind": KIND, "name": owner.name, "namespace": owner.namespace,
            "uid": owner.uid,
        },
        "type": EventType(type).value,
        "reason": reason,
        "message": message,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": REPORTING_CONTROLLER,
        "reportingInstance": instance[:128],
    }


def not_ours(kind: str, owner: OwnerLike, name: str) -> KubeError:
    """A refusal (so a condition, an Event and a rollback at the deadline) for a same-named foreign object."""
    return KubeError(
        403, "NotOwned",
        f"{kind} {owner.namespace}/{name} exists and is not controlled by ModelDeployment {owner.name} "
        f"(uid {owner.uid}); rename or delete that object, Modelship neither takes it over nor deletes it",
    )


class KubeCluster:
    """The controller's `Cluster` port on a real API server."""

    def __init__(self, kube: Kube, instance: str | None = None) -> None:
        self.kube = kube
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()

    async def _deployments(self, owner: OwnerLike, labels: Mapping[str, str]) -> list[Obj]:
        return await self.kube.list_controlled("apps/v1", "Deployment", owner, labels)

    async def _pods(self, owner: OwnerLike, deployments: Sequence[Obj], labels: Mapping[str, str]) -> list[Obj]:
        """Pods with `labels` whose controller chain Pod -> ReplicaSet -> Deployment ends at `deployments`."""
        deployment_uids = {d.get("metadata", {}).get("uid") for d in deployments} - {None}
        if not deployment_uids:
            return []
        replica_sets = await self.kube.list("apps/v1", "ReplicaSet", owner.namespace, labels)
        rs_uids = {r.get("metadata", {}).get("uid") for r in replica_sets if controller_uid(r) in deployment_uids}
        rs_uids.discard(None)
        pods = await self.kube.list("v1", "Pod", owner.namespace, labels)
        return [p for p in pods if controller_uid(p) in rs_uids]

    async def revision_states(self, owner: OwnerLike) -> dict[str, RevisionState]:
        """One Deployment list; ReplicaSet and pod lists only when some revision is short of ready pods."""
        selector = objects.owned_selector(owner.name)
        deployments = await self._deployments(owner, selector)
        pods_by_rev: dict[str, list[Obj]] = {}
        lagging = [
            d for d in deployments
            if int(d.get("status", {}).get("readyReplicas", 0)) < int(d.get("spec", {}).get("replicas") or 0)
        ]
        if lagging:
            for pod in await self._pods(owner, lagging, selector):
                pods_by_rev.setdefault(_revision_of(pod), []).append(pod)
        states = {}
        for dep in deployments:
            state = revision_state(dep, pods_by_rev.get(_revision_of(dep), []))
            if state.hash:
                states[state.hash] = state
        return states

    async def ready_pod_ips(self, owner: OwnerLike, revision_hash: str) -> list[str]:
        """IPs of this revision's Ready pods that the ModelDeployment controls through its Deployment and
        ReplicaSet: the operator calls no other pod, whatever labels it carries."""
        labels = {objects.MANAGED_BY: objects.MANAGER, **objects.selector_labels(owner.name, revision_hash)}
        pods = await self._pods(owner, await self._deployments(owner, labels), labels)
        return sorted(
            str(p["status"]["podIP"]) for p in pods if _pod_ready(p) and p.get("status", {}).get("podIP")
        )

    async def apply_revision(
        self, owner: OwnerLike, spec: ModelDeploymentSpec, revision: Revision, role: Role, replicas: int
    ) -> None:
        """Apply a revision's Deployment at `replicas`.

        The spec describes only the revision it asks for. Any other revision (the stable one while a new version
        rolls out or after a rollback, a retired one) keeps the pod template it was created with: only replicas
        and labels change. Rendering it from the current spec would roll the stable pods onto the new model
        repository, image or env -- the very change the rollout is judging. Only when that Deployment is gone
        (deleted by hand) is it rebuilt from the current spec, pinned to its model version.
        """
        desired = objects.deployment(owner, spec, revision, role, replicas)
        name = desired["metadata"]["name"]
        # Read first, whatever the revision: a forced apply would take over a foreign Deployment of this name.
        found = await self.kube.get("apps/v1", "Deployment", owner.namespace, name)
        if found is not None and not controlled_by(found, owner.uid):
            raise not_ours("Deployment", owner, name)
        if revision.hash != revision_hash(spec):
            template = ((found or {}).get("spec") or {}).get("template")
            if template:
                template = dict(template)
                template["metadata"] = {
                    k: v for k, v in (template.get("metadata") or {}).items() if k != "creationTimestamp"
                }
                desired["spec"]["template"] = template
        await self.kube.apply(desired)

    async def delete_revision(self, owner: OwnerLike, revision_hash: str) -> None:
        name = objects.deployment_name(owner.name, revision_hash)
        await self.kube.delete_owned("apps/v1", "Deployment", owner, name)

    async def emit_event(self, owner: OwnerLike, type: EventType, reason: str, message: str) -> None:
        await self.kube.create(event_object(owner, type, reason, message, self.instance))
