"""What the controller needs from the outside world, as small Protocols the adapters satisfy.

Keeping these here (not in adapters) lets the reconciler be tested with in-memory fakes and keeps the
dependency arrow pointing from the controller to interfaces, not to client libraries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelship.domain.actions import EnsureComparator, EventType, Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec, ParentRef
from modelship.domain.gateway_support import GatewaySupport
from modelship.domain.notifications import Notification
from modelship.domain.observations import MetricsSnapshot, RevisionState, RouteState, ValidationReport
from modelship.domain.status import Revision


@dataclass(frozen=True)
class Owner:
    """Identity of the ModelDeployment being reconciled (for owner references, Events and queries)."""

    namespace: str
    name: str
    uid: str
    generation: int = 0
    resource_version: str | None = None


class Cluster(Protocol):
    async def revision_states(self, owner: Owner) -> dict[str, RevisionState]: ...
    async def ready_pod_ips(self, owner: Owner, revision_hash: str) -> list[str]: ...
    async def apply_revision(
        self, owner: Owner, spec: ModelDeploymentSpec, revision: Revision, role: Role, replicas: int
    ) -> None: ...
    async def delete_revision(self, owner: Owner, revision_hash: str) -> None: ...
    async def emit_event(self, owner: Owner, type: EventType, reason: str, message: str) -> None: ...
    async def apply_comparator(self, owner: Owner, action: EnsureComparator) -> None: ...
    async def remove_comparator(self, owner: Owner) -> None: ...


class GatewaySupports(Protocol):
    async def read(self, parent_refs: Sequence[ParentRef], namespace: str) -> list[GatewaySupport]:
        """What each parent Gateway's class says it supports (domain/gateway_support.py judges it)."""
        ...


class Router(Protocol):
    async def apply(self, owner: Owner, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState: ...
    async def cleanup(self, owner: Owner) -> None: ...


class RouterFactory(Protocol):
    def __call__(self, spec: ModelDeploymentSpec) -> Router: ...
    def stale(self, spec: ModelDeploymentSpec) -> Sequence[Router]: ...


class Metrics(Protocol):
    async def snapshot(
        self, owner: Owner, spec: ModelDeploymentSpec, canary: Revision, stable: Revision | None, window_s: float,
        comparing: bool = False,
    ) -> MetricsSnapshot:
        """One analysis round; with `comparing`, the shadow comparator's SLOs too."""
        ...


class ModelChecker(Protocol):
    async def validate(
        self, spec: ModelDeploymentSpec, canary_ips: list[str], stable_ip: str | None
    ) -> ValidationReport: ...


class ModelDeployments(Protocol):
    """Writes to the ModelDeployment itself, each conditional on `resource_version` (409 when it moved on)."""

    async def patch_status(
        self, namespace: str, name: str, resource_version: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...
    async def set_finalizers(
        self, namespace: str, name: str, resource_version: str, finalizers: list[str]
    ) -> Mapping[str, Any]: ...
    async def read(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


class Notifier(Protocol):
    """Takes notifications to deliver later; never blocks or raises (delivery is off the reconcile path)."""

    def offer(self, notification: Notification) -> None: ...


class RequesterPolicy(Protocol):
    """Whether the API server enforces the modelship-requester admission policy (requested-by == the user)."""

    async def in_force(self) -> bool: ...
