"""SLO assessment: per-metric verdicts, overall precedence and the evidence rules for missing data."""

from __future__ import annotations

import json
import math
from typing import Any

from engine_fixtures import T0, make_spec
from hypothesis import given
from hypothesis import strategies as st
from modelship.domain.analysis import assess, evidence, judge_metric
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.slos import DEFAULT_SLO, SloBound, configured_slos
from modelship.domain.status import AnalysisRecord, Verdict


def run(slo: dict[str, Any], values: dict[str, MetricValue], requests: float | None = 500,
        available: bool = True, min_requests: int = 10) -> AnalysisRecord:
    spec = make_spec(slo=slo, analysis={"minRequests": min_requests})
    return assess(spec, MetricsSnapshot(available=available, canary_requests=requests, values=values,
                                        error=None if available else "timeout"), T0)


def by_name(record: AnalysisRecord, name: str) -> Verdict:
    return next(Verdict(m.verdict) for m in record.metrics if m.name == name)


def test_given_canary_within_every_bound_when_assessed_then_pass_with_values_recorded() -> None:
    record = run({"errorRate": {"max": 0.01}, "latencyP99Ms": {"max": 250, "maxRatioToStable": 1.2}},
                 {"errorRate": MetricValue(0.002, 0.001), "latencyP99Ms": MetricValue(200, 190)})
    assert record.verdict == Verdict.PASS
    p99 = next(m for m in record.metrics if m.name == "latencyP99Ms")
    assert (p99.value, p99.stable_value, p99.max, p99.max_ratio_to_stable) == (200, 190, 250, 1.2)
    assert record.time == T0 and record.requests == 500


def test_given_error_rate_above_max_when_assessed_then_fail_naming_value_and_bound() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.05, 0.001)})
    assert record.verdict == Verdict.FAIL
    assert "0.05 > max 0.01" in record.metrics[0].message


def test_given_latency_ratio_to_stable_exceeded_when_assessed_then_fail() -> None:
    record = run({"latencyP99Ms": {"maxRatioToStable": 1.2}}, {"latencyP99Ms": MetricValue(300, 200)})
    assert record.verdict == Verdict.FAIL
    assert "1.50x stable" in record.metrics[0].message


def test_given_stable_latency_missing_when_only_ratio_bound_then_metric_is_no_data() -> None:
    slo = {"latencyP99Ms": {"max": 500, "maxRatioToStable": 1.2}}
    record = run(slo, {"latencyP99Ms": MetricValue(100, None)})
    assert record.verdict == Verdict.NO_DATA


def test_given_stable_zero_but_absolute_bound_fails_when_assessed_then_fail_not_no_data() -> None:
    slo = {"latencyP99Ms": {"max": 50, "maxRatioToStable": 1.2}}
    record = run(slo, {"latencyP99Ms": MetricValue(100, 0)})
    assert record.verdict == Verdict.FAIL


def test_given_stable_error_rate_zero_when_canary_tiny_then_pass_using_baseline_floor() -> None:
    record = run({"errorRate": {"maxRatioToStable": 1.5}}, {"errorRate": MetricValue(0.0005, 0.0)})
    assert record.verdict == Verdict.PASS


def test_given_stable_error_rate_zero_when_canary_regresses_then_fail() -> None:
    record = run({"errorRate": {"maxRatioToStable": 1.5}}, {"errorRate": MetricValue(0.05, 0.0)})
    assert record.verdict == Verdict.FAIL


def test_given_custom_min_bound_when_value_below_then_fail() -> None:
    slo = {"custom": [{"name": "confidence", "query": 'avg(x{namespace="{{namespace}}"})', "min": 0.7}]}
    assert run(slo, {"confidence": MetricValue(0.5)}).verdict == Verdict.FAIL
    assert run(slo, {"confidence": MetricValue(0.9)}).verdict == Verdict.PASS


def test_given_missing_metric_value_when_assessed_then_no_data_never_pass() -> None:
    assert run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(None)}).verdict == Verdict.NO_DATA
    assert run({"errorRate": {"max": 0.01}}, {}).verdict == Verdict.NO_DATA


def test_given_query_error_when_assessed_then_error() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(None, error="bad_data")})
    assert record.verdict == Verdict.ERROR
    assert "bad_data" in record.metrics[0].message


def test_given_provider_unavailable_when_assessed_then_error_for_every_metric() -> None:
    record = run({"errorRate": {"max": 0.01}, "queueP99Ms": {"max": 5}}, {}, available=False)
    assert record.verdict == Verdict.ERROR
    assert {m.verdict for m in record.metrics} == {Verdict.ERROR}
    assert "timeout" in record.message


def test_given_too_few_requests_when_all_metrics_pass_then_inconclusive() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.0)}, requests=3)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.0)}, requests=None).verdict == (
        Verdict.INCONCLUSIVE)


