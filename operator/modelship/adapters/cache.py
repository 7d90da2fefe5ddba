"""Children read from watch caches, and written only when what is desired differs from what is cached.

Two implementations of one port (`ChildCache`):
- `WatchCache`: kopf indexes (filled by the operator's watches of Deployments, ReplicaSets, Pods, Services and
  routes labelled `app.kubernetes.io/managed-by=modelship`), keyed by the uid of each object's controller, so the
  children of one ModelDeployment are one dictionary lookup: no list per reconcile. A read-your-writes overlay
  keeps the response of our own writes until the watch delivers that version (or a newer one), so a reconcile
  right after an apply does not apply again because the watch lags.
- `ApiCache`: the same questions answered by listing over the API, for callers without watches (tests, the
  in-memory reconcile bench, one-shot tools).

Objects in the cache are trimmed (`trim`): no managedFields, no pod templates, only the fields decisions read.

`ensure` is the one place that decides whether to write: a child is applied only when its
`modelship.dev/applied-hash` annotation (a hash of the whole desired object) differs, or a field that others
are known to change behind our back (replicas, labels, a route's spec) differs from what is desired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from modelship.adapters.kube import Kube, controlled_by, controller_uid, label_selector
from modelship.adapters.owner import OwnerLike

APPLIED_HASH = "modelship.dev/applied-hash"
"""Annotation on every child we apply: the hash of the desired object it was applied from."""

Obj = dict[str, Any]

WATCHED_CHILDREN = (
    ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "replicasets", "ReplicaSet"),
    ("v1", "pods", "Pod"),
    ("v1", "services", "Service"),
    ("gateway.networking.k8s.io/v1", "httproutes", "HTTPRoute"),
    ("networking.istio.io/v1", "virtualservices", "VirtualService"),
)
"""(group/version, plural, kind) of every child kind the operator watches (labelled managed-by=modelship) and
keeps in a WatchCache index."""

_KEPT_META = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "deletionTimestamp")
_KEPT_STATUS = {
    "Deployment": ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas"),
    "Pod": ("phase", "podIP", "conditions"),
}
_KEPT_SPEC: dict[str, tuple[str, ...] | None] = {
    "Deployment": ("replicas",),
    "ReplicaSet": (),
    "Pod": (),
    "Service": ("selector",),
}
"""Spec fields kept per kind; a kind not named keeps its whole spec (routes: small, and compared for drift)."""


def trim(obj: Mapping[str, Any]) -> Obj:
    """The part of a child object the controller reads: identity, owner, labels, our annotations, the spec
    fields compared for drift and the status fields decisions read. A Deployment's pod template is not kept:
    10,000 of them would be most of the operator's memory."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    trimmed_meta: Obj = {key: meta[key] for key in _KEPT_META if key in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("modelship.dev/")}
    if annotations:
        trimmed_meta["annotations"] = annotations
    controller = [ref for ref in meta.get("ownerReferences") or [] if ref.get("controller") is True]
    if controller:
        trimmed_meta["ownerReferences"] = [
            {k: controller[0].get(k) for k in ("apiVersion", "kind", "name", "uid", "controller")}
        ]
    result: Obj = {"apiVersion": obj.get("apiVersion"), "kind": kind, "metadata": trimmed_meta}
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        kept = _KEPT_SPEC.get(kind)
        result["spec"] = dict(spec) if kept is None else {k: spec[k] for k in kept if k in spec}
    status = obj.get("status")
    if isinstance(status, Mapping) and kind in _KEPT_STATUS:
        result["status"] = {k: status[k] for k in _KEPT_STATUS[kind] if k in status}
    return result


def _version(obj: Mapping[str, Any] | None) -> int:
    """resourceVersion as a number (etcd's revision); opaque versions compare as 0, i.e. never newer."""
    raw = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else 0


