"""Pick the router for a spec; also name the routers a spec no longer uses, so their routes can go."""

from __future__ import annotations

from modelship.adapters.cache import ChildCache
from modelship.adapters.kube import Kube
from modelship.adapters.routers.base import TrafficRouter
from modelship.adapters.routers.gateway_api import GatewayApiRouterAdapter
from modelship.adapters.routers.istio import IstioRouterAdapter
from modelship.adapters.routers.replica_ratio import ReplicaRatioRouter
from modelship.domain.api import GatewayApiRouter, IstioRouter, ModelDeploymentSpec, Traffic

# Only used to delete a stale route: the configuration of a router being removed is irrelevant.
_ANY_GATEWAY = GatewayApiRouter.model_validate({"parentRefs": [{"name": "unused"}]})


def router_for(traffic: Traffic, kube: Kube, cache: ChildCache | None = None) -> TrafficRouter:
    """The one router `spec.traffic` selects."""
    if traffic.gateway_api is not None:
        return GatewayApiRouterAdapter(kube, traffic.gateway_api, cache)
    if traffic.istio is not None:
        return IstioRouterAdapter(kube, traffic.istio, cache)
    return ReplicaRatioRouter(kube, cache)


def stale_routers(traffic: Traffic, kube: Kube, cache: ChildCache | None = None) -> list[TrafficRouter]:
    """Routers other than the selected one: call `cleanup` on them after the spec switched routers."""
    stale: list[TrafficRouter] = []
    if traffic.kind != "gatewayAPI":
        stale.append(GatewayApiRouterAdapter(kube, _ANY_GATEWAY, cache))
    if traffic.kind != "istio":
        stale.append(IstioRouterAdapter(kube, IstioRouter(), cache))
    return stale


class RouterFactory:
    """The controller's RouterFactory port: `factory(spec) -> router`."""

    def __init__(self, kube: Kube, cache: ChildCache | None = None) -> None:
        self.kube = kube
        self.cache = cache

    def __call__(self, spec: ModelDeploymentSpec) -> TrafficRouter:
        return router_for(spec.traffic, self.kube, self.cache)

    def stale(self, spec: ModelDeploymentSpec) -> list[TrafficRouter]:
        """Routers the spec no longer selects, whose routes must go after a router switch."""
        return stale_routers(spec.traffic, self.kube, self.cache)
