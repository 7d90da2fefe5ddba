"""The comparator's SLOs: judged only while it runs, outputShift 0.25 by default, minRequests over compared
pairs, observe-only SLOs that never fail a check, and the Prometheus queries that measure them."""

from __future__ import annotations

from typing import Any

import pytest
from engine_fixtures import T0, make_spec, rolled_out
from hypothesis import given
from hypothesis import strategies as st
from modelship.adapters.metrics.base import AnalysisQuery
from modelship.adapters.metrics.prometheus import PrometheusSettings, PrometheusSource, shift_detail
from modelship.adapters.metrics.queries import comparator_queries, comparator_selector, compared_query
from modelship.domain.actions import EmitEvent
from modelship.domain.analysis import assess, evidence
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.slo_spec import Slo
from modelship.domain.slos import DEFAULT_OUTPUT_SHIFT, active_comparison, configured_slos, judged_slos
from modelship.domain.status import Stage, Verdict
from modelship.domain.validation import parse_spec, semantic_problems

SHADOW = {"mirrorPercent": 100, "duration": "10m"}


def shadow_spec(slo: dict[str, Any] | None = None, **compare: Any) -> ModelDeploymentSpec:
    shadow = {**SHADOW, "compare": compare} if compare else SHADOW
    return make_spec(slo=slo or {"errorRate": {"max": 0.01}}, shadow=shadow, analysis={"minRequests": 100})


def snapshot(shift: float | None = 0.03, agreement: float | None = 0.999, compared: float | None = 400,
             error_rate: float = 0.001, detail: str | None = None) -> MetricsSnapshot:
    return MetricsSnapshot(
        available=True, canary_requests=400, compared=compared,
        values={
            "errorRate": MetricValue(error_rate, 0.001),
            "outputShift": MetricValue(shift, detail=detail),
            "outputAgreement": MetricValue(agreement),
        },
    )


def names(bounds: tuple[Any, ...]) -> list[str]:
    return [bound.name for bound in bounds]


# --- what is judged when -----------------------------------------------------------------------------------


def test_a_declared_shadow_compares_by_default_and_judges_output_shift_at_most_0_25() -> None:
    spec = shadow_spec()
    assert active_comparison(spec, Stage.SHADOW) == (spec.rollout.shadow.compare, 100.0)  # type: ignore[union-attr]
    assert names(judged_slos(spec, Stage.SHADOW)) == ["errorRate", "outputShift"]
    assert judged_slos(spec, Stage.SHADOW)[-1] == DEFAULT_OUTPUT_SHIFT and DEFAULT_OUTPUT_SHIFT.max == 0.25


def test_comparator_slos_are_judged_only_while_it_runs() -> None:
    spec = shadow_spec({"errorRate": {"max": 0.01}, "outputAgreement": {"min": 0.99}, "outputShift": {"max": 0.1}})
    assert names(judged_slos(spec, Stage.SHADOW)) == ["errorRate", "outputAgreement", "outputShift"]
    assert names(judged_slos(spec, Stage.CANARY)) == ["errorRate"]
    assert names(judged_slos(make_spec(), Stage.SHADOW)) == ["errorRate"]  # no shadow stage: nothing compares
    sampled = shadow_spec(canarySamplePercent=5)
    assert active_comparison(sampled, Stage.CANARY) == (sampled.rollout.shadow.compare, 5.0)  # type: ignore[union-attr]
    assert names(judged_slos(sampled, Stage.CANARY)) == ["errorRate", "outputShift"]


def test_compare_enabled_false_turns_comparison_and_its_slos_off() -> None:
    spec = shadow_spec(enabled=False)
    assert active_comparison(spec, Stage.SHADOW) is None
    assert names(judged_slos(spec, Stage.SHADOW)) == ["errorRate"]


def test_output_slos_alone_still_leave_the_default_error_rate_bound() -> None:
    only_outputs = Slo.model_validate({"outputShift": {"max": 0.2}})
    assert names(configured_slos(only_outputs, comparing=True)) == ["errorRate", "outputShift"]
    assert names(configured_slos(only_outputs)) == ["errorRate"]


# --- judging ------------------------------------------------------------------------------------------------


def test_a_grossly_shifted_canary_fails_with_the_evidence_a_human_reads() -> None:
    record = assess(shadow_spec(), snapshot(shift=3.9, compared=412, detail="score p50 0.97 (stable 0.62)"), T0,
                    Stage.SHADOW)
    assert record.verdict == Verdict.FAIL and record.compared == 412
    shift = next(m for m in record.metrics if m.name == "outputShift")
    assert shift.message == (
        "outputShift 3.9 > max 0.25 over 412 compared requests; score p50 0.97 (stable 0.62)"
    )
    assert "outputShift=3.9 (max 0.25) Fail [score p50 0.97 (stable 0.62)]" in evidence(record)
    assert "compared=412" in evidence(record)


def test_a_mildly_retrained_canary_passes() -> None:
    spec = shadow_spec({"errorRate": {"max": 0.01}, "outputAgreement": {"min": 0.9}})
    record = assess(spec, snapshot(shift=0.04, agreement=0.97), T0, Stage.SHADOW)
    assert record.verdict == Verdict.PASS, record.message


