"""Side effects `decide` asks for; the controller carries them out in order with adapters.

Each action is idempotent (server-side apply of a desired state), so replaying a decision after a crash is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modelship.domain.compare_spec import CompareSpec
from modelship.domain.status import Revision


class Role(StrEnum):
    STABLE = "stable"
    CANARY = "canary"
    PREVIOUS = "previous"
    """The revision stable replaced, kept warm (no traffic) through the post-promotion window."""


@dataclass(frozen=True)
class EnsureRevision:
    """Apply the revision's Deployment with this many replicas (0 scales it down, pods gone, object kept)."""

    revision: Revision
    role: Role
    replicas: int


@dataclass(frozen=True)
class DeleteRevision:
    """Remove a retired revision's Deployment entirely."""

    revision_hash: str


@dataclass(frozen=True)
class SetTraffic:
    """Desired routing: weights always sum to 100 (stable gets 100 - canary_weight)."""

    stable: Revision
    canary: Revision | None
    canary_weight: int
    mirror_percent: int
    compared: bool = False
    """Mirror to the comparator (which asks stable and canary and judges both answers), not to the canary."""

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight


@dataclass(frozen=True)
class EnsureComparator:
    """Run the shadow comparator for this canary: `sample_percent` of mirrored requests compared, shift computed
    over `window_seconds` (the analysis interval)."""

    canary: Revision
    compare: CompareSpec
    sample_percent: float
    window_seconds: int
    after_promotion: bool = False
    """The post-promotion window: the previous revision (behind `<name>-canary`) is the baseline and the new
    stable (behind `<name>-stable`) is judged."""


@dataclass(frozen=True)
class RemoveComparator:
    """No comparison runs: the comparator goes (nothing is sent when there is none)."""


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the ModelDeployment, with the evidence in the message."""

    type: EventType
    reason: str
    message: str


Action = EnsureRevision | DeleteRevision | SetTraffic | EnsureComparator | RemoveComparator | EmitEvent
