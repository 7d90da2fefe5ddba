"""The controller's `Cluster` port on a real API server: revision states, Deployments, Events.

Reads come from a `ChildCache` (watch caches in the operator; the API itself for tools and tests) and every
Deployment write goes through `cache.ensure`, so a reconcile that changes nothing sends nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modelship.adapters import objects
from modelship.adapters.cache import ApiCache, ChildCache, ensure, is_subset
from modelship.adapters.comparator_objects import CLUSTER_ROLE, DEFAULT_COMPARATOR_IMAGE, Comparators
from modelship.adapters.kube import (
    EVENT_MESSAGE_LIMIT,
    FIELD_MANAGER,
    REPORTING_CONTROLLER,
    Kube,
    Obj,
    controlled_by,
    not_ours,
)
from modelship.adapters.owner import OwnerLike
from modelship.domain.actions import EnsureComparator, EventType, Role
from modelship.domain.api import API_VERSION, KIND, ModelDeploymentSpec
from modelship.domain.observations import RevisionState
from modelship.domain.revision import revision_hash
from modelship.domain.status import Revision


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


class KubeCluster:
    """The controller's `Cluster` port on a real API server."""

    def __init__(
        self, kube: Kube, instance: str | None = None, cache: ChildCache | None = None,
        comparator_image: str = DEFAULT_COMPARATOR_IMAGE, comparator_cluster_role: str = CLUSTER_ROLE,
    ) -> None:
        self.kube = kube
        self.cache: ChildCache = cache or ApiCache(kube)
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self.comparators = Comparators(kube, self.cache, comparator_image, comparator_cluster_role)

    async def _deployments(self, owner: OwnerLike, labels: Mapping[str, str]) -> list[Obj]:
        return await self.cache.owned("apps/v1", "Deployment", owner.namespace, owner.uid, labels)

    async def _pods(self, owner: OwnerLike, deployments: Sequence[Obj], labels: Mapping[str, str]) -> list[Obj]:
        """Pods with `labels` whose controller chain Pod -> ReplicaSet -> Deployment ends at `deployments`."""
        pods: list[Obj] = []
        for deployment in deployments:
            uid = str(deployment.get("metadata", {}).get("uid") or "")
            if not uid:
                continue
            for replica_set in await self.cache.owned("apps/v1", "ReplicaSet", owner.namespace, uid, labels):
                rs_uid = str(replica_set.get("metadata", {}).get("uid") or "")
                if rs_uid:
                    pods.extend(await self.cache.owned("v1", "Pod", owner.namespace, rs_uid, labels))
        return pods

    async def revision_states(self, owner: OwnerLike) -> dict[str, RevisionState]:
        """Deployments of this owner; their pods only when some revision is short of ready pods."""
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
        """Apply a revision's Deployment at `replicas`, only when that changes something.

        The spec describes only the revision it asks for. Any other revision (the stable one while a new version
        rolls out or after a rollback, a retired one) keeps the pod template it was created with: only replicas
        and labels change. Rendering it from the current spec would roll the stable pods onto the new model
        repository, image or env -- the very change the rollout is judging. Only when that Deployment is gone
        (deleted by hand) is it rebuilt from the current spec, pinned to its model version.
        """
        desired = objects.deployment(owner, spec, revision, role, replicas)
        name = desired["metadata"]["name"]
        # Whatever the revision: a forced apply would take over a foreign Deployment of this name.
        found = await self.cache.lookup("apps/v1", "Deployment", owner, name)
        if found is not None and not controlled_by(found, owner.uid):
            raise not_ours("Deployment", owner, name)
        if found is None or revision.hash == revision_hash(spec):
            await ensure(self.kube, self.cache, desired)
            return
        kept = {**desired, "spec": {"replicas": desired["spec"].get("replicas")}}
        if unchanged_except_hash(kept, found):
            return
        full = await self.kube.get("apps/v1", "Deployment", owner.namespace, name)
        template = ((full or {}).get("spec") or {}).get("template")
        if template:
            template = dict(template)
            template["metadata"] = {
                k: v for k, v in (template.get("metadata") or {}).items() if k != "creationTimestamp"
            }
            desired["spec"]["template"] = template
        await ensure(self.kube, self.cache, desired)

    async def delete_revision(self, owner: OwnerLike, revision_hash: str) -> None:
        name = objects.deployment_name(owner.name, revision_hash)
        found = await self.cache.lookup("apps/v1", "Deployment", owner, name)
        if found is None or not controlled_by(found, owner.uid):
            await self.kube.delete_owned("apps/v1", "Deployment", owner, name)  # logs and keeps a foreign one
            return
        uid = found.get("metadata", {}).get("uid")
        await self.kube.delete("apps/v1", "Deployment", owner.namespace, name, uid=str(uid) if uid else None)
        self.cache.forget(found)

    async def emit_event(self, owner: OwnerLike, type: EventType, reason: str, message: str) -> None:
        await self.kube.create(event_object(owner, type, reason, message, self.instance))

    async def apply_comparator(self, owner: OwnerLike, action: EnsureComparator) -> None:
        await self.comparators.apply(owner, action)

    async def remove_comparator(self, owner: OwnerLike) -> None:
        await self.comparators.remove(owner)


def unchanged_except_hash(desired: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """A kept revision (template not ours to render) is unchanged when its labels and replicas are."""
    labels = (desired.get("metadata") or {}).get("labels") or {}
    return is_subset(labels, (found.get("metadata") or {}).get("labels") or {}) and is_subset(
        {"replicas": desired["spec"].get("replicas")}, found.get("spec") or {})
