"""What the controller saw this reconcile: plain data handed to `decide`, gathered by adapters.

Adapters turn every failure into data here (an outage is `MetricsSnapshot(available=False)`, a dead pod is a
`ValidationReport` problem) so the engine can judge it; nothing in this module performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modelship.domain.status import ManualRequest


@dataclass(frozen=True)
class RevisionState:
    """A revision's Deployment as Kubernetes reports it."""

    hash: str
    desired_replicas: int
    ready_replicas: int
    updated: bool = True
    unschedulable: str | None = None
    """Scheduler's message when some pod cannot be placed (e.g. 'Insufficient nvidia.com/gpu'), else None."""

    @property
    def available(self) -> bool:
        return self.desired_replicas > 0 and self.ready_replicas >= self.desired_replicas


class ValidationFailure(StrEnum):
    """Why validation did not pass. NOT_READY is transient (retried until the deadline); the rest are final."""

    NOT_READY = "NotReady"
    CONTRACT_MISMATCH = "ContractMismatch"
    SAMPLE_FAILED = "SampleFailed"


@dataclass(frozen=True)
class ValidationReport:
    """Triton checks on every canary pod: liveness, model version READY, I/O contract, samples."""

    passed: bool
    failure: ValidationFailure | None = None
    message: str = ""
    pods_checked: int = 0


@dataclass(frozen=True)
class MetricValue:
    """One SLO metric for canary and (when measured) stable in the same window; None means no data."""

    canary: float | None
    stable: float | None = None
    error: str | None = None
    source: str | None = None
    """How it was measured when there is a choice, e.g. 'summary' (quantile) or 'average' (counter fallback)."""
    detail: str | None = None
    """What a human reads beside the value, e.g. how the answers moved: 'score p50 0.97 (stable 0.62)'."""


@dataclass(frozen=True)
class MetricsSnapshot:
    """One analysis query round.

    available=False means the metrics provider could not be reached at all (an outage, not a verdict).
    `values` is keyed by SLO name: errorRate, latencyP99Ms, latencyP95Ms, queueP99Ms or a custom name.
    """

    available: bool
    error: str | None = None
    canary_requests: float | None = None
    values: dict[str, MetricValue] = field(default_factory=dict)
    compared: float | None = None
    """Request pairs the comparator judged in the window (what `minRequests` counts for its SLOs); None when
    no comparator SLO was measured."""


@dataclass(frozen=True)
class RouteState:
    """What the traffic router found on the cluster before applying."""

    exists: bool
    canary_weight: int | None = None
    mirror_percent: int | None = None
    in_sync: bool = True


@dataclass(frozen=True)
class Observations:
    """Everything `decide` may look at besides spec, status and time."""

    generation: int
    revisions: dict[str, RevisionState] = field(default_factory=dict)
    validation: ValidationReport | None = None
    metrics: MetricsSnapshot | None = None
    route: RouteState | None = None
    request: ManualRequest | None = None
    invalid: tuple[str, ...] = ()
    """Problems found by semantic validation (what CEL cannot check): each names the field and the fix."""
    refused: str | None = None
    """A child apply the API server refused in an earlier reconcile (what and the API error; durable in the
    Applied condition): the transition that needed it has not happened."""