def applied_hash(desired: Mapping[str, Any]) -> str:
    """Stable hash of a desired object (its own hash annotation excluded)."""
    meta = dict(desired.get("metadata") or {})
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k != APPLIED_HASH}
    canonical = json.dumps({**desired, "metadata": meta}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def with_hash(desired: Mapping[str, Any]) -> Obj:
    """`desired` carrying its applied-hash annotation."""
    meta = dict(desired.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH: applied_hash(desired)}
    return {**desired, "metadata": meta}


def _subset(desired: Any, actual: Any) -> bool:
    """Every field of `desired` has that value in `actual` (server defaults in `actual` are ignored)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and _subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(
            _subset(d, a) for d, a in zip(desired, actual, strict=True))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired is actual
    if isinstance(desired, int | float) and isinstance(actual, int | float):
        return float(desired) == float(actual)
    return bool(desired == actual)


def unchanged(desired: Mapping[str, Any], cached: Mapping[str, Any] | None) -> bool:
    """True when applying `desired` would change nothing we own: same applied hash, and the fields others
    are known to edit (labels, a Deployment's replicas, a route's or Service's spec as far as we set it)
    still hold our values. Anything else edited by hand is restored at the next change or resync apply."""
    if cached is None:
        return False
    cached_meta = cached.get("metadata") or {}
    want = applied_hash(desired)
    if (cached_meta.get("annotations") or {}).get(APPLIED_HASH) != want:
        return False
    if not _subset((desired.get("metadata") or {}).get("labels") or {}, cached_meta.get("labels") or {}):
        return False
    kind = str(desired.get("kind") or "")
    spec = desired.get("spec") or {}
    kept = _KEPT_SPEC.get(kind)
    compared = spec if kept is None else {k: spec[k] for k in kept if k in spec}
    return _subset(compared, cached.get("spec") or {})


class ChildCache(Protocol):
    """Where the controller reads the children of a ModelDeployment."""

    @property
    def authoritative(self) -> bool:
        """True when every child we control is in the cache: absence means there is none."""
        ...

    async def owned(
        self, api_version: str, kind: str, namespace: str, controller: str, labels: Mapping[str, str]
    ) -> list[Obj]:
        """Objects of `kind` with `labels` whose controller (ownerReference controller=true) has uid `controller`."""
        ...

    async def lookup(self, api_version: str, kind: str, owner: OwnerLike, name: str) -> Obj | None:
        """The object `name`: ours from the cache; anything not cached as ours is read from the API (a foreign
        object of that name must be seen, so it is never taken over)."""
        ...

    def cached(self, kind: str, controller: str, name: str) -> Obj | None:
        """Our cached copy of `name` (controlled by `controller`), or None: not cached, or no cache at all."""
        ...

    def remember(self, obj: Mapping[str, Any]) -> None:
        """The API server's answer to our write: newer than the watch until the watch catches up."""
        ...

    def forget(self, obj: Mapping[str, Any]) -> None:
        """We deleted `obj` (as last read): hide that version until the watch drops it."""
        ...


class ApiCache:
    """ChildCache answered by the API server itself (no watches): lists and GETs."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @property
    def authoritative(self) -> bool:
        return False

    async def owned(
        self, api_version: str, kind: str, namespace: str, controller: str, labels: Mapping[str, str]
    ) -> list[Obj]:
        found = await self.kube.list(api_version, kind, namespace, labels)
        return [obj for obj in found if controlled_by(obj, controller)]

    async def lookup(self, api_version: str, kind: str, owner: OwnerLike, name: str) -> Obj | None:
        return await self.kube.get(api_version, kind, owner.namespace, name)

    def cached(self, kind: str, controller: str, name: str) -> Obj | None:
        """Nothing is cached: every ensure applies."""
        return None

    def remember(self, obj: Mapping[str, Any]) -> None:
        """Nothing is cached."""

    def forget(self, obj: Mapping[str, Any]) -> None:
        """Nothing is cached."""


IndexLookup = Callable[[str], Iterable[Mapping[str, Any]]]
"""kind -> controller uid -> objects: how WatchCache reads one kopf index (bound at operator start-up)."""


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    found = (obj.get("metadata") or {}).get("labels") or {}
    return all(found.get(k) == v for k, v in labels.items())


class WatchCache:
    """ChildCache over kopf indexes (`bind` them at start-up), with a read-your-writes overlay.

    The overlay and the deleted-object marks are keyed like the indexes (kind, controller uid), so a read costs
    one lookup per kind however many writes are pending elsewhere.
    """

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._indexes: dict[str, Mapping[str, Iterable[Mapping[str, Any]]]] = {}
        self._overlay: dict[tuple[str, str], dict[str, Obj]] = {}
        self._gone: dict[tuple[str, str], dict[str, int]] = {}

    def bind(self, indexes: Mapping[str, Mapping[str, Iterable[Mapping[str, Any]]]]) -> None:
        """kind -> kopf index keyed by controller uid. Kinds without an index (a route CRD the cluster does not
        serve) read as empty."""
        self._indexes = dict(indexes)

    @property
    def authoritative(self) -> bool:
        """Once bound: kopf starts no handler before every index holds its initial listing."""
        return bool(self._indexes)

    def _indexed(self, kind: str, controller: str) -> dict[str, Obj]:
        index = self._indexes.get(kind)
        found = index.get(controller, ()) if index is not None else ()
        return {str(obj["metadata"]["name"]): dict(obj) for obj in found}

    async def owned(
        self, api_version: str, kind: str, namespace: str, controller: str, labels: Mapping[str, str]
    ) -> list[Obj]:
        return [obj for obj in self._merged(kind, controller) if _has_labels(obj, labels)]

    def _merged(self, kind: str, controller: str) -> list[Obj]:
        """Index entries, overridden by our newer writes, minus what we deleted (until the watch agrees)."""
        key = (kind, controller)
        by_name = self._indexed(kind, controller)
        overlay = self._overlay.get(key, {})
        for name, written in list(overlay.items()):
            cached = by_name.get(name)
            if cached is not None and _version(cached) >= _version(written):
                del overlay[name]  # the watch caught up with our write
            else:
                by_name[name] = written
        gone = self._gone.get(key, {})
        for name, version in list(gone.items()):
            if name not in by_name or _version(by_name[name]) > version:
                del gone[name]  # the watch dropped it, or it was created again since
            else:
                del by_name[name]
        for marks, mark_key in ((self._overlay, key), (self._gone, key)):
            if not marks.get(mark_key, True):
                del marks[mark_key]
        return list(by_name.values())

    def cached(self, kind: str, controller: str, name: str) -> Obj | None:
        return next((o for o in self._merged(kind, controller) if o["metadata"].get("name") == name), None)

    async def lookup(self, api_version: str, kind: str, owner: OwnerLike, name: str) -> Obj | None:
        found = self.cached(kind, owner.uid, name)
        return found if found is not None else await self.kube.get(api_version, kind, owner.namespace, name)

    def remember(self, obj: Mapping[str, Any]) -> None:
        name, key = self._key(obj)
        if not key[1]:
            return
        self._gone.get(key, {}).pop(name, None)
        self._overlay.setdefault(key, {})[name] = trim(obj)

    def forget(self, obj: Mapping[str, Any]) -> None:
        name, key = self._key(obj)
        if not key[1]:
            return
        written = self._overlay.get(key, {}).pop(name, None)
        self._gone.setdefault(key, {})[name] = max(_version(written), _version(obj))

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, tuple[str, str]]:
        return str(obj["metadata"].get("name")), (str(obj.get("kind")), controller_uid(obj) or "")


async def ensure(kube: Kube, cache: ChildCache, desired: Mapping[str, Any]) -> Obj | None:
    """Server-side apply `desired` unless the cached copy says nothing would change; returns the applied
    object, or None when nothing was written. Ownership is the caller's to check before."""
    meta = desired["metadata"]
    owner_refs = meta.get("ownerReferences") or []
    controller = next((str(r.get("uid")) for r in owner_refs if r.get("controller") is True), "")
    cached = cache.cached(desired["kind"], controller, meta["name"]) if controller else None
    if unchanged(desired, cached):
        return None
    applied = await kube.apply(with_hash(desired))
    cache.remember(applied)
    return applied


__all__ = [
    "APPLIED_HASH", "ApiCache", "ChildCache", "WatchCache", "applied_hash", "ensure", "label_selector", "trim",
    "unchanged", "with_hash",
]
