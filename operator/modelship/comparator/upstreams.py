"""Where the comparator sends each mirrored request: a ready pod of `<name>-stable` and one of `<name>-canary`.

Resolved from the role Services' EndpointSlices (ready endpoints only, as kube-proxy would), so it works the same
in a real cluster and on the local stack (which has no Service routing or DNS). Only pods named
`<deployment>-...` (its own revisions' pods) are ever called, whatever a slice lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from modelship.adapters.kube import KubeError
from modelship.adapters.transport import AsyncTransport

log = logging.getLogger("modelship.comparator")

REFRESH_S = 2.0
FIRST_READ_S = 5.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HTTP_PORT_NAME = "http"


class Upstreams(Protocol):
    async def pick(self, role: str) -> str | None:
        """Base URL (`http://ip:port`) of one ready pod holding `role`, or None when none is ready."""
        ...


class _RoundRobin:
    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, addresses: Sequence[str]) -> str | None:
        return addresses[next(self._counter) % len(addresses)] if addresses else None


class StaticUpstreams:
    """Fixed addresses per role (tests, the bench)."""

    def __init__(self, addresses: Mapping[str, Sequence[str]]) -> None:
        self._addresses = {role: list(urls) for role, urls in addresses.items()}
        self._choice = _RoundRobin()

    async def pick(self, role: str) -> str | None:
        return self._choice.choose(self._addresses.get(role, []))


def ready_addresses(slices: Mapping[str, Any], deployment: str) -> list[str]:
    """`http://ip:port` of every ready endpoint in an EndpointSlice list that is a pod of `deployment`."""
    found: list[str] = []
    for item in slices.get("items") or []:
        ports = [p for p in item.get("ports") or [] if p.get("name") == HTTP_PORT_NAME and p.get("port")]
        if not ports:
            continue
        port = ports[0]["port"]
        for endpoint in item.get("endpoints") or []:
            target = endpoint.get("targetRef") or {}
            ready = (endpoint.get("conditions") or {}).get("ready")
            if ready is False or target.get("kind") != "Pod" or not str(target.get("name", "")).startswith(
                f"{deployment}-"
            ):
                continue
            found.extend(f"http://{address}:{port}" for address in endpoint.get("addresses") or [])
    return sorted(set(found))


def service_names(deployment: str, *, after_promotion: bool = False) -> dict[str, str]:
    """The Service behind each side. In the post-promotion window the new stable (judged, the "canary" side)
    serves behind `<name>-stable` and the previous revision (the baseline, the "stable" side) behind
    `<name>-canary`, which takes no live weight then."""
    stable, canary = f"{deployment}-stable", f"{deployment}-canary"
    return {"stable": canary, "canary": stable} if after_promotion else {"stable": stable, "canary": canary}


class EndpointSliceUpstreams:
    """Reads `<deployment>-<role>`'s EndpointSlices at most every `refresh_s`; keeps the last answer on errors.

    A refresh runs beside the comparisons, never in front of them: a slow or unreachable API server leaves
    the last known pods in use (only the very first read of a role is waited for, at most `first_read_s`).
    """

    def __init__(
        self, transport: AsyncTransport, namespace: str, deployment: str, *, refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic, after_promotion: bool = False,
    ) -> None:
        self._transport = transport
        self._namespace = namespace
        self._deployment = deployment
        self._refresh_s = refresh_s
        self._clock = clock
        self._addresses: dict[str, list[str]] = {}
        self._read_at: dict[str, float] = {}
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._choice = _RoundRobin()
        self._services = service_names(deployment, after_promotion=after_promotion)

    async def pick(self, role: str) -> str | None:
        reading = self._reading.get(role)
        if (reading is None or reading.done()) and (
            self._clock() - self._read_at.get(role, float("-inf")) >= self._refresh_s
        ):
            reading = self._reading[role] = asyncio.create_task(self._read(role))
        if role not in self._addresses and reading is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), FIRST_READ_S)
        return self._choice.choose(self._addresses.get(role, []))

    async def _read(self, role: str) -> None:
        service = self._services[role]
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self._namespace}/endpointslices"
        try:
            query = [("labelSelector", f"{SERVICE_NAME_LABEL}={service}")]
            slices = await self._transport.request("GET", path, query=query)
        except KubeError as exc:
            log.warning("cannot read the endpoints of %s/%s (keeping the last ones): %s", self._namespace, service,
                        exc)
            self._read_at[role] = self._clock()
            return
        self._addresses[role] = ready_addresses(slices or {}, self._deployment)
        self._read_at[role] = self._clock()
