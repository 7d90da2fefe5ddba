"""Limits that keep every accepted spec workable: durations that fit a clock, names that fit child objects.

A value the API server would store but the operator could not act on (an overflowing duration, a name whose
`<name>-canary` Service is refused) must be refused up front, naming the field and the limit.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelship.adapters.objects import deployment_name, role_service_name
from modelship.domain.actions import Role
from modelship.domain.api import (
    MAX_ENV_TEXT,
    MAX_INTERVAL,
    MAX_NAME_LENGTH,
    MAX_SAMPLE_VALUES,
    MAX_SPEC_BYTES,
    MAX_TENSOR_TEXT,
    PRINTABLE_ASCII,
    ModelDeploymentSpec,
)
from modelship.domain.crd import resource_schema
from modelship.domain.durations import MAX_DURATION, parse_duration
from modelship.domain.revision import HASH_LENGTH
from modelship.domain.validation import Problem, name_problems, parse_spec, semantic_problems

from tests.unit.test_reconciler import SPEC, FakeCluster, FakeRouters, body, reconciler

BASE: dict[str, Any] = {
    "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://models/triton"},
    "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "rollout": {
        "shadow": {"duration": "10m"},
        "canary": {"steps": [{"weight": 5, "duration": "5m"}]},
        "progressDeadline": "15m",
        "scaleDownDelay": "30s",
        "analysis": {"interval": "1m"},
    },
}
DURATION_FIELDS = {
    "spec.rollout.shadow.duration": ("shadow", "duration"),
    "spec.rollout.canary.steps[0].duration": ("canary", "steps", 0, "duration"),
    "spec.rollout.progressDeadline": ("progressDeadline",),
    "spec.rollout.scaleDownDelay": ("scaleDownDelay",),
    "spec.rollout.analysis.interval": ("analysis", "interval"),
}


def with_duration(where: tuple[str | int, ...], text: str) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node: Any = raw["rollout"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = text
    return raw


def problems(raw: dict[str, Any]) -> list[Problem]:
    parsed = parse_spec(raw)
    assert isinstance(parsed, list), "the spec was accepted"
    return parsed


# --- durations ---------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**40), st.sampled_from(["ms", "s", "m", "h"]), st.integers(1, 3))
def test_parse_duration_returns_a_bounded_delta_or_names_the_limit(number: int, unit: str, parts: int) -> None:
    """Any digits the old schema let through either parse within the limit or fail with ValueError naming it."""
    text = f"{number}{unit}" * parts
    try:
        parsed = parse_duration(text)
    except ValueError as exc:
        assert "720h (30 days)" in str(exc)
    else:
        assert timedelta(0) <= parsed <= MAX_DURATION


@pytest.mark.parametrize("path", DURATION_FIELDS)
@pytest.mark.parametrize(
    "text, fix",
    [("99999999999h", "at most 720h (30 days)"), ("721h", "at most 720h (30 days)"), ("9" * 400 + "ms", "at most 16")],
    ids=["overflow", "past-limit", "400-digits"],
)
def test_an_overlong_duration_is_invalid_naming_field_and_limit(path: str, text: str, fix: str) -> None:
    if path.endswith("interval") and "720h" in fix:
        fix = "at most 1h"
    found = problems(with_duration(DURATION_FIELDS[path], text))
    assert any(p.path == path and fix in p.message for p in found), found


def test_the_longest_duration_is_accepted_where_it_fits() -> None:
    raw = with_duration(DURATION_FIELDS["spec.rollout.progressDeadline"], "720h")
    assert isinstance(parse_spec(raw), ModelDeploymentSpec)


def test_the_analysis_interval_is_at_most_an_hour() -> None:
    """The interval is also the PromQL window and the check cadence: longer would leave a breach live for hours."""
    found = problems(with_duration(DURATION_FIELDS["spec.rollout.analysis.interval"], "61m"))
    assert any(p.path == "spec.rollout.analysis.interval" and "1h" in p.message for p in found), found
    assert timedelta(hours=1) == MAX_INTERVAL


def _duration_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if any("duration(self)" in r["rule"] for r in node.get("x-kubernetes-validations", [])) else []
    children = [*node.get("properties", {}).values(), *([node["items"]] if "items" in node else [])]
    for child in children:
        found += _duration_nodes(child)
    return found


def test_every_duration_in_the_crd_is_bounded_before_cel_parses_it() -> None:
    """CEL's duration() fails on values past ~292 years: a length and digit bound keeps every value it sees
    small, and a rule names the limit."""
    nodes = _duration_nodes(resource_schema()["properties"]["spec"])
    assert len(nodes) == 6  # shadow, steps, progressDeadline, scaleDownDelay, postPromotion.window, interval
    for node in nodes:
        assert node["maxLength"] <= 16
        assert any("720h (30 days)" in r["message"] or "1h" in r["message"] for r in node["x-kubernetes-validations"])


# --- names -------------------------------------------------------------------------------------------------


def test_the_longest_name_fits_every_child_object() -> None:
    """Deployment `<name>-<hash>`, Services `<name>-stable|canary` and label values all stay within 63."""
    name = "a" * MAX_NAME_LENGTH
    assert len(deployment_name(name, "f" * HASH_LENGTH)) <= 63
    assert all(len(role_service_name(name, role)) <= 63 for role in Role)


@pytest.mark.parametrize(
    "name, fix",
    [
        ("a" * 53, "at most 52 characters"),
        ("fraud.scorer", "lowercase letters, digits and '-'"),
        ("7fraud", "start with a letter"),
        ("Fraud", "lowercase letters, digits and '-'"),
        ("fraud-", "end with a letter or digit"),
    ],
    ids=["too-long", "dot", "leading-digit", "uppercase", "trailing-dash"],
)
def test_a_name_child_objects_cannot_carry_is_refused(name: str, fix: str) -> None:
    found = name_problems(name)
    assert found and all(p.path == "metadata.name" for p in found)
    assert any(fix in p.message for p in found), found
    assert isinstance(parse_spec(BASE, name=name), list)


@pytest.mark.parametrize("name", ["a", "fraud-scorer", "a" * 52, "model-7b"])
def test_a_name_that_fits_is_accepted(name: str) -> None:
    assert name_problems(name) == []
    assert isinstance(parse_spec(BASE, name=name), ModelDeploymentSpec)


def test_the_crd_refuses_such_names_at_admission() -> None:
    rules = resource_schema()["x-kubernetes-validations"]
    assert any("self.metadata.name.size() <= 52" in r["rule"] for r in rules)
    assert all("metadata.name" in r["message"] for r in rules)


async def test_the_operator_marks_an_object_with_such_a_name_invalid_and_applies_nothing() -> None:
    """An object admitted before the CRD had the name rules: Invalid, naming metadata.name, no child applied."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    named = body(SPEC)
    named["metadata"]["name"] = "fraud.scorer"
    result = await rec.reconcile(named)
    assert result.status["phase"] == "Invalid"
    assert "metadata.name" in result.status["message"] and "only lowercase letters" in result.status["message"]
    assert cluster.calls == [] and routers.log == []


