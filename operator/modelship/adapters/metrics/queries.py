"""Built-in PromQL for Triton's metrics, per revision (pure string building, unit-tested verbatim).

Why these shapes: Triton labels series only with model/version, so canary and stable are separated by the
label Prometheus' Kubernetes discovery copies from the pod (`modelship.dev/revision` ->
`modelship_dev_revision` via labelmap). Every selector carries namespace, model and revision, so one
tenant's series never mix with another's. An empty result means "no series" (NoData), never zero.
"""

from __future__ import annotations

import re

from modelship.domain.promql import escape_label_value
from modelship.domain.slos import ERROR_RATE, LATENCY_P95, LATENCY_P99, OUTPUT_AGREEMENT, OUTPUT_SHIFT, QUEUE_P99

DEFAULT_REVISION_LABEL = "modelship_dev_revision"
SOURCE_SUMMARY = "summary"
SOURCE_AVERAGE = "average"


def selector(namespace: str, model: str, revision: str, revision_label: str = DEFAULT_REVISION_LABEL) -> str:
    """Label matchers scoping a query to one namespace, one Triton model and one revision's pods."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", revision_label):
        raise ValueError(f"revision label {revision_label!r} is not a Prometheus label name")
    return (
        f'namespace="{escape_label_value(namespace)}",model="{escape_label_value(model)}",'
        f'{revision_label}="{escape_label_value(revision)}"'
    )


def _increase(metric: str, sel: str, window: str) -> str:
    return f"sum(increase({metric}{{{sel}}}[{window}]))"


def _failures(sel: str, window: str) -> str:
    # Triton creates the failure counter (labelled by reason) lazily: absent must read as zero failures.
    return f"({_increase('nv_inference_request_failure', sel, window)} or vector(0))"


def requests_query(sel: str, window: str) -> str:
    """Requests (success + failure) in the window.

    Empty only when the revision has no series at all (NoData); a revision without traffic gives 0. The
    left side falls back to `failures * 0` so a revision whose every request failed still counts, and then to
    `count(...) * 0`: a series scraped fewer than twice in the window has no increase() yet, which is a young
    pod's trickle (too few requests, Inconclusive), not missing data.
    """
    success = _increase("nv_inference_request_success", sel, window)
    failure = _increase("nv_inference_request_failure", sel, window)
    young = f"count(nv_inference_request_success{{{sel}}}) * 0"
    return f"({success} or {failure} * 0 or {young}) + {_failures(sel, window)}"


def error_rate_query(sel: str, window: str) -> str:
    """failures / (success + failures); 0/0 (no traffic) is NaN and so NoData, never a pass."""
    return f"{_failures(sel, window)} / ({requests_query(sel, window)})"


def quantile_query(metric: str, sel: str, quantile: str) -> str:
    """Triton summary quantile in ms, worst pod (max) so one slow pod cannot hide behind fast ones.

    `>= 0` drops NaN samples (a summary with no observations in Triton's sliding window reports NaN), so a
    fully idle revision yields an empty result (NoData) rather than NaN, and idle pods do not mask busy ones.
    """
    return f'max({metric}{{{sel},quantile="{quantile}"}} >= 0) / 1000'


def average_query(duration_metric: str, sel: str, window: str) -> str:
    """Mean per request in ms from cumulative counters, the fallback when Triton runs without summaries.

    Divides by successful requests, not nv_inference_count: Triton adds a request's duration once per
    request, while nv_inference_count counts batch items.
    """
    return (
        f"{_increase(duration_metric, sel, window)} / "
        f"{_increase('nv_inference_request_success', sel, window)} / 1000"
    )


def builtin_queries(sel: str, window: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """Per built-in SLO of the catalogue, by name: (source, query) candidates, tried in order until one has data."""
    return {
        ERROR_RATE.name: (("ratio", error_rate_query(sel, window)),),
        LATENCY_P99.name: (
            (SOURCE_SUMMARY, quantile_query("nv_inference_request_summary_us", sel, "0.99")),
            (SOURCE_AVERAGE, average_query("nv_inference_request_duration_us", sel, window)),
        ),
        LATENCY_P95.name: (
            (SOURCE_SUMMARY, quantile_query("nv_inference_request_summary_us", sel, "0.95")),
            (SOURCE_AVERAGE, average_query("nv_inference_request_duration_us", sel, window)),
        ),
        QUEUE_P99.name: (
            (SOURCE_SUMMARY, quantile_query("nv_inference_queue_summary_us", sel, "0.99")),
            (SOURCE_AVERAGE, average_query("nv_inference_queue_duration_us", sel, window)),
        ),
    }




# --- the shadow comparator's judgement ----------------------------------------------------------------------

COMPARATOR_PREFIX = "modelship_comparator"
DEPLOYMENT_LABEL = "modelship_dev_deployment"
ROLE_LABEL = "modelship_dev_role"
COMPARED_REVISION_LABEL = "modelship_dev_compared_revision"


def comparator_selector(namespace: str, deployment: str, canary_revision: str) -> str:
    """The comparator pod of one ModelDeployment, comparing this canary (its pod labels, via labelmap): a
    comparator left from an earlier canary never counts for this one."""
    return (
        f'namespace="{escape_label_value(namespace)}",{DEPLOYMENT_LABEL}="{escape_label_value(deployment)}",'
        f'{ROLE_LABEL}="comparator",{COMPARED_REVISION_LABEL}="{escape_label_value(canary_revision)}"'
    )


def compared_query(sel: str, window: str) -> str:
    """Request pairs judged in the window (what minRequests counts for the output SLOs); a young comparator
    (one scrape, no increase yet) counts 0, not NoData."""
    counter = f"{COMPARATOR_PREFIX}_compared_total"
    return f"({_increase(counter, sel, window)} or count({counter}{{{sel}}}) * 0)"


def comparator_queries(sel: str, window: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """Per comparator SLO of the catalogue: agreed / compared pairs, and the worst output's shift (the
    comparator computes it over its own window, the analysis interval)."""
    agreed = _increase(f"{COMPARATOR_PREFIX}_agreed_total", sel, window)
    compared = _increase(f"{COMPARATOR_PREFIX}_compared_total", sel, window)
    return {
        OUTPUT_AGREEMENT.name: (("pairs", f"{agreed} / {compared}"),),
        OUTPUT_SHIFT.name: (("psi", f"max({COMPARATOR_PREFIX}_output_shift{{{sel}}})"),),
    }


def shift_detail_queries(sel: str) -> tuple[str, str]:
    """Per output: its shift, and each side's p50 (for the detail a human reads beside the verdict)."""
    return (
        f"max by (output) ({COMPARATOR_PREFIX}_output_shift{{{sel}}})",
        f'max by (output, side) ({COMPARATOR_PREFIX}_output_summary{{{sel},stat="p50"}})',
    )
