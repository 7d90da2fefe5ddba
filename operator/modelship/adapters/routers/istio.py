"""Istio router: one VirtualService `<name>` with weighted destinations and `mirror`/`mirrorPercentage`.

Destinations use the role Services' FQDNs so the VirtualService works from any namespace's sidecars and
from gateways; hosts default to the entry Service `<name>`.
"""

from __future__ import annotations

from typing import Any

from modelship.adapters import objects
from modelship.adapters.cache import ChildCache
from modelship.adapters.kube import Kube
from modelship.adapters.owner import OwnerLike
from modelship.adapters.routers.base import (
    RouteObjectRouter,
    checked_mirror,
    checked_weights,
    mirror_service,
    route_metadata,
)
from modelship.domain.actions import Role, SetTraffic
from modelship.domain.api import IstioRouter
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
        http["mirror"] = _destination(f"{mirror_service(owner, action)}.{owner.namespace}.svc.cluster.local")
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


class IstioRouterAdapter(RouteObjectRouter):
    """TrafficRouter over an Istio VirtualService."""

    api_version = API_VERSION
    kind = KIND

    def __init__(self, kube: Kube, config: IstioRouter, cache: ChildCache | None = None) -> None:
        super().__init__(kube, cache)
        self.config = config

    def desired(self, owner: OwnerLike, action: SetTraffic) -> dict[str, Any]:
        return desired_virtual_service(owner, self.config, action)

    def read_state(self, owner: OwnerLike, found: dict[str, Any] | None) -> RouteState:
        return route_state(owner, found)
