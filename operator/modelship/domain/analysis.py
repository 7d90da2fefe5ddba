"""SLO assessment: turn one metrics snapshot into per-metric verdicts and one overall verdict.

Missing evidence is never a pass: an unreachable provider is Error, an empty result is NoData and a window
with fewer canary requests than `analysis.minRequests` is Inconclusive. A window whose request count is known
and below minRequests is Inconclusive even when a rate or quantile came back empty (0 requests give no error
ratio): too little traffic is not missing metrics, so `onNoData: Fail` does not roll back a quiet canary.

Rules worth knowing:
- The SLOs judged are `slos.judged_slos(spec, stage)`, the same list the metrics adapter measures; with no
  SLO configured at all, `DEFAULT_SLO` (errorRate max 0.01) applies, so a rollout is never judged on nothing.
  The comparator's SLOs (outputAgreement, outputShift) are judged only while it runs, and for them
  `minRequests` counts compared request pairs: fewer is Inconclusive for that SLO.
- An observe-only SLO (`enforce: false`) is measured and shown with its own verdict, but never decides the
  check: a breach of it is an ObservedSloBreach Event, never a failed check.
- NaN and infinite values, whatever their source, are no evidence: they judge as NoData and are recorded as
  missing, so a status always serialises as JSON.
- A ratio bound (`maxRatioToStable`) needs a stable baseline. When stable is missing or 0 the ratio is
  NoData, unless the absolute bound already fails. Error rate is the exception: a healthy stable commonly
  has exactly 0 errors, so its baseline is floored at the catalogue's `baseline_floor` (0.1%); a canary with
  0.05% errors beside a clean stable passes a 1.2x bound, one with 5% errors fails it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.slos import SloBound, finite, judged_slos
from modelship.domain.status import AnalysisRecord, MetricResult, Stage, Verdict


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _result(bound: SloBound, mv: MetricValue | None, verdict: Verdict, message: str) -> MetricResult:
    return MetricResult(
        name=bound.name,
        value=mv.canary if mv else None,
        stable_value=mv.stable if mv else None,
        min=bound.min,
        max=bound.max,
        max_ratio_to_stable=bound.max_ratio_to_stable,
        verdict=verdict,
        message=message,
        enforced=bound.enforce,
        detail=mv.detail if mv else None,
    )


def judge_metric(
    bound: SloBound, mv: MetricValue | None, compared: float | None = None, min_requests: int = 0
) -> MetricResult:
    """Judge one metric: absolute bounds first (they fail on their own), then the ratio to stable.

    A comparator SLO needs `min_requests` compared pairs first; its messages say over how many pairs.
    """
    result = _judge_compared(bound, mv, compared, min_requests) if bound.comparator else _judge_value(bound, mv)
    if not bound.enforce:
        result = result.model_copy(update={"message": f"{result.message} (observe-only)"})
    return result


def _judge_compared(
    bound: SloBound, mv: MetricValue | None, compared: float | None, min_requests: int
) -> MetricResult:
    pairs = finite(compared)
    if pairs is not None and min_requests > 0 and pairs < min_requests:
        return _result(bound, mv, Verdict.INCONCLUSIVE,
                       f"{bound.name}: {round(pairs)} compared requests, fewer than minRequests {min_requests}")
    result = _judge_value(bound, mv)
    if result.verdict in (Verdict.PASS, Verdict.FAIL) and pairs is not None:
        message = f"{result.message} over {round(pairs)} compared requests"  # increase() extrapolates: 156.5
        if result.detail:
            message += f"; {result.detail}"
        result = result.model_copy(update={"message": message})
    return result


def _judge_value(bound: SloBound, mv: MetricValue | None) -> MetricResult:
    name = bound.name
    if mv is None:
        return _result(bound, mv, Verdict.NO_DATA, f"{name}: no value returned")
    raw = mv.canary
    mv = replace(mv, canary=finite(mv.canary), stable=finite(mv.stable))
    if mv.error:
        return _result(bound, mv, Verdict.ERROR, f"{name}: query failed: {mv.error}")
    value = mv.canary
    if value is None:
        seen = "" if raw is None else f" (the value was {raw}, not a number)"
        return _result(bound, mv, Verdict.NO_DATA, f"{name}: no canary data in the window{seen}")
    if bound.max is not None and value > bound.max:
        return _result(bound, mv, Verdict.FAIL, f"{name} {_fmt(value)} > max {_fmt(bound.max)}")
    if bound.min is not None and value < bound.min:
        return _result(bound, mv, Verdict.FAIL, f"{name} {_fmt(value)} < min {_fmt(bound.min)}")
    ratio = bound.max_ratio_to_stable
    if ratio is not None:
        baseline = mv.stable
        if bound.baseline_floor is not None and baseline is not None:
            baseline = max(baseline, bound.baseline_floor)
        if baseline is None or baseline <= 0:
            text = f"{name} {_fmt(value)}: no stable baseline for the ratio bound"
            return _result(bound, mv, Verdict.NO_DATA, text)
        if value / baseline > ratio:
            return _result(
                bound, mv, Verdict.FAIL,
                f"{name} {_fmt(value)} is {value / baseline:.2f}x stable {_fmt(baseline)} > {_fmt(ratio)}x",
            )
    return _result(bound, mv, Verdict.PASS, f"{name} {_fmt(value)} within bounds")


def _overall(
    snapshot: MetricsSnapshot, judged: list[MetricResult], min_requests: int
) -> tuple[Verdict, str]:
    """Only enforced SLOs decide; an observe-only one is reported beside the verdict, never in it."""
    metrics = [m for m in judged if m.enforced]
    verdicts = {m.verdict for m in metrics}
    failed = [m.message for m in metrics if m.verdict == Verdict.FAIL]
    if failed:
        return Verdict.FAIL, "; ".join(failed)
    if not snapshot.available:
        return Verdict.ERROR, f"metrics provider unavailable: {snapshot.error or 'unreachable'}"
    if Verdict.ERROR in verdicts:
        return Verdict.ERROR, "; ".join(m.message for m in metrics if m.verdict == Verdict.ERROR)
    requests = finite(snapshot.canary_requests)
    seen = "unknown" if requests is None else _fmt(requests)
    too_few = f"{seen} canary requests, fewer than minRequests {min_requests}"
    if min_requests > 0 and requests is not None and requests < min_requests:
        # A counted trickle (often 0) leaves rates and quantiles empty: that is too little traffic, not missing data.
        return Verdict.INCONCLUSIVE, too_few
    if Verdict.NO_DATA in verdicts:
        return Verdict.NO_DATA, "; ".join(m.message for m in metrics if m.verdict == Verdict.NO_DATA)
    if Verdict.INCONCLUSIVE in verdicts:  # too few compared pairs for an output SLO
        return Verdict.INCONCLUSIVE, "; ".join(m.message for m in metrics if m.verdict == Verdict.INCONCLUSIVE)
    if min_requests > 0 and requests is None:
        return Verdict.INCONCLUSIVE, too_few
    message = f"{len(metrics)} SLOs met" + (f" over {_fmt(requests)} requests" if requests else "")
    breached = [m.name for m in judged if not m.enforced and m.verdict == Verdict.FAIL]
    if breached:
        message += f" (observe-only breached: {', '.join(breached)})"
    return Verdict.PASS, message


def assess(
    spec: ModelDeploymentSpec, snapshot: MetricsSnapshot, now: datetime, stage: Stage | None = None
) -> AnalysisRecord:
    """Judge every SLO of `stage` on one snapshot; Fail beats everything, Pass needs all evidence present."""
    bounds = judged_slos(spec, stage)
    min_requests = spec.rollout.analysis.min_requests
    if snapshot.available:
        metrics = [judge_metric(b, snapshot.values.get(b.name), snapshot.compared, min_requests) for b in bounds]
    else:
        reason = snapshot.error or "unreachable"
        metrics = [
            _result(b, None, Verdict.ERROR, f"{b.name}: metrics unavailable: {reason}") for b in bounds
        ]
    verdict, message = _overall(snapshot, metrics, min_requests)
    compared = finite(snapshot.compared) if any(b.comparator for b in bounds) else None
    return AnalysisRecord(
        time=now, verdict=verdict, requests=finite(snapshot.canary_requests), metrics=metrics,
        message=f"{verdict}: {message}", compared=compared,
    )


def evidence(record: AnalysisRecord | None) -> str:
    """The metric values and bounds behind a verdict, for Events and history."""
    if record is None:
        return "no analysis recorded"
    parts = []
    for m in record.metrics:
        bounds = [f"{k} {_fmt(v)}" for k, v in (("min", m.min), ("max", m.max)) if v is not None]
        if m.max_ratio_to_stable is not None:
            bounds.append(f"maxRatioToStable {_fmt(m.max_ratio_to_stable)}")
        value = "none" if m.value is None else _fmt(m.value)
        stable = "" if m.stable_value is None else f", stable {_fmt(m.stable_value)}"
        observed = "" if m.enforced else " observe-only"
        detail = f" [{m.detail}]" if m.detail else ""
        parts.append(f"{m.name}={value} ({', '.join(bounds)}{stable}) {m.verdict}{observed}{detail}")
    requests = "" if record.requests is None else f"; requests={_fmt(record.requests)}"
    compared = "" if record.compared is None else f"; compared={_fmt(record.compared)}"
    return f"{record.verdict}: " + "; ".join(parts) + requests + compared
