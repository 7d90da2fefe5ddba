"""Istio router: one VirtualService `<name>` with weighted destinations and `mirror`/`mirrorPercentage`.

Destinations use the role Services' FQDNs so the VirtualService works from any namespace's sidecars and
from gateways; hosts default to the entry Service `<name>`.
"""

from __future__ import annotations

from typing import Any

from modelship.adapters import objects
from modelship.adapters.kube import Kube
from modelship.adapters.owner import OwnerLike
from modelship.adapters.routers.base import (
    checked_mirror,
    checked_weights,
    ensure_backends,
    in_sync,
    route_metadata,
)
from modelship.domain.actions import Role, SetTraffic
from modelship.domain.api import IstioRouter, ModelDeploymentSpec
from modelship.domain.observations import RouteState

API_VERSION = "networking.istio.io/v1"
KIND = "VirtualService"


def service_host(owner: OwnerLike, role: Role) -> str:
    return f"{objects.role_service_name(owner.name, role)}.{owner.namespace}.svc.cluster.local"


def _destination(host: str) -> dict[str, Any]:
    return {"host": host, "port": {"number": objects.HTTP_PORT}}


def desired_virtual_service(owner: OwnerLike, config: IstioRouter, action: SetTraffic) -> dict[str, Any]:
    """The VirtualService for `action`: route weights summing to 100, mirror for shadow."""
    stable_w, canary_w = checked_weights(action)
    mirror = checked_mirror(action)
    route = [{"destination": _destination(service_host(owner, Role.STABLE)), "weight": stable_w}]
    if action.canary is not None:
        route.append({"destination": _destination(service_host(owner, Role.CANARY)), "weight": canary_w})
    http: dict[str, Any] = {"name": "modelship", "route": route}
    if mirror > 0:
        http["mirror"] = _destination(service_host(owner, Role.CANARY))
        http["mirrorPercentage"] = {"value": float(mirror)}
    spec: dict[str, Any] = {"hosts": list(config.hosts) or [owner.name], "http": [http]}
    if config.gateways:
        spec["gateways"] = list(config.gateways)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": route_metadata(owner, action), "spec": spec}


def route_state(owner: OwnerLike, found: dict[str, Any] | None) -> RouteState:
    """Canary weight and mirror percent as the VirtualService has them."""
    if found is None:
        return RouteState(exists=False, in_sync=False)
    http = (found.get("spec", {}).get("http") or [{}])[0]
    canary_host = service_host(owner, Role.CANARY)
    routes = http.get("route") or []
    # Istio: a single destination without weight takes 100%.
    weights = [(r.get("destination", {}).get("host"), int(r.get("weight", 100 if len(routes) == 1 else 0)))
               for r in routes]
    total = sum(w for _, w in weights)
    canary = sum(w for h, w in weights if h == canary_host)
    mirror = 0
    if http.get("mirror"):
        mirror = round(float((http.get("mirrorPercentage") or {}).get("value", 100.0)))
    return RouteState(
        exists=True, canary_weight=round(100 * canary / total) if total else 0, mirror_percent=mirror
    )


class IstioRouterAdapter:
    """TrafficRouter over an Istio VirtualService."""

    def __init__(self, kube: Kube, config: IstioRouter) -> None:
        self.kube = kube
        self.config = config

    async def _found(self, owner: OwnerLike) -> dict[str, Any] | None:
        return await self.kube.get(API_VERSION, KIND, owner.namespace, owner.name)

    async def observe(self, owner: OwnerLike, spec: ModelDeploymentSpec) -> RouteState:
        return route_state(owner, await self._found(owner))

    async def apply(self, owner: OwnerLike, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        found = await self._found(owner)
        desired = desired_virtual_service(owner, self.config, action)
        state = route_state(owner, found)
        synced = in_sync(desired, found)
        if not synced:
            # Services first: a route in sync (its annotations name the revisions) implies they were applied.
            await ensure_backends(self.kube, owner, action)
            await self.kube.apply(desired)
        return RouteState(
            exists=state.exists, canary_weight=state.canary_weight, mirror_percent=state.mirror_percent,
            in_sync=synced,
        )

    async def cleanup(self, owner: OwnerLike) -> None:
        await self.kube.delete(API_VERSION, KIND, owner.namespace, owner.name)
