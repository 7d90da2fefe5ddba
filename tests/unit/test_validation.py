"""Bad specs are refused with the field path and the fix; the PromQL guard confines queries."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.promql import (
    escape_label_value,
    namespace_guard,
    prometheus_duration,
    query_problems,
    template_query,
)
from modelship.domain.validation import Problem, check_manifest, parse_spec, semantic_problems

BASE: dict[str, Any] = {
    "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://models/triton"},
    "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "rollout": {"canary": {"steps": [{"weight": 5, "duration": "5m"}, {"weight": 50, "duration": "10m"}]}},
}
NS = 'namespace="{{namespace}}"'


def spec_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. {'rollout.analysis.interval': '10m'}; None deletes."""
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return raw


def problems_of(raw: dict[str, Any]) -> list[Problem]:
    return check_manifest({"spec": raw})


def sample(shape: list[int], data: list[Any], datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}], **extra}


STEPS = "rollout__canary__steps"
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("no model", spec_with(model=None), "spec.model", "required"),
    ("version unquoted", spec_with(model__version=7), "spec.model.version", 'quote it in YAML, e.g. "7"'),
    ("version zero", spec_with(model__version="0"), "spec.model.version", "does not match"),
    ("typo field", spec_with(rollout__canary__stepz=[]), "spec.rollout.canary.stepz", "did you mean steps"),
    (
        "weight too high",
        spec_with(**{STEPS: [{"weight": 200, "duration": "5m"}]}),
        "spec.rollout.canary.steps[0].weight",
        "at most 100",
    ),
    (
        "weight not int",
        spec_with(**{STEPS: [{"weight": 5, "duration": "5m"}, {"weight": "x", "duration": "5m"}]}),
        "spec.rollout.canary.steps[1].weight",
        "must be an integer",
    ),
    (
        "bad duration",
        spec_with(rollout__progressDeadline="soon"),
        "spec.rollout.progressDeadline",
        "not a duration",
    ),
    (
        "zero duration",
        spec_with(rollout__shadow={"duration": "0s"}),
        "spec.rollout.shadow.duration",
        "longer than zero",
    ),
    (
        "bad enum",
        spec_with(rollout__analysis={"onNoData": "Maybe"}),
        "spec.rollout.analysis.onNoData",
        "'Hold' or 'Fail'",
    ),
    ("two routers", spec_with(traffic={"istio": {}, "none": {}}), "spec.traffic", "exactly one"),
    (
        "decreasing weights",
        spec_with(**{STEPS: [{"weight": 50, "duration": "5m"}, {"weight": 25, "duration": "5m"}]}),
        "spec.rollout.canary.steps[1].weight",
        "strictly increase",
    ),
    (
        "equal weights",
        spec_with(**{STEPS: [{"weight": 5, "duration": "5m"}, {"weight": 5, "duration": "5m"}]}),
        "spec.rollout.canary.steps[1].weight",
        "strictly increase",
    ),
    (
        "approval with duration",
        spec_with(**{STEPS: [{"weight": 5, "duration": "5m"}, {"approval": {}, "duration": "5m"}]}),
        "spec.rollout.canary.steps[1].duration",
        "approval step takes no duration",
    ),
    (
        "weight without duration",
        spec_with(**{STEPS: [{"weight": 5}]}),
        "spec.rollout.canary.steps[0].duration",
        "needs a duration",
    ),
    (
        "weight and approval",
        spec_with(**{STEPS: [{"weight": 5, "duration": "5m", "approval": {}}]}),
        "spec.rollout.canary.steps[0]",
        "exactly one of weight",
    ),
    (
        "empty step",
        spec_with(**{STEPS: [{"weight": 5, "duration": "5m"}, {}]}),
        "spec.rollout.canary.steps[1]",
        "exactly one of weight",
    ),
    (
        "shadow with none router",
        spec_with(traffic={"none": {}}, rollout__shadow={"duration": "10m"}),
        "spec.rollout.shadow",
        "cannot mirror",
    ),
    (
        "shadow shorter than interval",
        spec_with(rollout__shadow={"duration": "30s"}),
        "spec.rollout.shadow.duration",
        "no SLO check could run",
    ),
    (
        "step shorter than interval",
        spec_with(rollout__analysis={"interval": "10m"}, rollout__progressDeadline="1h"),
        "spec.rollout.canary.steps[0].duration",
        "no SLO check could run",
    ),
    (
        "deadline too short",
        spec_with(rollout__analysis={"interval": "2m", "failureLimit": 10}),
        "spec.rollout.progressDeadline",
        "at least 20m",
    ),
    (
        "ratio bound empty",
        spec_with(slo={"latencyP99Ms": {}}),
        "spec.slo.latencyP99Ms",
        "set max, maxRatioToStable",
    ),
    ("error rate above 1", spec_with(slo={"errorRate": {"max": 5}}), "spec.slo.errorRate.max", "at most 1"),
    (
        "custom min above max",
        spec_with(slo={"custom": [{"name": "c", "query": f"up{{{NS}}}", "min": 2, "max": 1}]}),
        "spec.slo.custom[0].min",
        "exceeds max",
    ),
    (
        "custom without bounds",
        spec_with(slo={"custom": [{"name": "c", "query": f"up{{{NS}}}"}]}),
        "spec.slo.custom[0]",
        "min, max or both",
    ),
    (
        "custom names twice",
        spec_with(slo={"custom": [{"name": "c", "query": f"up{{{NS}}}", "min": 1}] * 2}),
        "spec.slo.custom[1].name",
        "unique",
    ),
    (
        "custom bad name",
        spec_with(slo={"custom": [{"name": "Bad Name", "query": f"up{{{NS}}}", "min": 1}]}),
        "spec.slo.custom[0].name",
        "pattern",
    ),
    (
        "query other namespace",
        spec_with(
            slo={
                "custom": [
                    {"name": "a", "query": f"up{{{NS}}}", "min": 1},
                    {"name": "c", "query": 'up{namespace="prod"}', "min": 1},
                ]
            }
        ),
        "spec.slo.custom[1].query",
        'selects namespace "prod"',
    ),
    (
        "query regex namespace",
        spec_with(slo={"custom": [{"name": "c", "query": 'up{namespace=~"{{namespace}}"}', "min": 1}]}),
        "spec.slo.custom[0].query",
        "=~ instead of =",
    ),
    (
        "query bare metric",
        spec_with(slo={"custom": [{"name": "c", "query": f"up{{{NS}}} / up", "min": 1}]}),
        "spec.slo.custom[0].query",
        "selector up{} has no namespace matcher",
    ),
    (
        "query unknown variable",
        spec_with(slo={"custom": [{"name": "c", "query": f'up{{{NS},job="{{{{job}}}}"}}', "min": 1}]}),
        "spec.slo.custom[0].query",
        "unknown template variable(s) {{job}}",
    ),
    (
        "query invalid",
        spec_with(slo={"custom": [{"name": "c", "query": f"sum(up{{{NS}}}", "min": 1}]}),
        "spec.slo.custom[0].query",
        "not valid PromQL",
    ),
    (
        "sample data size",
        spec_with(validation={"samples": [sample([1, 4], [0.1, 0.2, 0.3])]}),
        "spec.validation.samples[0].inputs[0].data",
        "holds 4",
    ),
    (
        "sample bool data",
        spec_with(validation={"samples": [sample([2], [1, 0], "BOOL")]}),
        "spec.validation.samples[0].inputs[0].data",
        "true/false",
    ),
    (
        "sample int data",
        spec_with(validation={"samples": [sample([2], [1.5, 2], "INT32")]}),
        "spec.validation.samples[0].inputs[0].data",
        "whole numbers",
    ),
    (
        "sample object value",
        spec_with(validation={"samples": [sample([1], [{"a": 1}])]}),
        "spec.validation.samples[0].inputs[0].data[0]",
        "must be a number or a string or a boolean",
    ),
    (
        "sample negative shape",
        spec_with(
            validation={"samples": [sample([1], [0.1], expect={"outputs": [{"name": "score", "shape": [-1, 1]}]})]}
        ),
        "spec.validation.samples[0].expect.outputs[0].shape",
        "negative dimensions",
    ),
    (
        "sample bad datatype",
        spec_with(validation={"samples": [sample([1], [0.1], "FLOAT")]}),
        "spec.validation.samples[0].inputs[0].datatype",
        "use one of 'BOOL'",
    ),
    (
        "toleration exists with value",
        spec_with(serving={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}),
        "spec.serving.tolerations[0].value",
        "takes no value",
    ),
    (
        "toleration seconds without NoExecute",
        spec_with(serving={"tolerations": [{"key": "gpu", "tolerationSeconds": 30}]}),
        "spec.serving.tolerations[0].tolerationSeconds",
        "NoExecute",
    ),
    (
        "env twice",
        spec_with(serving={"env": [{"name": "A"}, {"name": "A"}]}),
        "spec.serving.env[1].name",
        "twice",
    ),
    (
        "args override repository",
        spec_with(serving={"args": ["--model-repository=/x"]}),
        "spec.serving.args[0]",
        "set by Modelship",
    ),
    ("replicas zero", spec_with(serving={"replicas": 0}), "spec.serving.replicas", "at least 1"),
    ("serving not object", spec_with(serving="big"), "spec.serving", "must be an object"),
    (
        "too many steps",
        spec_with(**{STEPS: [{"weight": i + 1, "duration": "5m"} for i in range(21)]}),
        "spec.rollout.canary.steps",
        "use at most 20",
    ),
    (
        "empty parentRefs",
        spec_with(traffic={"gatewayAPI": {"parentRefs": []}}),
        "spec.traffic.gatewayAPI.parentRefs",
        "use at least 1",
    ),
    (
        "bad hostname",
        spec_with(traffic={"gatewayAPI": {"parentRefs": [{"name": "gw"}], "hostnames": ["A B"]}}),
        "spec.traffic.gatewayAPI.hostnames[0]",
        "does not match",
    ),
]


