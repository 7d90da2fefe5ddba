"""The SLO catalogue: the built-in SLOs, and the one list of SLOs a spec is judged on.

Why one list: what the metrics adapter queries, what the analysis judges, what validation checks and what
status, Events and the plugin show must be the same set of names. When the names lived in four places, a spec
without an `slo` block was judged on the default error-rate bound that the adapter never queried: every check
was NoData and healthy canaries were rolled back at the progress deadline.

A built-in SLO's name is the camelCase key of its field in `spec.slo` (and so the key in
`status.lastAnalysis.metrics`); its description is the field's own (the one `kubectl explain` shows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelship.domain.api import RatioBound, Slo

DEFAULT_ERROR_RATE_MAX = 0.01


@dataclass(frozen=True)
class BuiltinSlo:
    """One SLO Modelship measures from Triton's own metrics, without PromQL from the user."""

    field: str
    """Attribute of `Slo` that holds its bound, e.g. `error_rate`."""
    unit: str
    """What the value counts: `ratio` (0-1) or `ms`."""
    baseline_floor: float | None = None
    """Lowest stable value a ratio bound divides by: a healthy stable often has exactly 0 errors."""

    @property
    def name(self) -> str:
        """The spec key, e.g. `errorRate`, also the metric name in status and Events."""
        return Slo.model_fields[self.field].alias or self.field

    @property
    def description(self) -> str:
        return Slo.model_fields[self.field].description or ""

    def bound(self, slo: Slo) -> RatioBound | None:
        """The bound the spec declares for this SLO, None when it declares none."""
        value = getattr(slo, self.field)
        return value if isinstance(value, RatioBound) else None


ERROR_RATE = BuiltinSlo("error_rate", "ratio", baseline_floor=0.001)
LATENCY_P99 = BuiltinSlo("latency_p99_ms", "ms")
LATENCY_P95 = BuiltinSlo("latency_p95_ms", "ms")
QUEUE_P99 = BuiltinSlo("queue_p99_ms", "ms")
BUILTIN_SLOS = (ERROR_RATE, LATENCY_P99, LATENCY_P95, QUEUE_P99)
BUILTIN_BY_NAME = {slo.name: slo for slo in BUILTIN_SLOS}


@dataclass(frozen=True)
class SloBound:
    """One SLO as judged: name and bounds, flattened from the spec's different SLO shapes."""

    name: str
    min: float | None = None
    max: float | None = None
    max_ratio_to_stable: float | None = None
    builtin: BuiltinSlo | None = None
    """The catalogue entry of a built-in SLO; None for a custom query."""
    query: str | None = None
    """The PromQL template of a custom SLO."""

    @property
    def baseline_floor(self) -> float | None:
        return self.builtin.baseline_floor if self.builtin else None


DEFAULT_SLO = SloBound(name=ERROR_RATE.name, max=DEFAULT_ERROR_RATE_MAX, builtin=ERROR_RATE)


def configured_slos(slo: Slo) -> tuple[SloBound, ...]:
    """The SLOs a spec is judged on, built-ins first in catalogue order, then custom ones in spec order.

    With none declared, `DEFAULT_SLO` (errorRate max 0.01): a rollout is never judged on nothing, and the
    metrics adapter measures exactly this list, so the default is queried like a declared bound.
    """
    out = [
        SloBound(name=entry.name, max=bound.max, max_ratio_to_stable=bound.max_ratio_to_stable, builtin=entry)
        for entry in BUILTIN_SLOS
        if (bound := entry.bound(slo)) is not None
    ]
    out.extend(SloBound(name=c.name, min=c.min, max=c.max, query=c.query) for c in slo.custom)
    return tuple(out) or (DEFAULT_SLO,)


def finite(value: float | None) -> float | None:
    """The value, or None when it is missing, NaN or infinite: such a number is no evidence either way."""
    if value is None or not math.isfinite(value):
        return None
    return value
