"""Reads what the Gateways a route attaches to support: Gateway -> its GatewayClass -> `status.supportedFeatures`.

Why cached: the answer changes when someone upgrades the gateway, not per reconcile; a fleet of ModelDeployments on
one Gateway must not cost two GETs each every reconcile. Entries live `ttl_s` (60 s). A Gateway or class that is
missing, unreadable (no RBAC) or silent about its features gives `features=None`: not judged, never a refusal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from modelship.adapters.kube import Kube, KubeError
from modelship.domain.api import ParentRef
from modelship.domain.gateway_support import GatewaySupport

log = logging.getLogger(__name__)
API_VERSION = "gateway.networking.k8s.io/v1"


class GatewaySupportReader:
    """`read(parent_refs, namespace)`: one GatewaySupport per parent Gateway, from a short-lived cache."""

    def __init__(self, kube: Kube, ttl_s: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.ttl_s, self.monotonic = kube, ttl_s, monotonic
        self._cache: dict[str, tuple[float, GatewaySupport]] = {}

    async def read(self, parent_refs: Sequence[ParentRef], namespace: str) -> list[GatewaySupport]:
        return [await self._support(ref.namespace or namespace, ref.name) for ref in parent_refs]

    async def _support(self, namespace: str, name: str) -> GatewaySupport:
        key = f"{namespace}/{name}"
        cached = self._cache.get(key)
        if cached is not None and self.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        support = await self._fetch(namespace, name)
        self._cache[key] = (self.monotonic(), support)
        return support

    async def _fetch(self, namespace: str, name: str) -> GatewaySupport:
        gateway_name, class_name = f"{namespace}/{name}", ""
        try:
            gateway = await self.kube.get(API_VERSION, "Gateway", namespace, name)
            class_name = str(((gateway or {}).get("spec") or {}).get("gatewayClassName") or "")
            gateway_class = await self.kube.get(API_VERSION, "GatewayClass", "", class_name) if class_name else None
        except KubeError as exc:  # e.g. no RBAC to read Gateways: not judged, said once per cache period
            log.info("cannot read Gateway %s or its class (%s): its features are not checked", gateway_name, exc)
            return GatewaySupport(gateway_name, class_name, None)
        listed = ((gateway_class or {}).get("status") or {}).get("supportedFeatures")
        features = frozenset(str(f.get("name", "")) for f in listed if isinstance(f, dict)) if listed else None
        return GatewaySupport(gateway_name, class_name, features)
