"""Children read from watch caches, and written only when what is desired differs from what is cached.

Two implementations of one port (`ChildCache`):
- `WatchCache`: filled by the informer (adapters/informer.py: a LIST, then a WATCH, of Deployments, ReplicaSets,
  Pods, Services and routes labelled `app.kubernetes.io/managed-by=modelship`), keyed by the uid of each
  object's controller, so the children of one ModelDeployment are one dictionary lookup: no list per
  reconcile. A read-your-writes overlay keeps the response of our own writes until the watch delivers that
  version (or a newer one), so a reconcile right after an apply does not apply again because the watch lags.
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
from collections.abc import Mapping
from typing import Any, Protocol

from modelship.adapters.kube import Kube, controlled_by, controller_uid, label_selector
from modelship.adapters.owner import OwnerLike

APPLIED_HASH = "modelship.dev/applied-hash"
"""Annotation on every child we apply: the hash of the desired object it was applied from."""

Obj = dict[str, Any]
MANAGED = {"app.kubernetes.io/managed-by": "modelship"}
"""The label every child carries; the watches and the start-up LIST select by it on the API server."""

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


def is_subset(desired: Any, actual: Any) -> bool:
    """Every field of `desired` has that value in `actual` (server defaults in `actual` are ignored)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(
            is_subset(d, a) for d, a in zip(desired, actual, strict=True))
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
    if not is_subset((desired.get("metadata") or {}).get("labels") or {}, cached_meta.get("labels") or {}):
        return False
    kind = str(desired.get("kind") or "")
    spec = desired.get("spec") or {}
    kept = _KEPT_SPEC.get(kind)
    compared = spec if kept is None else {k: spec[k] for k in kept if k in spec}
    return is_subset(compared, cached.get("spec") or {})


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


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    found = (obj.get("metadata") or {}).get("labels") or {}
    return all(found.get(k) == v for k, v in labels.items())


ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""


class WatchCache:
    """ChildCache filled like a client-go informer (adapters/informer.py): one paged LIST per kind at start-up,
    then every watch event (`observe`); trimmed objects keyed by (kind, controller uid).

    Versions decide: an event or a write answer older than what is held is ignored, so a reconcile right after
    our own apply does not apply again because the watch lags (read-your-writes), and an object we deleted is
    not brought back by a late event about it (a tombstone holds its version until the DELETED event).
    Why not kopf indexes: kopf holds every handler until each pre-existing object of every indexed kind has been
    indexed, with one readiness toggle per object whose creation wakes every waiting worker; at 1,000
    ModelDeployments (~5,000 children) a restart spent minutes there (bench/README.md, fleet).
    """

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._by_owner: dict[tuple[str, str], dict[str, Obj]] = {}
        self._owner_of: dict[ObjectKey, str] = {}
        self._held: dict[ObjectKey, int] = {}
        self._tombstones: dict[ObjectKey, int] = {}
        self._primed = False

    @property
    def authoritative(self) -> bool:
        """Once primed: every child we control was listed, and the watches keep it current."""
        return self._primed

    def mark_primed(self) -> None:
        """Every child kind was listed (adapters/informer.py): from now on absence means there is none."""
        self._primed = True

    @staticmethod
    def key(obj: Mapping[str, Any]) -> ObjectKey:
        meta = obj.get("metadata") or {}
        return str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name"))

    def retain(self, kind: str, namespace: str | None, seen: set[ObjectKey]) -> list[Obj]:
        """After a fresh LIST of `kind` in `namespace` (None: all): drop what is held there and was not
        listed (deleted while no watch ran), returning the dropped objects so their owners can be woken."""
        gone = [key for key in self._owner_of
                if key[0] == kind and (namespace is None or key[1] == namespace) and key not in seen]
        dropped: list[Obj] = []
        for key in gone:
            held = self.cached(kind, self._owner_of[key], key[2])
            self._drop(key)
            if held is not None:
                dropped.append(held)
        return dropped

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """A watch event (type None: an initial listing). True when it is news: False for the echo of our own
        write (its answer is held already), an event older than what is held, or one about an object we
        deleted. Only news is worth a reconcile: every apply would otherwise wake its owner once more."""
        key = self.key(obj)
        version = _version(obj)
        if event_type == "DELETED":
            self._drop(key)
            self._tombstones.pop(key, None)
            return True
        if version and version <= max(self._held.get(key, 0), self._tombstones.get(key, 0)):
            return False  # older than what we hold (our own write's answer), or than our delete
        self._tombstones.pop(key, None)
        self._drop(key)
        controller = controller_uid(obj)
        if not controller:
            return True
        self._by_owner.setdefault((key[0], controller), {})[key[2]] = trim(obj)
        self._owner_of[key] = controller
        self._held[key] = version
        return True

    def _drop(self, key: ObjectKey) -> None:
        controller = self._owner_of.pop(key, None)
        self._held.pop(key, None)
        if controller is None:
            return
        owned = self._by_owner.get((key[0], controller))
        if owned is not None:
            owned.pop(key[2], None)
            if not owned:
                del self._by_owner[(key[0], controller)]

    def cached(self, kind: str, controller: str, name: str) -> Obj | None:
        return self._by_owner.get((kind, controller), {}).get(name)

    async def owned(
        self, api_version: str, kind: str, namespace: str, controller: str, labels: Mapping[str, str]
    ) -> list[Obj]:
        owned = self._by_owner.get((kind, controller), {})
        return [obj for obj in owned.values() if _has_labels(obj, labels)]

    async def lookup(self, api_version: str, kind: str, owner: OwnerLike, name: str) -> Obj | None:
        found = self.cached(kind, owner.uid, name)
        return found if found is not None else await self.kube.get(api_version, kind, owner.namespace, name)

    def remember(self, obj: Mapping[str, Any]) -> None:
        self.observe("MODIFIED", obj)

    def forget(self, obj: Mapping[str, Any]) -> None:
        key = self.key(obj)
        held = max(self._held.get(key, 0), _version(obj))
        self._drop(key)
        self._tombstones[key] = held

    def size(self) -> int:
        return len(self._owner_of)


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