@pytest.mark.parametrize(("raw", "path", "fix"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_names_field_and_fix(raw: dict[str, Any], path: str, fix: str) -> None:
    problems = problems_of(raw)
    texts = [str(p) for p in problems]
    assert any(p.path == path and fix in p.message for p in problems), texts
    assert all(str(p).startswith("spec") for p in problems)


def test_good_base_has_no_problems() -> None:
    assert problems_of(BASE) == []


def test_parse_spec_never_raises_on_junk() -> None:
    junks: list[dict[str, Any]] = [
        {"model": None},
        {"model": []},
        {"rollout": {"canary": {"steps": 5}}},
        {"slo": 3},
    ]
    for junk in junks:
        assert isinstance(parse_spec(junk), list)
    assert parse_spec("nonsense") == [Problem("spec", "must be an object, not str")]  # type: ignore[arg-type]


def test_semantic_problems_accepts_typed_spec() -> None:
    spec = parse_spec(BASE)
    assert isinstance(spec, ModelDeploymentSpec)
    assert semantic_problems(spec) == []


# --- templating --------------------------------------------------------------------------------------------


def test_template_escapes_values() -> None:
    q = template_query(
        'up{namespace="{{namespace}}",x="{{name}}"}[{{interval}}]',
        {"namespace": "ml", "name": 'a"b\\c', "interval": "60s"},
    )
    assert q == 'up{namespace="ml",x="a\\"b\\\\c"}[60s]'


@pytest.mark.parametrize("bad", [{"namespace": "ml"}, {"namespace": "ml", "interval": "1 minute"}])
def test_template_refuses_missing_or_bad_values(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        template_query('rate(up{namespace="{{namespace}}"}[{{interval}}])', bad)


def test_template_refuses_unknown_variables() -> None:
    with pytest.raises(ValueError, match="unknown template variables"):
        template_query('up{namespace="{{ns}}"}', {"ns": "x"})


def test_prometheus_duration() -> None:
    assert prometheus_duration(60) == "60s" and prometheus_duration(1.5) == "1500ms"


# --- the namespace guard, property-based --------------------------------------------------------------------

LABEL = st.sampled_from(["job", "revision", "model", "pod", "le", "version", "instance"])
METRIC = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda m: (
        m
        not in {
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
            "offset",
            "bool",
            "and",
            "or",
            "unless",
            "atan2",
            "inf",
            "nan",
            "start",
            "end",
            "__name__",
        }
    )
)
VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
OP = st.sampled_from(["=", "!=", "=~", "!~"])


@st.composite
def matcher(draw: st.DrawFn) -> str:
    op = draw(OP)
    value = draw(VALUE) if op in ("=", "!=") else draw(st.sampled_from([".*", "a|b", "v[0-9]+", ""]))
    return f'{draw(LABEL)}{op}"{escape_label_value(value)}"'


@st.composite
def allowed_selector(draw: st.DrawFn) -> str:
    extra = draw(st.lists(matcher(), max_size=3))
    parts = [*extra]
    parts.insert(draw(st.integers(0, len(extra))), NS)
    return f"{draw(METRIC)}{{{','.join(parts)}}}"


@st.composite
def query(draw: st.DrawFn, selector: st.SearchStrategy[str]) -> str:
    sel = draw(selector)
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return sel
    if shape == 1:
        return f"rate({sel}[{{{{interval}}}}])"
    if shape == 2:
        return f"sum by (revision) (rate({sel}[5m] offset 1m))"
    if shape == 3:
        return f"histogram_quantile(0.99, sum by (le) (rate({sel}[{{{{interval}}}}])))"
    if shape == 4:
        return f"avg_over_time({sel}[10m:1m])"
    if shape == 5:
        return f"{sel} / on(pod) group_left {draw(selector)}"
    return f"({sel} > bool 0.5) and {draw(selector)}"


@settings(max_examples=300, deadline=None)
@given(query(allowed_selector()))
def test_queries_from_allowed_selectors_pass(q: str) -> None:
    assert query_problems(q) == [], q


FORBIDDEN = st.sampled_from(
    [
        'namespace=~"{{namespace}}"',
        'namespace=~".*"',
        'namespace!="{{namespace}}"',
        'namespace!~"kube-.*"',
        'namespace="kube-system"',
        'namespace="{{namespace}}-prod"',
        'namespace="{{name}}"',
        'namespace=""',
        '"namespace"="other"',
        'namespace="{{namespace}}"',
        'namespace="{{namespace}}" or job="x"',
    ]
)


@st.composite
def injected(draw: st.DrawFn) -> str:
    """An allowed query with one selector given one more namespace matcher, or replaced by one without."""
    selector = draw(allowed_selector())
    how = draw(st.integers(0, 2))
    if how == 0:  # add another namespace matcher (even a duplicate is refused: exactly one)
        return selector[:-1] + "," + draw(FORBIDDEN) + "}"
    if how == 1:  # a selector with no namespace matcher at all
        return f"{draw(METRIC)}{{{','.join(draw(st.lists(matcher(), max_size=2)))}}}"
    return draw(METRIC)  # bare metric name


@settings(max_examples=300, deadline=None)
@given(query(allowed_selector()), injected(), st.sampled_from(["+", "/", "and", "or", "unless"]))
def test_any_other_namespace_access_is_caught(good: str, bad: str, op: str) -> None:
    for q in (f"{good} {op} {bad}", f"{bad} {op} {good}", f"sum(rate({bad}[5m]))"):
        assert query_problems(q), q


@given(VALUE)
def test_guard_of_rendered_query_uses_real_namespace(ns: str) -> None:
    rendered = template_query(f"up{{{NS}}}", {"namespace": ns})
    assert namespace_guard(rendered, ns) == []
    assert namespace_guard(rendered, ns + "x")
