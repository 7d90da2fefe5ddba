"""Where a ModelDeployment's requests should go, read from the API server: its route, weights, mirror, endpoints.

Why apart from the sender (``traffic.py``): reading the route is the one part that must agree with what the
operator writes (HTTPRoute backendRefs and RequestMirror or the ``modelship.dev/mirror`` annotation, Istio's
VirtualService, or the replica ratio); the sender only consumes a ``Plan``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

MANAGED = "app.kubernetes.io/managed-by=modelship"
GATEWAY = "gateway"
STACK_GATEWAY = ("gateways", "inference-gw")  # e2e/stack/dataplane/gateway.py creates it
MIRROR_ANNOTATION = "modelship.dev/mirror"  # gatewayAPI.mirror External: the copy the gateway cannot make
ALLOWED = [ipaddress.ip_network(os.environ.get("MODELSHIP_POD_CIDR", "10.77.0.0/16")),
           ipaddress.ip_network("127.0.0.0/8")]  # fmt: skip


@dataclass
class Backend:
    """A weighted destination: a Service (or a static list) and its ready endpoints ``host:port``."""

    name: str
    weight: float
    endpoints: list[str] = field(default_factory=list)
    role: str = ""


@dataclass
class Plan:
    """Where the next requests go."""

    kind: str  # httproute | virtualservice | replicas | static
    backends: list[Backend]
    mirror: Backend | None = None
    mirror_percent: float = 0.0
    hostnames: list[str] = field(default_factory=list)
    gateways: list[tuple[str, str]] = field(default_factory=list)
    """The route's parent Gateways (namespace, name): live traffic goes through the stack's one if listed."""


def allowed(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in ALLOWED)


def route_mirrors(route: dict[str, Any], *, first_rule_only: bool = True) -> list[dict[str, Any]]:
    """The shadow copies an HTTPRoute asks for (``requestMirror`` shapes): its RequestMirror filters, then the
    ``modelship.dev/mirror`` annotation that ``mirror: External`` writes instead of a filter."""
    rules = route.get("spec", {}).get("rules") or [{}]
    mirrors = [flt["requestMirror"] for rule in (rules[:1] if first_rule_only else rules)
               for flt in rule.get("filters") or [] if flt.get("type") == "RequestMirror"]  # fmt: skip
    annotation = (route.get("metadata", {}).get("annotations") or {}).get(MIRROR_ANNOTATION)
    if annotation:
        mirrors.append(json.loads(annotation))
    return mirrors


def mirror_percent(mirror: dict[str, Any]) -> float:
    """RequestMirror's share: ``percent``, else ``fraction``, else all."""
    if "percent" in mirror:
        return float(mirror["percent"])
    if "fraction" in mirror:
        fraction = mirror["fraction"]
        return 100.0 * fraction["numerator"] / fraction.get("denominator", 100)
    return 100.0


class RouteReader:
    """Reads a ModelDeployment's route and endpoints from the API server."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        self.ns, self.name = namespace, name
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.selector = f"modelship.dev/deployment={name}"

    def model_name(self) -> str | None:
        try:
            mdep = self.custom.get_namespaced_custom_object(
                "modelship.dev", "v1alpha1", self.ns, "modeldeployments", self.name
            )
        except Exception:
            return None
        return str(mdep.get("spec", {}).get("model", {}).get("name") or "") or None

    def _objects(self, group: str, versions: tuple[str, ...], plural: str) -> list[dict[str, Any]]:
        for version in versions:
            try:
                items = self.custom.list_namespaced_custom_object(
                    group, version, self.ns, plural, label_selector=self.selector
                )["items"]
                if not items:
                    items = [self.custom.get_namespaced_custom_object(group, version, self.ns, plural, self.name)]
                return list(items)
            except Exception:
                continue
        return []

    def endpoints(self, service: str, port: int | None = None) -> list[str]:
        """Ready ``ip:port`` of a Service from its EndpointSlices (the http port, or ``port``)."""
        out: list[str] = []
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.ns, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        for sl in slices:
            ports = sl.ports or []
            chosen = next((p.port for p in ports if p.name == "http"), None) or (
                ports[0].port if ports else port or 8000
            )
            for ep in sl.endpoints or []:
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                out += [f"{a}:{chosen}" for a in ep.addresses or []]
        return sorted(set(out))

    def _role(self, service: str) -> str:
        try:
            labels = self.core.read_namespaced_service(service, self.ns).metadata.labels or {}
        except Exception:
            return ""
        return str(labels.get("modelship.dev/role", ""))

    def _backend(self, service: str, weight: float) -> Backend:
        return Backend(service, weight, self.endpoints(service), self._role(service))

    def plan(self) -> Plan:
        """HTTPRoute first, then VirtualService, then replica ratio over the deployment's Services."""
        for route in self._objects("gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes"):
            rule = (route.get("spec", {}).get("rules") or [{}])[0]
            backends = [
                self._backend(ref["name"], float(ref.get("weight", 1))) for ref in rule.get("backendRefs") or []
            ]
            spec = route.get("spec", {})
            plan = Plan("httproute", backends, hostnames=list(spec.get("hostnames") or []), gateways=[
                (p.get("namespace", self.ns), p["name"]) for p in spec.get("parentRefs") or []
                if p.get("kind", "Gateway") == "Gateway"])  # fmt: skip
            for mirror in route_mirrors(route)[:1]:
                plan.mirror = self._backend(mirror["backendRef"]["name"], 0)
                plan.mirror_percent = mirror_percent(mirror)
            return plan
        for vs in self._objects("networking.istio.io", ("v1", "v1beta1", "v1alpha3"), "virtualservices"):
            http = (vs.get("spec", {}).get("http") or [{}])[0]
            backends = [
                self._backend(r["destination"]["host"].split(".")[0], float(r.get("weight", 100)))
                for r in http.get("route") or []
            ]
            plan = Plan("virtualservice", backends)
            if http.get("mirror"):
                plan.mirror = self._backend(http["mirror"]["host"].split(".")[0], 0)
                plan.mirror_percent = float((http.get("mirrorPercentage") or {"value": 100.0})["value"])
            return plan
        services = self.core.list_namespaced_service(self.ns, label_selector=f"{MANAGED},{self.selector}").items
        seen: set[str] = set()
        backends = []
        for svc in services:  # one Backend per endpoint: the split follows the replica ratio
            for ep in self.endpoints(svc.metadata.name):
                if ep not in seen:
                    seen.add(ep)
                    role = (svc.metadata.labels or {}).get("modelship.dev/role", "")
                    backends.append(Backend(f"{svc.metadata.name}/{ep}", 1.0, [ep], role))  # split per pod
        return Plan("replicas", backends)
