"""The router interface and what every router shares: backend Services, drift detection, route metadata.

A router's `apply` always reads the route first (to tell the controller whether someone changed it by
hand, so it can say "RouteRestored"), then server-side applies the backend Services and the desired route
with force: hand edits of the fields Modelship owns never survive a reconcile. When the route already
matches (weights, mirror and the revision annotations), nothing is written: one GET per steady reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from modelship.adapters import objects
from modelship.adapters.cache import ApiCache, ChildCache, ensure, is_subset
from modelship.adapters.comparator_objects import comparator_name
from modelship.adapters.kube import Kube, controlled_by, not_ours
from modelship.adapters.owner import OwnerLike, owner_reference
from modelship.domain.actions import Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import RouteState

ANNOTATION_STABLE = "modelship.dev/stable-revision"
ANNOTATION_CANARY = "modelship.dev/canary-revision"


class TrafficRouter(Protocol):
    """Weights and mirroring between `<name>-stable` and `<name>-canary` (the controller's Router port)."""

    async def apply(self, owner: OwnerLike, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        """Report what was found (in_sync=False on drift), then make the cluster match `action`."""
        ...

    async def observe(self, owner: OwnerLike, spec: ModelDeploymentSpec) -> RouteState:
        """What the route on the cluster says now (weights, mirror); in_sync is not judged here."""
        ...

    async def cleanup(self, owner: OwnerLike) -> None:
        """Remove this router's objects, e.g. after the spec switched to another router."""
        ...


def checked_weights(action: SetTraffic) -> tuple[int, int]:
    """(stable, canary) weights clamped to 0..100 and summing to 100; no canary means stable takes all."""
    canary = 0 if action.canary is None else max(0, min(100, action.canary_weight))
    return 100 - canary, canary


def checked_mirror(action: SetTraffic) -> int:
    """Mirror percent 0..100; nothing to mirror to without a canary."""
    return 0 if action.canary is None else max(0, min(100, action.mirror_percent))


def mirror_service(owner: OwnerLike, action: SetTraffic) -> str:
    """Where mirrored requests go: the comparator while comparing (it asks stable and canary itself and judges
    both answers), else the canary, whose answers are discarded."""
    if action.compared:
        return comparator_name(owner.name)
    return objects.role_service_name(owner.name, Role.CANARY)


def route_metadata(owner: OwnerLike, action: SetTraffic) -> dict[str, Any]:
    """Route metadata; the annotations record which revisions the role Services pointed at."""
    return {
        "name": owner.name,
        "namespace": owner.namespace,
        "labels": objects.owned_selector(owner.name),
        "annotations": {
            ANNOTATION_STABLE: action.stable.hash,
            ANNOTATION_CANARY: action.canary.hash if action.canary else "",
        },
        "ownerReferences": [owner_reference(owner)],
    }


def in_sync(desired: Mapping[str, Any], found: Mapping[str, Any] | None) -> bool:
    if found is None:
        return False
    found_meta = found.get("metadata", {})
    return is_subset(desired["spec"], found.get("spec")) and is_subset(
        desired["metadata"]["annotations"], found_meta.get("annotations") or {}
    )


async def ensure_backends(
    kube: Kube, cache: ChildCache, owner: OwnerLike, action: SetTraffic, *, roles: bool = True
) -> None:
    """Point `<name>-stable` / `<name>-canary` at the action's revisions and keep the entry Service.

    The role Services follow SetTraffic (not EnsureRevision) because only SetTraffic says authoritatively
    which revision is stable and which is the canary at this moment. Without a canary the canary Service
    keeps its last selector: no route references it then.
    """
    live_canary = action.canary is not None and action.canary_weight > 0
    await ensure(kube, cache, objects.entry_service(owner, only=None if live_canary else action.stable))
    if not roles:
        return
    await ensure(kube, cache, objects.role_service(owner, action.stable, Role.STABLE))
    if action.canary is not None:
        await ensure(kube, cache, objects.role_service(owner, action.canary, Role.CANARY))


class RouteObjectRouter:
    """A router whose state is one route object named after the ModelDeployment (HTTPRoute, VirtualService).

    Subclasses say which kind and how to build and read it; reading, drift detection, the backends-first
    apply order and clean-up are the same for every such router.
    """

    api_version: str
    kind: str

    def __init__(self, kube: Kube, cache: ChildCache | None = None) -> None:
        self.kube = kube
        self.cache: ChildCache = cache or ApiCache(kube)

    def desired(self, owner: OwnerLike, action: SetTraffic) -> dict[str, Any]:
        raise NotImplementedError

    def read_state(self, owner: OwnerLike, found: dict[str, Any] | None) -> RouteState:
        raise NotImplementedError

    async def _found(self, owner: OwnerLike) -> dict[str, Any] | None:
        return await self.cache.lookup(self.api_version, self.kind, owner, owner.name)

    async def observe(self, owner: OwnerLike, spec: ModelDeploymentSpec) -> RouteState:
        return self.read_state(owner, await self._found(owner))

    async def apply(self, owner: OwnerLike, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        found = await self._found(owner)
        if found is not None and not controlled_by(found, owner.uid):
            raise not_ours(self.kind, owner, owner.name)
        desired = self.desired(owner, action)
        state = self.read_state(owner, found)
        synced = in_sync(desired, found)
        if not synced:
            # Services first: a route in sync (its annotations name the revisions) implies they were applied.
            await ensure_backends(self.kube, self.cache, owner, action)
            await ensure(self.kube, self.cache, desired)
        return RouteState(
            exists=state.exists, canary_weight=state.canary_weight, mirror_percent=state.mirror_percent,
            in_sync=synced,
        )

    async def cleanup(self, owner: OwnerLike) -> None:
        """Delete the route only when this ModelDeployment controls it (another team's route may share the name)."""
        if self.cache.authoritative and self.cache.cached(self.kind, owner.uid, owner.name) is None:
            return  # the watch cache holds every route we control: none to delete, no request
        await self.kube.delete_owned(self.api_version, self.kind, owner, owner.name)
