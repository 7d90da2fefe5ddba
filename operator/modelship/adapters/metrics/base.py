"""The metrics-provider seam: the controller asks one question per analysis round and gets data back.

Why a Protocol: the engine must be testable with fakes, and a second provider (e.g. a managed Prometheus
with a different auth story) must not touch the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from modelship.domain.observations import MetricsSnapshot
from modelship.domain.slo_spec import Slo


@dataclass(frozen=True)
class AnalysisQuery:
    """What to measure: one deployment's canary (and stable, when there is one) over one window."""

    namespace: str
    name: str
    model: str
    version: str
    canary_revision: str
    stable_revision: str | None
    window_seconds: int
    slo: Slo
    stable_version: str | None = None
    comparing: bool = False
    """The shadow comparator runs for this canary: its SLOs are measured too (`slos.active_comparison`)."""

    @property
    def window(self) -> str:
        """The PromQL range, at least 1s (Prometheus refuses a zero range)."""
        return f"{max(1, int(self.window_seconds))}s"


@runtime_checkable
class MetricsSource(Protocol):
    """A metrics provider. Implementations never raise: outages are `MetricsSnapshot(available=False)`."""

    async def snapshot(self, query: AnalysisQuery) -> MetricsSnapshot:
        """Measure requests and every SLO of `slos.configured_slos(query.slo, query.comparing)`, canary and
        stable, in one window."""
        ...
