"""Wiring of the metrics port: namespace overrides are read once a minute, windows are never too short."""

from __future__ import annotations

from typing import Any

from modelship.adapters.metrics.base import AnalysisQuery
from modelship.controller.ports import Owner
from modelship.controller.wiring import PrometheusMetrics
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot
from modelship.domain.status import Revision

SPEC = ModelDeploymentSpec.model_validate(
    {"model": {"name": "fraud_scorer", "version": "2", "repository": "s3://m"}}
)


class RecordingSource:
    def __init__(self) -> None:
        self.queries: list[AnalysisQuery] = []

    async def snapshot(self, query: AnalysisQuery) -> MetricsSnapshot:
        self.queries.append(query)
        return MetricsSnapshot(available=True)


class Sources:
    def __init__(self) -> None:
        self.source = RecordingSource()
        self.annotations: list[Any] = []

    def for_namespace(self, annotations: Any) -> RecordingSource:
        self.annotations.append(annotations)
        return self.source


class NamespaceReads:
    def __init__(self) -> None:
        self.reads = 0

    async def read(self, path: str) -> dict[str, Any]:
        self.reads += 1
        return {"metadata": {"annotations": {"modelship.dev/prometheus-url": "http://prom.team:9090"}}}


async def test_short_analysis_intervals_query_at_least_the_minimum_window() -> None:
    """Given a 3s analysis interval and a 10s minimum, the PromQL window is 10s (two scrapes fit in it);
    a longer interval is used as is."""
    sources, kube = Sources(), NamespaceReads()
    metrics = PrometheusMetrics(sources, kube, min_window_seconds=10)  # type: ignore[arg-type]
    owner = Owner("ml", "fraud", "uid")
    canary, stable = Revision(version="2", hash="c"), Revision(version="1", hash="s")
    await metrics.snapshot(owner, SPEC, canary, stable, 3)
    await metrics.snapshot(owner, SPEC, canary, stable, 60)
    assert [q.window_seconds for q in sources.source.queries] == [10, 60]
    assert sources.source.queries[0].stable_revision == "s"
    assert kube.reads == 1, "namespace annotations are cached, not read on every round"
    assert sources.annotations[0] == {"modelship.dev/prometheus-url": "http://prom.team:9090"}