def test_given_a_counted_trickle_when_a_rate_is_empty_then_inconclusive_not_no_data() -> None:
    """0 canary requests in the window leave the error ratio empty: that is too little traffic (minRequests)."""
    empty = {"errorRate": MetricValue(None)}
    record = run({"errorRate": {"max": 0.01}}, empty, requests=0)
    assert record.verdict == Verdict.INCONCLUSIVE and "fewer than minRequests 10" in record.message
    assert by_name(record, "errorRate") == Verdict.NO_DATA
    assert run({"errorRate": {"max": 0.01}}, empty, requests=None).verdict == Verdict.NO_DATA
    assert run({"errorRate": {"max": 0.01}}, empty, requests=500).verdict == Verdict.NO_DATA
    assert run({"errorRate": {"max": 0.01}}, empty, requests=0, min_requests=0).verdict == Verdict.NO_DATA


def test_given_too_few_requests_when_a_metric_fails_then_fail_wins() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.5)}, requests=3)
    assert record.verdict == Verdict.FAIL


def test_given_fail_and_no_data_together_when_assessed_then_fail_wins_over_no_data() -> None:
    record = run({"errorRate": {"max": 0.01}, "latencyP99Ms": {"max": 10}},
                 {"errorRate": MetricValue(None), "latencyP99Ms": MetricValue(20)})
    assert record.verdict == Verdict.FAIL
    assert by_name(record, "errorRate") == Verdict.NO_DATA


def test_given_error_and_no_data_together_when_assessed_then_error_wins() -> None:
    record = run({"errorRate": {"max": 0.01}, "latencyP99Ms": {"max": 10}},
                 {"errorRate": MetricValue(None), "latencyP99Ms": MetricValue(None, error="x")})
    assert record.verdict == Verdict.ERROR


def test_given_no_slo_configured_when_listing_slos_then_default_error_rate_applies() -> None:
    spec = make_spec(slo={})
    assert configured_slos(spec.slo) == (DEFAULT_SLO,)
    record = assess(spec, MetricsSnapshot(available=True, canary_requests=100,
                                          values={"errorRate": MetricValue(0.02)}), T0)
    assert record.verdict == Verdict.FAIL and record.metrics[0].max == 0.01


def test_given_min_requests_zero_when_request_count_unknown_then_pass() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.0)}, requests=None, min_requests=0)
    assert record.verdict == Verdict.PASS


def test_given_failed_record_when_rendering_evidence_then_values_and_bounds_are_named() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.05, 0.001)})
    text = evidence(record)
    assert "errorRate=0.05" in text and "max 0.01" in text and "stable 0.001" in text and "Fail" in text


def test_given_record_when_round_tripped_through_json_then_equal() -> None:
    record = run({"errorRate": {"max": 0.01}}, {"errorRate": MetricValue(0.05, 0.001)})
    again = AnalysisRecord.model_validate(record.model_dump(by_alias=True, mode="json"))
    assert again == record


NON_FINITE = (math.nan, math.inf, -math.inf)
SLO_WITH_RATIO = {"errorRate": {"max": 0.01, "maxRatioToStable": 2}, "latencyP99Ms": {"max": 250},
                  "custom": [{"name": "conf", "min": 0.5, "query": 'avg(c{namespace="{{namespace}}"})'}]}


def test_given_nan_canary_error_rate_when_judged_then_no_data_not_pass() -> None:
    bound = SloBound(name="errorRate", max=0.01)
    for value in NON_FINITE:
        result = judge_metric(bound, MetricValue(value, 0.001))
        assert result.verdict == Verdict.NO_DATA and result.value is None, value


def test_given_non_finite_stable_when_ratio_bound_then_no_baseline_rather_than_pass() -> None:
    bound = SloBound(name="latencyP99Ms", max_ratio_to_stable=1.2)
    for value in NON_FINITE:
        result = judge_metric(bound, MetricValue(100.0, value))
        assert result.verdict == Verdict.NO_DATA and result.stable_value is None, value


maybe_numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@given(canary=maybe_numbers, stable=maybe_numbers, requests=maybe_numbers, custom=maybe_numbers)
def test_any_metric_values_judge_finite_evidence_only_and_status_always_serialises(
    canary: float | None, stable: float | None, requests: float | None, custom: float | None
) -> None:
    record = run(SLO_WITH_RATIO, {"errorRate": MetricValue(canary, stable), "latencyP99Ms": MetricValue(10.0, 9.0),
                                  "conf": MetricValue(custom, custom)}, requests=requests)
    text = json.dumps(record.model_dump(by_alias=True, mode="json"), allow_nan=False)
    assert AnalysisRecord.model_validate(json.loads(text)) == record
    if canary is None or not math.isfinite(canary):
        assert by_name(record, "errorRate") == Verdict.NO_DATA
    if custom is None or not math.isfinite(custom):
        assert by_name(record, "conf") == Verdict.NO_DATA
    if record.verdict == Verdict.PASS:
        assert all(m.value is not None and math.isfinite(m.value) for m in record.metrics)
        assert requests is not None and math.isfinite(requests)
