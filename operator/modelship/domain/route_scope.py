"""Which Istio hosts and gateways a ModelDeployment may name: its own namespace, unless the operator allows more.

Why: a VirtualService bound to a shared gateway claims every host it lists. Without a bound, any tenant who
can write a ModelDeployment could take over another team's host (`payments.example.com`) or attach to a
gateway in another namespace. By default a ModelDeployment in namespace NS may name:
- hosts: short names (`fraud`, which Istio resolves in NS) and `NAME.NS.svc.cluster.local` (NAME may be `*`);
- gateways: `mesh`, a bare name (a Gateway in NS) or `NS/NAME`.
The operator's allow-lists (`MODELSHIP_ISTIO_ALLOWED_HOSTS` / `..._GATEWAYS`, chart values
`istio.allowedHosts` / `istio.allowedGateways`) add shell-style patterns; `{namespace}` in a pattern is the
object's namespace, so `*.{namespace}.models.example.com` gives each team its own subdomain.

Gateway API parentRefs are not bounded here: a Gateway accepts routes only from the namespaces its listeners'
`allowedRoutes` name (default: its own), and a listener's hostname bounds the route's hostnames, so the
Gateway's owner already decides. Istio has no such handshake, hence this check.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from modelship.domain.api import ModelDeploymentSpec

CLUSTER_SUFFIX = "svc.cluster.local"
MESH = "mesh"


def _own_host(host: str, namespace: str) -> bool:
    if "." not in host:
        return host != "*"
    name, _, rest = host.partition(".")
    return rest == f"{namespace}.{CLUSTER_SUFFIX}" and bool(name)


def _own_gateway(gateway: str, namespace: str) -> bool:
    if "/" not in gateway:
        return True  # `mesh`, or a Gateway in the VirtualService's own namespace
    gateway_namespace, _, name = gateway.partition("/")
    return gateway_namespace == namespace and bool(name)


def _allowed(value: str, patterns: tuple[str, ...], namespace: str) -> bool:
    return any(fnmatchcase(value, p.replace("{namespace}", namespace)) for p in patterns)


@dataclass(frozen=True)
class RouteScope:
    """The operator-wide allow-lists (empty: own namespace only)."""

    allowed_hosts: tuple[str, ...] = ()
    allowed_gateways: tuple[str, ...] = ()

    def problems(self, spec: ModelDeploymentSpec, namespace: str) -> list[str]:
        """Each Istio host or gateway outside the object's namespace and the allow-lists, naming the fix."""
        istio = spec.traffic.istio
        if istio is None:
            return []
        found: list[str] = []
        for i, host in enumerate(istio.hosts):
            if not _own_host(host, namespace) and not _allowed(host, self.allowed_hosts, namespace):
                found.append(
                    f"spec.traffic.istio.hosts[{i}]: '{host}' is outside namespace {namespace}; use a short name "
                    f"or NAME.{namespace}.{CLUSTER_SUFFIX}, or have the operator's admin allow it "
                    "(chart value istio.allowedHosts, env MODELSHIP_ISTIO_ALLOWED_HOSTS)"
                )
        for i, gateway in enumerate(istio.gateways):
            if not _own_gateway(gateway, namespace) and not _allowed(gateway, self.allowed_gateways, namespace):
                found.append(
                    f"spec.traffic.istio.gateways[{i}]: '{gateway}' is a gateway in another namespace; use "
                    f"'{MESH}', a Gateway in {namespace}, or have the operator's admin allow it "
                    "(chart value istio.allowedGateways, env MODELSHIP_ISTIO_ALLOWED_GATEWAYS)"
                )
        return found
