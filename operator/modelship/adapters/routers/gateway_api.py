"""Gateway API router: one HTTPRoute `<name>` with weighted backendRefs and a RequestMirror filter for shadow.

With `mirror: External` (implementations without HTTPRouteRequestMirror, e.g. Traefik 3.6, which answers 500
to every request of a rule carrying the filter) the same `requestMirror` goes on annotation `modelship.dev/mirror`
as JSON instead ("" when not mirroring), for a mirroring proxy to make; live routing is untouched.

`requestMirror.percent` is an experimental-channel field (Gateway API >= 1.2): it is only written when
mirroring less than 100%, so a full mirror also works with standard-channel CRDs; a partial mirror on a
standard-channel install is refused by the API server (strict field validation) instead of silently
mirroring everything.
"""

from __future__ import annotations

import json
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
from modelship.domain.api import GatewayApiRouter, MirrorMode
from modelship.domain.observations import RouteState

API_VERSION = "gateway.networking.k8s.io/v1"
KIND = "HTTPRoute"
ANNOTATION_MIRROR = "modelship.dev/mirror"


def _backend(name: str) -> dict[str, Any]:
    return {"name": name, "port": objects.HTTP_PORT}


def desired_route(
    owner: OwnerLike, config: GatewayApiRouter, action: SetTraffic
) -> dict[str, Any]:
    """The HTTPRoute for `action`: stable weight S, canary weight C (S + C = 100), optional mirror."""
    stable_w, canary_w = checked_weights(action)
    mirror = checked_mirror(action)
    canary_svc = objects.role_service_name(owner.name, Role.CANARY)
    backends = [{**_backend(objects.role_service_name(owner.name, Role.STABLE)), "weight": stable_w}]
    if action.canary is not None:
        backends.append({**_backend(canary_svc), "weight": canary_w})
    rule: dict[str, Any] = {"backendRefs": backends}
    metadata = route_metadata(owner, action)
    mirror_spec: dict[str, Any] = {}
    if mirror > 0:
        mirror_spec = {"backendRef": _backend(mirror_service(owner, action))}
        if mirror < 100:
            mirror_spec["percent"] = mirror
    if config.mirror == MirrorMode.EXTERNAL:
        metadata["annotations"][ANNOTATION_MIRROR] = json.dumps(mirror_spec, sort_keys=True) if mirror_spec else ""
    elif mirror_spec:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": mirror_spec}]
    parents = [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in config.parent_refs]
    spec: dict[str, Any] = {"parentRefs": parents, "rules": [rule]}
    if config.hostnames:
        spec["hostnames"] = list(config.hostnames)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def _percent(mirror: dict[str, Any]) -> int:
    if "percent" in mirror:
        return int(mirror["percent"])
    fraction = mirror.get("fraction")
    if isinstance(fraction, dict) and fraction.get("denominator", 100):
        return round(100 * int(fraction.get("numerator", 0)) / int(fraction.get("denominator", 100)))
    return 100


def _mirror_percent(filters: list[Any], annotation: str) -> int:
    """From the RequestMirror filter, else from the External annotation (unreadable JSON: not mirroring)."""
    for f in filters:
        if isinstance(f, dict) and f.get("type") == "RequestMirror":
            return _percent(f.get("requestMirror") or {})
    try:
        described = json.loads(annotation) if annotation else {}
    except ValueError:
        return 0
    return _percent(described) if isinstance(described, dict) and described else 0


def route_state(owner: OwnerLike, found: dict[str, Any] | None) -> RouteState:
    """Canary weight (percent of the rule's total) and mirror percent as the HTTPRoute has them."""
    if found is None:
        return RouteState(exists=False, in_sync=False)
    rules = found.get("spec", {}).get("rules") or []
    rule = rules[0] if rules else {}
    canary_name = objects.role_service_name(owner.name, Role.CANARY)
    annotations = found.get("metadata", {}).get("annotations") or {}
    total = canary = 0
    for ref in rule.get("backendRefs") or []:
        weight = int(ref.get("weight", 1))  # Gateway API defaults a missing weight to 1
        total += weight
        if ref.get("name") == canary_name:
            canary += weight
    return RouteState(
        exists=True,
        canary_weight=round(100 * canary / total) if total else 0,
        mirror_percent=_mirror_percent(rule.get("filters") or [], str(annotations.get(ANNOTATION_MIRROR, ""))),
    )


class GatewayApiRouterAdapter(RouteObjectRouter):
    """TrafficRouter over a Gateway API HTTPRoute."""

    api_version = API_VERSION
    kind = KIND

    def __init__(self, kube: Kube, config: GatewayApiRouter, cache: ChildCache | None = None) -> None:
        super().__init__(kube, cache)
        self.config = config

    def desired(self, owner: OwnerLike, action: SetTraffic) -> dict[str, Any]:
        return desired_route(owner, self.config, action)

    def read_state(self, owner: OwnerLike, found: dict[str, Any] | None) -> RouteState:
        return route_state(owner, found)
