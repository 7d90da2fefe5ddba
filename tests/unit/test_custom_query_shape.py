"""Admission refuses custom SLO queries that can only return many series, a range vector or a string."""

from __future__ import annotations

import pytest
from engine_fixtures import make_spec
from modelship.domain.validation import semantic_problems

NS = 'namespace="{{namespace}}"'
PATH = "spec.slo.custom[0].query"


def problems(query: str) -> list[str]:
    spec = make_spec(slo={"custom": [{"name": "c", "max": 1, "query": query}]})
    return [p.message for p in semantic_problems(spec) if p.path == PATH]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f'{{__name__=~".+",{NS}}}', "matches __name__ with a regex"),
        (f'sum({{__name__!="x",{NS}}})', "matches __name__ with a regex or !="),
        (f"count_over_time({{{NS}}}[5m])", "has no metric name"),
        (f"sum({{{NS}}})", "has no metric name"),
        (f"up{{{NS}}}", "can return many series"),
        (f"rate(up{{{NS}}}[{{{{interval}}}}])", "can return many series"),
        (f"sum by (pod) (up{{{NS}}})", "can return many series"),
        (f"sum without (pod) (up{{{NS}}})", "can return many series"),
        (f"topk(3, up{{{NS}}})", "can return many series"),
        (f"count_values(\"v\", up{{{NS}}})", "can return many series"),
        (f"histogram_quantile(0.9, sum by (le, pod) (rate(x_bucket{{{NS}}}[5m])))", "can return many series"),
        (f"sum(up{{{NS}}}) or up{{{NS}}}", "can return many series"),
        (f"up{{{NS}}}[5m]", "returns a range vector"),
        (f"sum(up{{{NS}}})[5m:1m]", "returns a range vector"),
        ('"just text"', "returns a string"),
    ],
)
def test_query_that_cannot_be_one_number_is_refused_with_the_fix(query: str, words: str) -> None:
    found = problems(query)
    assert any(words in text for text in found), found
    assert all("e.g." in text or "aggregate" in text or "string" in text for text in found), found


@pytest.mark.parametrize(
    "query",
    [
        f'avg(model_confidence{{{NS},revision="{{{{revision}}}}"}})',
        f"sum(rate(a{{{NS}}}[{{{{interval}}}}])) / sum(rate(b{{{NS}}}[{{{{interval}}}}]))",
        f"(sum(increase(a{{{NS}}}[5m])) or vector(0)) / (sum(increase(b{{{NS}}}[5m])) + 1)",
        f"histogram_quantile(0.99, sum by (le) (rate(x_bucket{{{NS}}}[{{{{interval}}}}])))",
        f"max_over_time(sum(rate(a{{{NS}}}[1m]))[10m:1m])",
        f'sum({{__name__="a",{NS}}})',
        f"clamp_min(max(a{{{NS}}}), 0) > bool 0.5",
        f"topk(1, a{{{NS}}})",
        f"scalar(sum(a{{{NS}}}))",
        f"absent(a{{{NS}}})",
        f"sum(a{{{NS}}}) and on() max(b{{{NS}}}) > 0",
        "1",
    ],
)
def test_query_aggregated_to_one_value_is_accepted(query: str) -> None:
    assert problems(query) == []


def test_namespace_escape_is_reported_alone_not_buried_in_cost_problems() -> None:
    found = problems('{__name__=~".+",namespace=~".*"}')
    assert len(found) == 1 and "instead of =" in found[0]
