"""The fleet bench's pure parts: its watch bookkeeping, its stand-in Prometheus answers, its objects."""

from __future__ import annotations

from typing import Any

import pytest
from modelship.adapters.metrics.queries import builtin_queries, error_rate_query, requests_query, selector
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.slos import ERROR_RATE, LATENCY_P95, LATENCY_P99, QUEUE_P99

from bench.fleet import KEYS, parse
from bench.fleet_objects import node_manifests
from bench.fleet_watch import FleetBook
from bench.standins import answer


def event(name: str, stage: str, step: int | None, started: str | None = None, *, phase: str = "Progressing",
          generation: int = 2, stable: str = "1") -> dict[str, Any]:
    status = {"observedGeneration": generation, "phase": phase, "stage": stage, "step": step,
              "stepStartedAt": started, "stableRevision": {"version": stable}}
    return {"metadata": {"name": name, "generation": generation}, "status": status}


def test_step_lateness_is_arrival_of_the_next_step_minus_step_start_plus_duration() -> None:
    """Given a rollout seen step by step, when steps advance, then lateness = arrival - (stepStartedAt + D)
    for each timed step, and each (stage, step) change is one transition."""
    book = FleetBook(step_seconds=30.0)
    book.observe(event("a", "Stable", None, phase="Healthy", generation=1), 0.0)
    book.start_recording()
    t0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    book.observe(event("a", "Validating", None), t0 + 1)
    book.observe(event("a", "Canary", 0, "2027-01-15T08:00:02Z"), t0 + 2.1)
    book.observe(event("a", "Canary", 0, "2027-01-15T08:00:02Z"), t0 + 10)  # a check: no transition
    book.observe(event("a", "Canary", 1, "2027-01-15T08:00:33.500000Z"), t0 + 33.6)
    book.observe(event("a", "Stable", None, phase="Healthy", stable="2"), t0 + 64.0)  # promoted at once
    assert book.transitions == 4
    assert sorted(round(x, 3) for x in book.lateness()) == [0.5, 1.6]
    assert book.count(lambda s: s.healthy("2")) == 1 and book.count(lambda s: s.healthy("1")) == 0
    # step 0 was decided at 33.5 (the next step's start), seen at 33.6; the promotion says no decision time
    deciding, showing = book.lateness_split()
    assert [round(x, 3) for x in deciding] == [1.5] and [round(x, 3) for x in showing] == [0.1]


def test_an_object_not_yet_observed_at_its_generation_is_not_healthy() -> None:
    book = FleetBook(step_seconds=30.0)
    stale = event("a", "Stable", None, phase="Healthy", generation=1)
    stale["metadata"]["generation"] = 2
    book.observe(stale, 0.0)
    assert book.count(lambda s: s.healthy()) == 0
    book.observe(event("a", "Stable", None, phase="Healthy", generation=2), 1.0, deleted=True)
    assert book.states == {}


def test_the_prometheus_stand_in_passes_every_builtin_check() -> None:
    """The stand-in must keep up with queries.py: requests over minRequests, no errors, latencies in bounds."""
    sel = selector("bench-x", "bench_model_1", "abc123")
    assert answer(requests_query(sel, "10s"), 1000.0) == 1000.0
    assert answer(error_rate_query(sel, "10s"), 1000.0) == 0.0
    table = builtin_queries(sel, "10s")
    assert table[ERROR_RATE.name][0][1] == error_rate_query(sel, "10s")
    for slo in (LATENCY_P99, LATENCY_P95, QUEUE_P99):
        assert {answer(query, 1000.0) for _, query in table[slo.name]} == {5.0}


def test_bench_objects_are_valid_specs_on_the_bench_nodes_only() -> None:
    from bench.fleet_objects import NODE_LABEL, manifest  # noqa: PLC0415

    body = manifest("m00001", "bench-x", 1, "fleet-x", 30.0, 10.0)
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    assert spec.serving.node_selector == {NODE_LABEL: "fleet-x"}
    assert [(v.name, v.value) for v in spec.serving.env] == [("PODRUNNER_MODE", "ip-only")]
    nodes = node_manifests("fleet-x", 10_050)
    assert [n["spec"]["podCIDR"] for n in nodes] == ["10.77.64.0/20", "10.77.80.0/20", "10.77.96.0/20"]
    assert all(n["spec"]["taints"][0]["key"] == NODE_LABEL for n in nodes)
    assert sum(int(n["status"]["capacity"]["pods"]) for n in nodes) >= 10_050


def test_bench_options_refuse_what_cannot_run() -> None:
    assert parse(["--quick"]).objects == 100 and len(parse(["--rolling-fraction", "0.1"]).rolling) == 100
    assert parse(["--settled-only"]).rolling == []
    with pytest.raises(SystemExit):
        parse(["--rolling-fraction", "0"])
    with pytest.raises(SystemExit):
        parse(["--step", "5"])
    assert "leader_election" in KEYS and len(KEYS) == 12
