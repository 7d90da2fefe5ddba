"""A thin Kubernetes client: server-side apply as `modelship`, label-scoped lists, Events, revision states.

Why raw REST over the generated typed APIs: every write is a server-side apply of a plain dict
(`application/apply-patch+yaml`, fieldManager=modelship, force=true), the same call for Deployments,
Services, HTTPRoutes and VirtualServices, and one seam (`Transport`) is all a unit test has to fake.
The real transport is asyncio (`transport.AsyncTransport`); in-memory fakes may answer synchronously.
Request bodies and headers are never logged: they may carry credentials.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NamedTuple, Protocol

from modelship.adapters.owner import OwnerLike

FIELD_MANAGER = "modelship"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_TYPE = "application/merge-patch+json"
REPORTING_CONTROLLER = "modelship.dev/operator"
EVENT_MESSAGE_LIMIT = 1024

TRANSIENT_CLIENT_ERRORS = (408, 409, 429)
"""Request Timeout, Conflict and Too Many Requests: 4xx answers that a later retry may clear."""

log = logging.getLogger("modelship.kube")

Obj = dict[str, Any]
Objs = list[Obj]
Query = list[tuple[str, str]]

_PLURALS = {"HTTPRoute": "httproutes", "VirtualService": "virtualservices", "Endpoints": "endpoints",
            "GatewayClass": "gatewayclasses"}


WATCH_TIMEOUT_S = 270
"""A watch is ended by the server after this long (the client then watches again from its last version):
below the 5-minute idle timeouts of common load balancers in front of API servers."""

NOT_LEADER = "NotLeader"
"""KubeError reason of a write the leader-election fence refused (status 0: it never left the process)."""


class Page(NamedTuple):
    """One page of a LIST: its objects and the resourceVersion of the snapshot they were read from."""

    items: Objs
    resource_version: str


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
    """One HTTP call to the API server; returns the decoded JSON body or raises KubeError.

    `request` may be a coroutine function (the real, asyncio transport) or a plain one (in-memory fakes,
    which need no thread): `Kube` awaits whatever it returns when that is awaitable.
    """

    def request(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any: ...


def collection_path(api_version: str, plural: str, namespace: str | None = None) -> str:
    """REST path of a collection in `namespace`, or across all namespaces (None)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{where}/{plural}"


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a resource in `namespace`; "" for a cluster-scoped kind (a GatewayClass)."""
    path = collection_path(api_version, _PLURALS.get(kind, kind.lower() + "s"), namespace)
    return f"{path}/{name}" if name else path


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """Async verbs over a Transport. Writes are server-side applies owned by field manager `modelship`."""

    def __init__(self, transport: Transport, fence: Callable[[], None] | None = None) -> None:
        """`fence` runs before every write and raises (KubeError NotLeader) when this replica may no longer
        write: a replica that lost its lease must not act on a stale view of the world."""
        self._t = transport
        self._fence = fence

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._fence is not None and method != "GET":
            self._fence()
        result = self._t.request(method, path, **kwargs)
        return await result if inspect.isawaitable(result) else result

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

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> Obj:
        """JSON merge patch of any path (e.g. a `/status` subresource). Put `metadata.resourceVersion` in `body`
        to make it conditional: the API server answers 409 when the object changed since that version."""
        result: Obj = await self._call(
            "PATCH", path, query=[("fieldManager", FIELD_MANAGER)], body=dict(body), content_type=MERGE_PATCH_TYPE
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

    async def list_pages(self, path: str, selector: str, page: int = 500) -> AsyncIterator[Page]:
        """Every object at a collection `path` (any namespace scope) with `selector`, one page of `page` objects
        at a time: the caller keeps what it needs of a page before the next is read, so a start-up listing of
        15,000 Services is never all in memory at once (it was: ~1.7 GiB more RSS after a restart at 10,000
        ModelDeployments). Every page carries the list's resourceVersion: a watch started from it misses nothing
        and repeats nothing."""
        token = ""
        while True:
            query: Query = [("labelSelector", selector), ("limit", str(page))]
            if token:
                query.append(("continue", token))
            result = await self._call("GET", path, query=query) or {}
            meta = result.get("metadata") or {}
            yield Page(list(result.get("items") or []), str(meta.get("resourceVersion") or ""))
            token = str(meta.get("continue") or "")
            if not token:
                return

    async def watch(
        self, path: str, selector: str, resource_version: str, timeout_s: int = WATCH_TIMEOUT_S
    ) -> AsyncIterator[Obj]:
        """Watch events at a collection `path` from `resource_version` (bookmarks on), until the server ends
        the watch after about `timeout_s`. The transport must stream (`stream`): the real one does; the
        in-memory fakes of the request-only tests need not."""
        stream = getattr(self._t, "stream", None)
        if stream is None:
            raise KubeError(0, "NoWatch", "this transport cannot stream watch events")
        query: Query = [
            ("labelSelector", selector), ("watch", "1"), ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout_s)),
        ]
        async for event in stream(path, query=query):
            yield event

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


def not_ours(kind: str, owner: OwnerLike, name: str) -> KubeError:
    """A refusal (so a condition, an Event and a rollback at the deadline) for a same-named foreign object."""
    return KubeError(
        403, "NotOwned",
        f"{kind} {owner.namespace}/{name} exists and is not controlled by ModelDeployment {owner.name} "
        f"(uid {owner.uid}); rename or delete that object, Modelship neither takes it over nor deletes it",
    )
