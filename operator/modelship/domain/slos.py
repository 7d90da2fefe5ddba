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

from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.compare_spec import CompareSpec
from modelship.domain.slo_spec import DEFAULT_OUTPUT_SHIFT_MAX, Slo
from modelship.domain.status import Stage

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
    comparator: bool = False
    """Measured by the shadow comparator from compared request pairs, not from Triton's metrics: judged only
    while it runs, and `minRequests` counts compared pairs."""

    @property
    def name(self) -> str:
        """The spec key, e.g. `errorRate`, also the metric name in status and Events."""
        return Slo.model_fields[self.field].alias or self.field

    @property
    def description(self) -> str:
        return Slo.model_fields[self.field].description or ""

    def bound(self, slo: Slo) -> SloBound | None:
        """The bound the spec declares for this SLO, None when it declares none."""
        value = getattr(slo, self.field)
        if value is None:
            return None
        return SloBound(
            name=self.name,
            min=getattr(value, "min", None),
            max=getattr(value, "max", None),
            max_ratio_to_stable=getattr(value, "max_ratio_to_stable", None),
            enforce=value.enforce,
            builtin=self,
        )


ERROR_RATE = BuiltinSlo("error_rate", "ratio", baseline_floor=0.001)
LATENCY_P99 = BuiltinSlo("latency_p99_ms", "ms")
LATENCY_P95 = BuiltinSlo("latency_p95_ms", "ms")
QUEUE_P99 = BuiltinSlo("queue_p99_ms", "ms")
OUTPUT_AGREEMENT = BuiltinSlo("output_agreement", "ratio", comparator=True)
OUTPUT_SHIFT = BuiltinSlo("output_shift", "psi", comparator=True)
BUILTIN_SLOS = (ERROR_RATE, LATENCY_P99, LATENCY_P95, QUEUE_P99, OUTPUT_AGREEMENT, OUTPUT_SHIFT)
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
    enforce: bool = True
    """False: observe-only, measured and shown but never failing a check."""

    @property
    def baseline_floor(self) -> float | None:
        return self.builtin.baseline_floor if self.builtin else None

    @property
    def comparator(self) -> bool:
        return self.builtin is not None and self.builtin.comparator


DEFAULT_SLO = SloBound(name=ERROR_RATE.name, max=DEFAULT_ERROR_RATE_MAX, builtin=ERROR_RATE)
DEFAULT_OUTPUT_SHIFT = SloBound(name=OUTPUT_SHIFT.name, max=DEFAULT_OUTPUT_SHIFT_MAX, builtin=OUTPUT_SHIFT)


def configured_slos(slo: Slo, comparing: bool = False) -> tuple[SloBound, ...]:
    """The SLOs a spec is judged on: Triton's built-ins in catalogue order, custom ones in spec order, then
    (only while the comparator runs) the comparator's.

    With no serving SLO declared, `DEFAULT_SLO` (errorRate max 0.01): a rollout is never judged on nothing,
    and the metrics adapter measures exactly this list, so the default is queried like a declared bound.
    While comparing, outputShift max 0.25 applies unless the spec sets it: a grossly different model is caught
    with no extra YAML.
    """
    out = [bound for entry in BUILTIN_SLOS if not entry.comparator and (bound := entry.bound(slo)) is not None]
    out.extend(SloBound(name=c.name, min=c.min, max=c.max, query=c.query, enforce=c.enforce) for c in slo.custom)
    if not out:
        out.append(DEFAULT_SLO)
    if comparing:
        agreement = OUTPUT_AGREEMENT.bound(slo)
        out.extend([agreement] if agreement is not None else [])
        out.append(OUTPUT_SHIFT.bound(slo) or DEFAULT_OUTPUT_SHIFT)
    return tuple(out)


def active_comparison(spec: ModelDeploymentSpec, stage: Stage | None) -> tuple[CompareSpec, float] | None:
    """The comparison that runs in `stage` and the percent of requests it samples, None when none runs.

    Shadow compares when a shadow stage is declared and comparison is not disabled; canary steps and the
    post-promotion window (the new stable against the previous revision) keep comparing a sample only when
    `canarySamplePercent` is above 0.
    """
    shadow = spec.rollout.shadow
    if shadow is None or not shadow.compare.enabled:
        return None
    if stage == Stage.SHADOW:
        return shadow.compare, shadow.compare.sample_percent
    watch = spec.rollout.post_promotion
    if stage == Stage.POST_PROMOTION and (watch is None or watch.keep_previous.replicas == 0):
        return None  # nothing warm to compare against
    if stage in (Stage.CANARY, Stage.POST_PROMOTION) and shadow.compare.canary_sample_percent > 0:
        return shadow.compare, shadow.compare.canary_sample_percent
    return None


def judged_slos(spec: ModelDeploymentSpec, stage: Stage | None) -> tuple[SloBound, ...]:
    """What a check in `stage` judges (and so what the metrics adapter measures for it)."""
    return configured_slos(spec.slo, comparing=active_comparison(spec, stage) is not None)


def finite(value: float | None) -> float | None:
    """The value, or None when it is missing, NaN or infinite: such a number is no evidence either way."""
    if value is None or not math.isfinite(value):
        return None
    return value
