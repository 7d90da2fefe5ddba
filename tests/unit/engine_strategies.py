"""Hypothesis strategies for engine properties: rollout specs, step edits, SLO sets and hostile metrics.

Metrics cover what a real provider (or a buggy adapter) can hand the domain: healthy and failing values,
empty results, missing series, NaN and +/-Inf on either side, per-SLO query errors, non-finite request
counts and a provider that cannot be reached at all.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st
from modelship.domain.observations import MetricsSnapshot, MetricValue

CUSTOM_SLO = {"name": "score", "query": 'avg(score{namespace="{{namespace}}"})', "min": 0.5, "max": 1.0}
SLO_SETS: dict[str, dict[str, Any]] = {
    "errorRate": {"errorRate": {"max": 0.01}},
    "none": {},  # no slo block: the default error-rate bound applies
    "ratio": {"errorRate": {"maxRatioToStable": 1.5}},
    "latency": {"errorRate": {"max": 0.01}, "latencyP99Ms": {"max": 200, "maxRatioToStable": 2}},
    "custom": {"errorRate": {"max": 0.01}, "custom": [CUSTOM_SLO]},
}
GOOD = {"errorRate": (0.001, 0.001), "latencyP99Ms": (100.0, 100.0), "score": (0.8, 0.8)}
BAD = {"errorRate": (0.2, 0.001), "latencyP99Ms": (500.0, 100.0), "score": (0.1, 0.8)}
NAN, INF = math.nan, math.inf
VALUE_KINDS = ["good"] * 8 + ["bad", "none", "missing", "nan", "inf", "-inf", "stable-nan", "stable-inf", "error"]


@st.composite
def canary_steps(draw: st.DrawFn, *, trailing_approval: bool = False) -> list[dict[str, Any]]:
    """Strictly increasing weights, each maybe behind an approval gate (and maybe one gate at the end)."""
    weights = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=4)))
    steps: list[dict[str, Any]] = []
    for w in weights:
        if draw(st.booleans()) and draw(st.booleans()):
            steps.append({"approval": {}})
        steps.append({"weight": w, "duration": f"{draw(st.integers(1, 4))}m"})
    if trailing_approval and draw(st.booleans()):
        steps.append({"approval": {}})
    return steps


@st.composite
def rollouts(draw: st.DrawFn) -> dict[str, Any]:
    """Spec knobs: increasing weights with optional approval gates, optional shadow, every policy."""
    knobs: dict[str, Any] = {
        "steps": draw(canary_steps()),
        "replicas": draw(st.integers(1, 5)),
        "gpuSurge": draw(st.sampled_from(["Allow", "ScaleDownStable", "Never"])),
        "traffic": draw(st.sampled_from([{"none": {}}, {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}])),
        "analysis": {
            "failureLimit": draw(st.integers(1, 3)),
            "onNoData": draw(st.sampled_from(["Hold", "Fail"])),
            "onMetricsUnavailable": draw(st.sampled_from(["Hold", "Fail"])),
        },
    }
    if draw(st.booleans()):
        mirror, minutes = draw(st.integers(1, 100)), draw(st.integers(1, 3))
        knobs["shadow"] = {"mirrorPercent": mirror, "duration": f"{minutes}m"}
    if draw(st.booleans()):
        knobs["postPromotion"] = {"window": f"{draw(st.integers(1, 3))}m",
                                  "keepPrevious": {"replicas": draw(st.integers(0, 2))}}
    return knobs


def _value(name: str, kind: str) -> MetricValue | None:
    canary, stable = GOOD[name]
    if kind == "bad":
        canary, stable = BAD[name]
    values: dict[str, MetricValue | None] = {
        "none": MetricValue(canary=None),
        "missing": None,
        "nan": MetricValue(canary=NAN, stable=stable),
        "inf": MetricValue(canary=INF, stable=stable),
        "-inf": MetricValue(canary=-INF, stable=stable),
        "stable-nan": MetricValue(canary=canary, stable=NAN),
        "stable-inf": MetricValue(canary=canary, stable=INF),
        "error": MetricValue(canary=None, error="vector cannot contain metrics with the same labelset"),
    }
    return values[kind] if kind in values else MetricValue(canary=canary, stable=stable)


@st.composite
def snapshots(draw: st.DrawFn) -> MetricsSnapshot:
    """One query round: mostly healthy, sometimes hostile in one or more ways."""
    if draw(st.integers(0, 19)) == 0:
        return MetricsSnapshot(available=False, error="connection refused")
    requests = draw(st.sampled_from([500.0] * 8 + [3.0, None, NAN, INF, -INF]))
    values: dict[str, MetricValue] = {}
    for name in GOOD:
        value = _value(name, draw(st.sampled_from(VALUE_KINDS)))
        if value is not None:
            values[name] = value
    return MetricsSnapshot(available=True, canary_requests=requests, values=values)


def healthy() -> MetricsSnapshot:
    """Every SLO of every set in `SLO_SETS` met, over plenty of requests."""
    return MetricsSnapshot(available=True, canary_requests=500.0,
                           values={name: MetricValue(canary=c, stable=s) for name, (c, s) in GOOD.items()})
