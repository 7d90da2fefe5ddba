"""The watch-driven control loop: watch events in, one reconcile per object at a time out.

- `observe` takes every ModelDeployment watch event: the newest body is kept (trimmed), and the object is queued
  unless the event is the echo of our own write.
- `wake` takes events of children (Deployments, ReplicaSets, Pods, Services, routes): their ModelDeployment is
  queued; the reconcile reads the children from the watch caches.
- `handle` (the work queue's handler) reconciles from the kept body, writes status only when it changed and only
  conditionally on the version it decided from, then sends the decision's Events, and answers when the object
  is next due. Our finalizer (routes go before the Services they name) is added and removed here.

Nothing here is durable: after a restart the watches list every object again, each is reconciled once, and the
schedule is rebuilt from status by those reconciles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from modelship.adapters.kube import NOT_LEADER, KubeError
from modelship.adapters.telemetry import Telemetry
from modelship.controller.ports import ModelDeployments
from modelship.controller.reconciler import Reconciler, owner_of
from modelship.controller.workqueue import WorkQueue

log = logging.getLogger("modelship.loop")

FINALIZER = "modelship.dev/finalizer"
"""Ours, not kopf's: removed only after the routes are gone (e2e scenario 14: a route outliving its Service)."""
LABEL_DEPLOYMENT = "modelship.dev/deployment"
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
CONFLICT_RETRY_SECONDS = 0.0
NOT_LEADER_RETRY_SECONDS = 2.0
"""A write refused by the fence while a Lease renewal is late (a slow API server): tried again after about one
election round. No failure backoff and no traceback: it is not the object's fault. A lease that is really lost
stops the workers (wiring's `on_lost`)."""
STATS_SECONDS = 5.0

Key = tuple[str, str]


def version_of(body: Mapping[str, Any] | None) -> str:
    return str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")


def not_newer(seen: str, held: str) -> bool:
    """True when resourceVersion `seen` is the one we hold or an older one. They are etcd revisions (numbers) on
    every API server we know; should one be opaque, only an identical version counts as not newer."""
    if not (seen.isdigit() and held.isdigit()):
        return seen == held
    return int(seen) <= int(held)


@dataclass(frozen=True)
class Held:
    """One ModelDeployment as kept between events: identity and version in the clear, the body packed."""

    uid: str
    version: str
    packed: bytes


class Bodies:
    """The newest body of every ModelDeployment, trimmed and zlib-packed: a settled object with its history is
    ~22 KiB as Python dicts and ~2 KiB packed (10,000 objects: 220 MB against 20 MB). A reconcile unpacks one
    (tens of microseconds)."""

    def __init__(self) -> None:
        self._held: dict[Key, Held] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def held(self, key: Key) -> Held | None:
        return self._held.get(key)

    def get(self, key: Key) -> dict[str, Any] | None:
        held = self._held.get(key)
        return None if held is None else json.loads(zlib.decompress(held.packed))

    def put(self, key: Key, body: Mapping[str, Any]) -> dict[str, Any]:
        trimmed = trim_body(body)
        packed = zlib.compress(json.dumps(trimmed, separators=(",", ":")).encode(), 1)
        self._held[key] = Held(str(trimmed["metadata"].get("uid") or ""), version_of(trimmed), packed)
        return trimmed

    def pop(self, key: Key) -> dict[str, Any] | None:
        body = self.get(key)
        self._held.pop(key, None)
        return body


def trim_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a reconcile reads: no managedFields, no kubectl copy of the whole object (each can be larger than
    the rest of the object; 10,000 of them are most of the memory)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": meta,
        "spec": body.get("spec") or {}, "status": body.get("status") or {},
    }


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