def test_agreement_below_its_minimum_fails() -> None:
    spec = shadow_spec({"outputAgreement": {"min": 0.99}})
    record = assess(spec, snapshot(agreement=0.42), T0, Stage.SHADOW)
    assert record.verdict == Verdict.FAIL
    assert "outputAgreement 0.42 < min 0.99 over 400 compared requests" in record.message


def test_min_requests_counts_compared_pairs_for_the_output_slos() -> None:
    record = assess(shadow_spec(), snapshot(shift=3.9, compared=12), T0, Stage.SHADOW)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert "outputShift: 12 compared requests, fewer than minRequests 100" in record.message
    assert assess(shadow_spec(), snapshot(compared=100), T0, Stage.SHADOW).verdict == Verdict.PASS


def test_no_shift_yet_is_no_data_never_a_pass() -> None:
    assert assess(shadow_spec(), snapshot(shift=None), T0, Stage.SHADOW).verdict == Verdict.NO_DATA


CONF = {"name": "conf", "min": 0.9, "enforce": False, "query": 'avg(c{namespace="{{namespace}}"})'}


@pytest.mark.parametrize(
    ("slo", "breached"),
    [
        ({"errorRate": {"max": 0.01, "enforce": False}}, snapshot(error_rate=0.5)),
        ({"errorRate": {"max": 0.01}, "outputShift": {"max": 0.25, "enforce": False}}, snapshot(shift=3.9)),
        ({"errorRate": {"max": 0.01}, "custom": [CONF]}, snapshot()),
    ],
    ids=["errorRate", "outputShift", "custom"],
)
def test_an_observe_only_slo_that_breaches_never_fails_a_check(slo: dict[str, Any],
                                                               breached: MetricsSnapshot) -> None:
    breached.values["conf"] = MetricValue(0.1)
    record = assess(shadow_spec(slo), breached, T0, Stage.SHADOW)
    observed = [m for m in record.metrics if not m.enforced]
    assert record.verdict == Verdict.PASS, record.message
    assert len(observed) == 1 and observed[0].verdict == Verdict.FAIL
    assert observed[0].message.endswith("(observe-only)")
    assert f"observe-only breached: {observed[0].name}" in record.message


def test_enforce_defaults_to_true_everywhere() -> None:
    slo = Slo.model_validate({"errorRate": {"max": 0.1}, "latencyP99Ms": {"max": 1}, "outputAgreement": {"min": 0.5},
                              "outputShift": {"max": 1}, "custom": [{"name": "c", "max": 1,
                                                                     "query": 'x{namespace="{{namespace}}"}'}]})
    assert all(bound.enforce for bound in configured_slos(slo, comparing=True))


# --- measuring ----------------------------------------------------------------------------------------------

CMP = comparator_selector("ml", "fraud", "c1")


def test_comparator_queries_select_its_own_comparator_of_this_canary() -> None:
    assert CMP == ('namespace="ml",modelship_dev_deployment="fraud",modelship_dev_role="comparator",'
                   'modelship_dev_compared_revision="c1"')
    assert compared_query(CMP, "60s") == (
        f"(sum(increase(modelship_comparator_compared_total{{{CMP}}}[60s])) or "
        f"count(modelship_comparator_compared_total{{{CMP}}}) * 0)"
    )
    queries = comparator_queries(CMP, "60s")
    assert queries["outputShift"] == (("psi", f"max(modelship_comparator_output_shift{{{CMP}}})"),)
    assert queries["outputAgreement"][0][1] == (
        f"sum(increase(modelship_comparator_agreed_total{{{CMP}}}[60s])) / "
        f"sum(increase(modelship_comparator_compared_total{{{CMP}}}[60s]))"
    )


class Answers:
    def __init__(self) -> None:
        self.queries: list[str] = []

    async def custom_query(self, query: str, params: dict[str, str] | None = None) -> Any:
        self.queries.append(query)
        if query.startswith("max by (output) ("):
            return [{"metric": {"output": "score"}, "value": [0, "3.9"]},
                    {"metric": {"output": "label"}, "value": [0, "0.1"]}]
        if query.startswith("max by (output, side)"):
            return [{"metric": {"output": "score", "side": side}, "value": [0, value]}
                    for side, value in (("canary", "0.97"), ("stable", "0.62"))]
        if "output_shift" in query:
            return [{"metric": {}, "value": [0, "3.9"]}]
        if "comparator_compared_total" in query and "agreed" not in query:
            return [{"metric": {}, "value": [0, "412"]}]
        if "agreed_total" in query:
            return [{"metric": {}, "value": [0, "0.5"]}]
        if "nv_inference_request_success" in query or "failure" in query:
            return [{"metric": {}, "value": [0, "0.001" if "/" in query else "400"]}]
        return []


def query(comparing: bool) -> AnalysisQuery:
    slo = Slo.model_validate({"errorRate": {"max": 0.01}, "outputAgreement": {"min": 0.9}})
    return AnalysisQuery("ml", "fraud", "fraud_scorer", "7", "c1", "s1", 60, slo, comparing=comparing)


