"""The comparator's Prometheus series (prometheus-client, a registry of its own): what the operator's
`outputAgreement` and `outputShift` SLOs query, and what a human reads to see how the answers moved.

Counters count mirrored requests by outcome and compared pairs; shift and summaries are computed from the window
when Prometheus scrapes, so they are never staler than the scrape. Output labels are bounded: the first
`MAX_COMPARED_OUTPUTS` output names keep their name, any later one is counted as `_other`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelship.comparator.shift import psi_categorical, psi_numeric, summarize
from modelship.comparator.window import Window
from modelship.domain.compare_spec import MAX_COMPARED_OUTPUTS

PREFIX = "modelship_comparator"
OTHER_OUTPUT = "_other"


class Outcome:
    """What became of one mirrored request (the `outcome` label)."""

    COMPARED = "compared"
    UNSAMPLED = "unsampled"
    DROPPED = "dropped"
    """The queue was full: dropped at once, so live traffic never waits on the comparator."""
    UPSTREAM_FAILED = "upstream_failed"


class OutputLabels:
    """Keeps output-name labels bounded whatever outputs a model returns."""

    def __init__(self, limit: int = MAX_COMPARED_OUTPUTS) -> None:
        self._limit = limit
        self._known: list[str] = []

    def __call__(self, name: str) -> str:
        if name in self._known:
            return name
        if len(self._known) < self._limit:
            self._known.append(name)
            return name
        return OTHER_OUTPUT


class ComparatorMetrics:
    def __init__(self, window: Window, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.labels = OutputLabels()
        self.requests = Counter(
            f"{PREFIX}_requests", "Mirrored requests received, by what became of them.", ["outcome"],
            registry=self.registry,
        )
        for outcome in (Outcome.COMPARED, Outcome.UNSAMPLED, Outcome.DROPPED, Outcome.UPSTREAM_FAILED):
            self.requests.labels(outcome)
        self.compared = Counter(
            f"{PREFIX}_compared", "Requests answered by both stable and canary and judged.", registry=self.registry
        )
        self.agreed = Counter(
            f"{PREFIX}_agreed", "Compared requests whose outputs all agreed.", registry=self.registry
        )
        self.disagreements = Counter(
            f"{PREFIX}_disagreements", "Outputs that disagreed, by output and reason.", ["output", "reason"],
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            f"{PREFIX}_upstream_failures", "Calls to stable or canary that gave no usable answer.",
            ["role", "reason"], registry=self.registry,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Mirrored requests waiting to be compared.", registry=self.registry
        )
        self.registry.register(ShiftCollector(window, self.labels))


class ShiftCollector(Collector):
    """`output_shift{output}` (PSI, canary against stable) and `output_summary{output,side,stat}`, at scrape."""

    def __init__(self, window: Window, labels: OutputLabels) -> None:
        self._window = window
        self._labels = labels

    def collect(self) -> Iterator[GaugeMetricFamily]:
        shift = GaugeMetricFamily(
            f"{PREFIX}_output_shift",
            "Population stability index of canary's outputs against stable's over the window (0: same; > 0.25: "
            "a major shift).",
            labels=["output"],
        )
        summary = GaugeMetricFamily(
            f"{PREFIX}_output_summary", "Mean and p5/p50/p95 of each side's output values over the window.",
            labels=["output", "side", "stat"],
        )
        pairs = GaugeMetricFamily(
            f"{PREFIX}_window_values", "Output values held in the window, all outputs and sides.",
            value=float(self._window.size()),
        )
        for output in self._window.outputs():
            label = self._labels(output)
            if label == OTHER_OUTPUT:
                continue
            values = self._values(output)  # read once per scrape: the shift and both summaries use them
            value = self._shift(output, values)
            if value is not None:
                shift.add_metric([label], value)
            for side, side_values in values.items():
                stats = summarize(side_values)
                if stats is not None:
                    for stat, number in stats.as_dict().items():
                        summary.add_metric([label, side, stat], number)
        yield shift
        yield summary
        yield pairs

    def output_shift(self, output: str) -> float | None:
        return self._shift(output, self._values(output))

    def _values(self, output: str) -> dict[str, npt.NDArray[np.float64]]:
        return {side: self._window.values(output, side, "values").astype(float, copy=False)
                for side in ("stable", "canary")}

    def _shift(self, output: str, values: dict[str, npt.NDArray[np.float64]]) -> float | None:
        """Classes when the output is compared by class (or is BYTES), else its numeric values."""
        stable = self._window.values(output, "stable", "classes")
        if stable.size:
            return psi_categorical(stable.tolist(), self._window.values(output, "canary", "classes").tolist())
        return psi_numeric(values["stable"], values["canary"])
