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
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from modelship.adapters.kube import KubeError
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
STATS_SECONDS = 5.0

Key = tuple[str, str]


def _version(body: Mapping[str, Any] | None) -> int:
    raw = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else -1


def not_newer(seen: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    """True when `seen` is the version we hold or an older one. resourceVersions are etcd revisions (numbers)
    on every API server we know; should one be opaque, only an identical version counts as not newer."""
    seen_version, held_version = _version(seen), _version(held)
    if seen_version < 0 or held_version < 0:
        return bool(seen["metadata"].get("resourceVersion") == held["metadata"].get("resourceVersion"))
    return seen_version <= held_version


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
        self._bodies: dict[Key, dict[str, Any]] = {}

    # --- watch events ---------------------------------------------------------------------------------------
    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ModelDeployment watch event (type None: kopf's initial listing)."""
        key = key_of(body)
        if event_type == "DELETED":
            gone = self._bodies.pop(key, None)
            self.queue.forget(key)
            self.reconciler.forget(gone or body)
            return
        current = self._bodies.get(key)
        same_object = current is not None and current["metadata"].get("uid") == body["metadata"].get("uid")
        if same_object and current is not None and not_newer(body, current):
            return  # the echo of our own write (kept already), or older than what we hold
        self._bodies[key] = trim_body(body)
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
            await self.reconciler.publish(owner_of(body), result.events)
            if result.requeue_after >= self.reconciler.idle_resync_seconds:
                return None  # nothing due: the queue's jittered resync
            return result.requeue_after
        except KubeError as exc:
            if exc.status == 409:  # the object moved on since this decision: decide again from the newest
                fresh = await self.objects.read(namespace, name)
                if fresh is None:
                    self.observe("DELETED", body)
                    return None
                self._bodies[key] = trim_body(fresh)
                return CONFLICT_RETRY_SECONDS
            if exc.not_found:
                self.observe("DELETED", body)
                return None
            raise

    def _keep(self, written: Mapping[str, Any]) -> dict[str, Any]:
        """Our write's answer is the newest body: the next reconcile must not decide from the one before."""
        trimmed = trim_body(written)
        key = key_of(trimmed)
        held = self._bodies.get(key)
        if held is None or _version(trimmed) < 0 or not_newer(held, trimmed):  # unless the watch is ahead
            self._bodies[key] = trimmed
        return trimmed

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
