"""Replica-ratio router (`traffic.none`): no mesh, one entry Service `<name>` selects every revision's pods.

The canary's share of live traffic is its share of ready endpoints, so weights are realised by replica
counts: the controller sizes the two Deployments with `split_replicas` on every SetTraffic (weight 0
means zero canary pods at once, which is how a rollback takes traffic away immediately in this mode).
This router owns no route object; `apply` keeps the entry Service and reports the effective weight.

Mirroring is impossible without a proxy. Rather than run a shadow stage that judges nothing, a spec with
`rollout.shadow` and `traffic.none` is refused with a validation problem (`validation_problems`): the
user either drops the shadow stage or picks a router that can mirror.
"""

from __future__ import annotations

from typing import Any

from modelship.adapters import objects
from modelship.adapters.cache import ApiCache, ChildCache
from modelship.adapters.kube import Kube
from modelship.adapters.owner import OwnerLike
from modelship.adapters.routers.base import ensure_backends
from modelship.domain.actions import Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import RouteState

SHADOW_UNSUPPORTED = (
    "rollout.shadow: traffic.none splits traffic by replica counts and cannot mirror requests; "
    "remove rollout.shadow, or route with traffic.gatewayAPI or traffic.istio"
)


def split_replicas(total: int, canary_weight: int) -> tuple[int, int]:
    """(stable, canary) pod counts approximating `canary_weight` percent of `total` pods.

    Invariants: a side with weight > 0 gets at least one pod; a side with weight 0 gets none; the sum is
    `total` except when total == 1 and both sides need a pod (then 2: one each, a 50/50 split).
    """
    weight = max(0, min(100, canary_weight))
    total = max(0, total)
    if total == 0:
        return 0, 0
    if weight == 0:
        return total, 0
    if weight == 100:
        return 0, total
    if total == 1:
        return 1, 1
    canary = (total * weight + 50) // 100  # round half up, deterministic
    canary = max(1, min(total - 1, canary))
    return total - canary, canary


def effective_weight(stable_ready: int, canary_ready: int) -> int | None:
    """Percent of endpoints (so of requests) that are canary pods; None when nothing is ready."""
    ready = stable_ready + canary_ready
    return None if ready <= 0 else round(100 * canary_ready / ready)


def validation_problems(spec: ModelDeploymentSpec) -> tuple[str, ...]:
    """What this router cannot do with `spec`, each naming the field and the fix."""
    if spec.traffic.kind == "none" and spec.rollout.shadow is not None:
        return (SHADOW_UNSUPPORTED,)
    return ()


def _ready(deployment: dict[str, Any] | None) -> int:
    return int((deployment or {}).get("status", {}).get("readyReplicas", 0)) if deployment else 0


class ReplicaRatioRouter:
    """TrafficRouter for clusters without a mesh."""

    def __init__(self, kube: Kube, cache: ChildCache | None = None) -> None:
        self.kube = kube
        self.cache: ChildCache = cache or ApiCache(kube)

    async def _deployments(self, owner: OwnerLike) -> list[dict[str, Any]]:
        selector = objects.owned_selector(owner.name)
        return await self.cache.owned("apps/v1", "Deployment", owner.namespace, owner.uid, selector)

    @staticmethod
    def _state(by: dict[str, int], stable: int, canary: int) -> RouteState:
        weight = effective_weight(stable, canary)
        return RouteState(exists=bool(by), canary_weight=weight, mirror_percent=0, in_sync=True)

    async def observe(self, owner: OwnerLike, spec: ModelDeploymentSpec) -> RouteState:
        """Effective weight from the role labels of the Deployments that have ready pods."""
        ready = {Role.STABLE.value: 0, Role.CANARY.value: 0}
        deployments = await self._deployments(owner)
        for dep in deployments:
            role = dep["metadata"].get("labels", {}).get(objects.LABEL_ROLE)
            if role in ready:
                ready[role] += _ready(dep)
        by = {d["metadata"]["name"]: _ready(d) for d in deployments}
        return self._state(by, ready[Role.STABLE.value], ready[Role.CANARY.value])

    async def apply(self, owner: OwnerLike, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        """Keep the entry Service; report the weight the ready replicas give (replica drift is the
        controller's to fix with EnsureRevision, so nothing here counts as a restored route)."""
        await ensure_backends(self.kube, self.cache, owner, action, roles=False)
        by_hash = {
            d["metadata"].get("labels", {}).get(objects.LABEL_REVISION, ""): _ready(d)
            for d in await self._deployments(owner)
        }
        stable = by_hash.get(action.stable.hash, 0)
        canary = by_hash.get(action.canary.hash, 0) if action.canary is not None else 0
        return self._state(by_hash, stable, canary)

    async def cleanup(self, owner: OwnerLike) -> None:
        """Nothing beyond owned objects, which garbage collection removes with the ModelDeployment."""