async def test_while_comparing_the_source_measures_pairs_agreement_shift_and_the_detail() -> None:
    answers = Answers()
    source = PrometheusSource(PrometheusSettings(url="http://prom:9090"), lambda _s: answers)
    measured = await source.snapshot(query(comparing=True))
    assert measured.available and measured.compared == 412
    assert measured.values["outputShift"].canary == 3.9
    assert measured.values["outputShift"].detail == "score p50 0.97 (stable 0.62)"
    assert measured.values["outputAgreement"].canary == 0.5 and measured.values["outputAgreement"].stable is None
    idle = Answers()
    quiet = await PrometheusSource(PrometheusSettings(url="http://prom:9090"), lambda _s: idle).snapshot(
        query(comparing=False))
    assert set(quiet.values) == {"errorRate"} and quiet.compared is None
    assert not any("comparator" in q for q in idle.queries)


def test_the_detail_names_the_output_that_moved_most_and_is_absent_without_both_sides() -> None:
    shifts = [({"output": "a"}, 0.1), ({"output": "b"}, 2.0), ({"output": "c"}, float("nan"))]
    summaries = [({"output": "b", "side": "canary"}, 5.0), ({"output": "b", "side": "stable"}, 1.0)]
    assert shift_detail(shifts, summaries) == "b p50 5 (stable 1)"
    assert shift_detail(shifts, summaries[:1]) is None
    assert shift_detail([], summaries) is None


def test_an_observe_only_breach_is_a_warning_event_not_a_failed_check() -> None:
    slo = {"errorRate": {"max": 0.01}, "outputShift": {"max": 0.25, "enforce": False}}
    sim = rolled_out(shadow={**SHADOW, "duration": "2m"}, slo=slo, analysis={"minRequests": 100})
    sim.decide(validation=None)
    assert sim.decide().status.stage == Stage.SHADOW
    decision = sim.run_checks(1, snapshot(shift=3.9))
    assert decision.status.consecutive_failures == 0 and decision.status.last_analysis.verdict == Verdict.PASS  # type: ignore[union-attr]
    warnings = [a for a in decision.actions if isinstance(a, EmitEvent) and a.reason == "ObservedSloBreach"]
    assert len(warnings) == 1 and warnings[0].message.startswith("outputShift 3.9 > max 0.25 over 400 compared")
    assert not any(entry.event == "AnalysisFailed" for entry in decision.status.history)


# --- validation ---------------------------------------------------------------------------------------------


def test_output_slos_without_a_comparator_are_refused_naming_the_field_and_the_fix() -> None:
    no_shadow = semantic_problems(make_spec(slo={"outputShift": {"max": 0.3}}))
    assert [(p.path, p.message) for p in no_shadow] == [(
        "spec.slo.outputShift", "judged only by the shadow comparator: declare spec.rollout.shadow (comparison "
        "is on by default), or remove this SLO")]
    disabled = semantic_problems(shadow_spec({"outputAgreement": {"min": 0.9}}, enabled=False))
    assert [p.path for p in disabled] == ["spec.slo.outputAgreement"] and "enabled is false" in disabled[0].message
    assert semantic_problems(shadow_spec({"outputAgreement": {"min": 0.9}, "outputShift": {"max": 0.1}})) == []


def test_compared_outputs_must_be_unique() -> None:
    spec = shadow_spec(outputs=[{"name": "score"}, {"name": "label", "mode": "Argmax"}, {"name": "score"}])
    assert [p.path for p in semantic_problems(spec)] == ["spec.rollout.shadow.compare.outputs[2].name"]


def test_compare_fields_are_refused_with_the_field_named() -> None:
    raw = shadow_spec().model_dump(mode="json", by_alias=True)
    raw["rollout"]["shadow"]["compare"] = {"samplePercent": 0, "outputs": [{"name": "s", "mode": "argmax"}]}
    problems = parse_spec(raw)
    assert isinstance(problems, list)
    fields = {p.path for p in problems}
    assert {"spec.rollout.shadow.compare.samplePercent", "spec.rollout.shadow.compare.outputs[0].mode"} <= fields


OBSERVED = shadow_spec({"errorRate": {"max": 0.01, "enforce": False}, "outputShift": {"max": 0.25, "enforce": False},
                        "outputAgreement": {"min": 0.99, "enforce": False}})
maybe = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@given(error_rate=maybe, shift=maybe, agreement=maybe, compared=maybe, requests=maybe)
def test_observe_only_slos_never_fail_a_check_whatever_they_measure(
    error_rate: float | None, shift: float | None, agreement: float | None, compared: float | None,
    requests: float | None,
) -> None:
    measured = MetricsSnapshot(available=True, canary_requests=requests, compared=compared, values={
        "errorRate": MetricValue(error_rate), "outputShift": MetricValue(shift),
        "outputAgreement": MetricValue(agreement)})
    record = assess(OBSERVED, measured, T0, Stage.SHADOW)
    assert record.verdict != Verdict.FAIL
    assert all(not m.enforced for m in record.metrics)