# --- size ----------------------------------------------------------------------------------------------------

FREE_TEXT_BYTES = 6
"""Worst JSON bytes of one character of free text: a control character, '<', '>' or '&' is `\\u003c` in Go."""


class SizeBound:
    """Upper bound of a spec's JSON size from the CRD schema the API server enforces; refuses unbounded fields."""

    def __init__(self) -> None:
        self.unbounded: list[str] = []

    def string(self, node: dict[str, Any], path: str) -> int:
        if "enum" in node:
            return max(len(json.dumps(value)) for value in node["enum"])
        if "maxLength" not in node:
            self.unbounded.append(path)
            return 0
        safe = "pattern" in node and node["pattern"] != PRINTABLE_ASCII
        return 2 + node["maxLength"] * (1 if safe else FREE_TEXT_BYTES)

    def of(self, node: dict[str, Any], path: str = "spec") -> int:
        kind = node.get("type")
        if path.endswith(".data"):  # tensor values: bounded all together by the samples rule, added once
            return 2
        if path.endswith("env[].value"):  # bounded all together by the env rule, added once
            return 2
        if kind == "string":
            return self.string(node, path)
        if kind in ("integer", "number"):
            return 24
        if kind == "boolean":
            return 5
        if kind == "array":
            if "maxItems" not in node:
                self.unbounded.append(path)
                return 0
            return 2 + node["maxItems"] * (self.of(node["items"], f"{path}[]") + 1)
        if "properties" in node:
            fields = node["properties"].items()
            return 2 + sum(len(name) + 4 + self.of(child, f"{path}.{name}") for name, child in fields)
        if "additionalProperties" in node:
            if "maxProperties" not in node:
                self.unbounded.append(path)
                return 0
            key = 2 + 317  # label keys, checked by a CEL rule
            return 2 + node["maxProperties"] * (key + 2 + self.of(node["additionalProperties"], f"{path}{{}}"))
        if kind == "object":
            return 2
        self.unbounded.append(path)
        return 0


def maximal_spec_bytes() -> int:
    bound = SizeBound()
    structure = bound.of(resource_schema()["properties"]["spec"])
    assert not bound.unbounded, f"fields without a bound: {bound.unbounded}"
    tensor_value = max(24, 2 + MAX_TENSOR_TEXT * FREE_TEXT_BYTES) + 1
    return structure + MAX_SAMPLE_VALUES * tensor_value + MAX_ENV_TEXT * FREE_TEXT_BYTES


def test_the_largest_spec_the_api_server_admits_is_bounded() -> None:
    """Every string, list and map of the spec is bounded; the largest spec the operator accepts is 509 KiB of
    JSON (every free-text character at its worst 6 bytes, all three routers counted), under MAX_SPEC_BYTES.
    The API server enforces every bound but the total of sample tensor values, which CEL cannot see (the
    values are untyped); there each tensor list is bounded on its own and etcd's object limit applies."""
    size = maximal_spec_bytes()
    assert size <= MAX_SPEC_BYTES, f"the largest spec is {size} bytes"
    assert size // 1024 == 509, f"the largest spec is now {size // 1024} KiB: update the figure above"


@pytest.mark.parametrize(
    "changes, path, fix",
    [
        ({"serving": {"env": [{"name": f"V{i}", "value": "x" * 4096} for i in range(2)]}}, "spec.serving.env",
         "at most 4096"),
        (
            {"validation": {"samples": [
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 600], "data": [0.5] * 600}]}
                for _ in range(2)
            ]}},
            "spec.validation.samples",
            "at most 1024",
        ),
    ],
    ids=["env-text-total", "sample-values-total"],
)
def test_totals_across_lists_are_checked_by_the_operator_too(changes: dict[str, Any], path: str, fix: str) -> None:
    spec = ModelDeploymentSpec.model_validate({**BASE, **changes})
    found = semantic_problems(spec)
    assert any(p.path == path and fix in p.message for p in found), found