class ControlLoop:
    """Feeds the work queue from watch events and reconciles what it serves."""

    def __init__(
        self,
        reconciler: Reconciler,
        objects: ModelDeployments,
        telemetry: Telemetry,
        workers: int = 16,
        resync_seconds: float = 600.0,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.objects = objects
        self.telemetry = telemetry
        self.queue = WorkQueue(self.handle, workers=workers, resync_seconds=resync_seconds)
        self.leading = leading or (lambda: True)
        self._bodies = Bodies()

    # --- watch events ---------------------------------------------------------------------------------------
    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ModelDeployment watch event (type None: kopf's initial listing)."""
        key = key_of(body)
        if event_type == "DELETED":
            gone = self._bodies.pop(key)
            self.queue.forget(key)
            self.reconciler.forget(gone or body)
            return
        current = self._bodies.held(key)
        same_object = current is not None and current.uid == str(body["metadata"].get("uid") or "")
        if same_object and current is not None and not_newer(version_of(body), current.version):
            return  # the echo of our own write (kept already), or older than what we hold
        self._bodies.put(key, body)
        self.queue.add(key)

    def wake(self, body: Mapping[str, Any]) -> None:
        """A child changed: queue its ModelDeployment (named by its label; the reconcile checks ownership)."""
        meta = body.get("metadata") or {}
        name = (meta.get("labels") or {}).get(LABEL_DEPLOYMENT)
        if name:
            key = (str(meta.get("namespace")), str(name))
            if key in self._bodies:
                self.queue.add(key)

    def body(self, key: Key) -> dict[str, Any] | None:
        return self._bodies.get(key)

    # --- reconciling ----------------------------------------------------------------------------------------
    async def handle(self, key: Hashable) -> float | None:
        """Reconcile one object; seconds until it is due again (None: on change and at resync only)."""
        assert isinstance(key, tuple)
        body = self._bodies.get(key)
        if body is None:
            self.queue.forget(key)
            return None
        namespace, name = key
        finalizers = list(body["metadata"].get("finalizers") or [])
        try:
            if body["metadata"].get("deletionTimestamp"):
                if FINALIZER in finalizers:
                    await self.reconciler.delete(body)
                    self._keep(await self.objects.set_finalizers(
                        namespace, name, body["metadata"]["resourceVersion"],
                        [f for f in finalizers if f != FINALIZER]))
                return None
            if FINALIZER not in finalizers:
                body = self._keep(await self.objects.set_finalizers(
                    namespace, name, body["metadata"]["resourceVersion"], [*finalizers, FINALIZER]))
            result = await self.reconciler.step(body)
            if result.status_patch:
                self._keep(await self.objects.patch_status(
                    namespace, name, body["metadata"]["resourceVersion"], result.status_patch))
            await self.reconciler.publish(owner_of(body), result)
            if result.requeue_after >= self.reconciler.idle_resync_seconds:
                return None  # nothing due: the queue's jittered resync
            return result.requeue_after
        except KubeError as exc:
            if exc.reason == NOT_LEADER:
                log.warning("reconcile of %s/%s deferred: %s", namespace, name, exc.message)
                return NOT_LEADER_RETRY_SECONDS
            if exc.status == 409:  # the object moved on since this decision: decide again from the newest
                fresh = await self.objects.read(namespace, name)
                if fresh is None:
                    self.observe("DELETED", body)
                    return None
                self._bodies.put(key, fresh)
                return CONFLICT_RETRY_SECONDS
            if exc.not_found:
                self.observe("DELETED", body)
                return None
            raise

    def _keep(self, written: Mapping[str, Any]) -> dict[str, Any]:
        """Our write's answer is the newest body: the next reconcile must not decide from the one before."""
        key = key_of(written)
        held = self._bodies.held(key)
        if held is None or not_newer(held.version, version_of(written)):  # unless the watch is ahead
            return self._bodies.put(key, written)
        return trim_body(written)

    # --- running ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the queue and report its state until cancelled."""
        reporter = asyncio.create_task(self._report(), name="queue-telemetry")
        try:
            await self.queue.run()
        finally:
            reporter.cancel()

    async def _report(self) -> None:
        while True:
            stats = self.queue.stats()
            self.telemetry.observe_queue(stats.depth, stats.oldest_age_seconds, stats.in_flight)
            self.telemetry.observe_leader(self.leading())
            await asyncio.sleep(STATS_SECONDS)
