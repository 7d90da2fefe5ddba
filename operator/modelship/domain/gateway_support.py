"""Can the Gateways a route attaches to make the shadow copy? Refuse a RequestMirror they do not support.

Why: a Gateway API implementation that lacks the extended feature HTTPRouteRequestMirror may do worse than drop
the filter. Traefik 3.6 loads a rule carrying one as a 500 for every request, while the route still reports
Accepted and ResolvedRefs: a Shadow stage would take the stable version's live traffic down. Since Gateway API
v1.2 an implementation lists what it supports in its GatewayClass's `status.supportedFeatures`; when that list is
there and lacks the feature, the spec is Invalid (the running version keeps serving, nothing is written) with the
field and the fix named. A class that lists nothing is not judged: older implementations do not say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelship.domain.api import MirrorMode, ModelDeploymentSpec

MIRROR = "HTTPRouteRequestMirror"
PARTIAL_MIRROR = "HTTPRouteRequestPercentageMirror"
FIELD = "spec.traffic.gatewayAPI.mirror"


@dataclass(frozen=True)
class GatewaySupport:
    """What one parent Gateway's class says it supports (`features` None: the class does not say)."""

    gateway: str  # namespace/name
    gateway_class: str
    features: frozenset[str] | None


def needs_mirror_support(spec: ModelDeploymentSpec) -> bool:
    """Only a Gateway API route with a Shadow stage and the filter mode asks anything of the gateway's features."""
    router = spec.traffic.gateway_api
    return router is not None and router.mirror == MirrorMode.REQUEST_MIRROR and spec.rollout.shadow is not None


def mirror_problems(spec: ModelDeploymentSpec, supports: Sequence[GatewaySupport]) -> list[str]:
    """One problem per parent Gateway whose class states its features and lacks the mirror this spec needs."""
    if not needs_mirror_support(spec) or spec.rollout.shadow is None:
        return []
    wanted = [MIRROR] + ([PARTIAL_MIRROR] if spec.rollout.shadow.mirror_percent < 100 else [])
    problems = []
    for support in supports:
        missing = [feature for feature in wanted if support.features is not None and feature not in support.features]
        if missing:
            problems.append(
                f"{FIELD}: Gateway {support.gateway} (GatewayClass {support.gateway_class}) does not support "
                f"{' and '.join(missing)} (not in the class's status.supportedFeatures); a RequestMirror filter "
                "there can break live traffic (Traefik answers 500 to every request of the rule). Set "
                "spec.traffic.gatewayAPI.mirror: External (and mirror with a proxy), attach to a Gateway that "
                "mirrors, or remove spec.rollout.shadow"
            )
    return problems
