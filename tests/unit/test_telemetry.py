"""Operator telemetry at fleet scale: exact by-phase counts, a bounded number of per-object series (rollouts in
flight first), O(1) work per observation, and the control-loop gauges the work queue reports."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as strategy
from modelship.adapters.series_cap import SeriesCap
from modelship.adapters.telemetry import MID_ROLLOUT, PHASES, Telemetry
from modelship.domain.status import AnalysisRecord, MetricResult, Verdict

NAMES = [f"m{index}" for index in range(6)]
CHECK = AnalysisRecord(
    time=datetime(2026, 11, 23, 12, 0, tzinfo=UTC), verdict=Verdict.PASS,
    metrics=[MetricResult(name="errorRate", value=0.001, max=0.01, verdict=Verdict.PASS),
             MetricResult(name="latencyP99Ms", value=80.0, max=250.0, verdict=Verdict.PASS)],
)  # fmt: skip


def sample(telemetry: Telemetry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return telemetry.registry.get_sample_value(name, labels or {})


def per_object_series(telemetry: Telemetry) -> dict[tuple[str, str], set[str]]:
    """Every sample that names an object, grouped by (namespace, name): the metric families it appears in."""
    found: dict[tuple[str, str], set[str]] = {}
    for family in telemetry.registry.collect():
        for item in family.samples:
            if "name" in item.labels:
                found.setdefault((item.labels["namespace"], item.labels["name"]), set()).add(family.name)
    return found


def shown_phases(telemetry: Telemetry) -> dict[tuple[str, str], list[str]]:
    phases: dict[tuple[str, str], list[str]] = {}
    for family in telemetry.registry.collect():
        if family.name == "modelship_deployment_phase":
            for item in family.samples:
                assert item.value == 1, "a phase series is 1 or absent"
                phases.setdefault((item.labels["namespace"], item.labels["name"]), []).append(item.labels["phase"])
    return phases


operations = strategy.lists(
    strategy.one_of(
        strategy.tuples(strategy.just("observe"), strategy.sampled_from(NAMES), strategy.sampled_from(PHASES)),
        strategy.tuples(strategy.just("forget"), strategy.sampled_from(NAMES), strategy.just("")),
        strategy.tuples(strategy.just("decide"), strategy.sampled_from(NAMES), strategy.just("")),
        strategy.tuples(strategy.just("error"), strategy.sampled_from(NAMES), strategy.just("")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations=operations, cap=strategy.integers(min_value=0, max_value=4))
def test_counts_are_exact_and_series_stay_within_the_cap(operations: list[tuple[str, str, str]], cap: int) -> None:
    """Given any sequence of observations, decisions, errors and deletions, when the registry is read after each,
    then the by-phase counts match the latest phase of every live object, at most `cap` objects have series,
    each shown object has exactly its latest phase, and a rollout in flight is hidden only while rollouts in
    flight fill every slot."""
    telemetry = Telemetry(max_objects=cap)
    latest: dict[str, str] = {}
    for verb, name, phase in operations:
        if verb == "observe":
            telemetry.observe_phase("ml", name, phase, 10)
            latest[name] = phase
        elif verb == "forget":
            telemetry.forget("ml", name)
            latest.pop(name, None)
        elif verb == "decide":
            telemetry.record_decision("ml", name, CHECK, "AnalysisFailed", promoted=True)
        else:
            telemetry.count_reconcile_error("ml", name)
        for phase_name in PHASES:
            expected = sum(1 for value in latest.values() if value == phase_name)
            assert sample(telemetry, "modelship_rollouts", {"phase": phase_name}) == expected
        objects = per_object_series(telemetry)
        assert len(objects) <= cap
        assert {name for _, name in objects} <= set(latest) | {n for v, n, _ in operations if v == "error"}
        phases = shown_phases(telemetry)
        for (_, shown_name), written in phases.items():
            assert written == [latest[shown_name]]
        assert sample(telemetry, "modelship_series_objects") == len(objects)
        hidden_rollouts = [n for n, value in latest.items() if value in MID_ROLLOUT and ("ml", n) not in phases]
        if hidden_rollouts:
            assert len(phases) == cap
            assert all(latest[name] in MID_ROLLOUT for _, name in phases)


@settings(max_examples=200, deadline=None)
@given(operations=strategy.lists(strategy.tuples(strategy.sampled_from(NAMES), strategy.booleans(),
                                                 strategy.booleans()), max_size=80),
       cap=strategy.integers(min_value=0, max_value=4))  # fmt: skip
def test_the_cap_never_holds_more_than_its_limit(operations: list[tuple[str, bool, bool]], cap: int) -> None:
    """Given updates and drops in any order, the cap shows at most `limit` objects and every change it reports
    is consistent with what it shows."""
    series_cap = SeriesCap(cap)
    shown: set[tuple[str, str]] = set()
    for name, rolling, drop in operations:
        change = series_cap.drop(("ml", name)) if drop else series_cap.update(("ml", name), rolling)
        assert not set(change.shown) & set(change.hidden)
        shown = (shown - set(change.hidden)) | set(change.shown)
        assert len(shown) == len(series_cap) <= cap
        assert all(series_cap.shown(key) for key in shown)


def test_rollouts_in_flight_take_the_slots_of_settled_objects() -> None:
    """Given a cap of 2 filled by settled objects, when rollouts start, then they take the slots of the objects
    that settled longest ago; a third rollout waits until one of the two settles."""
    telemetry = Telemetry(max_objects=2)
    telemetry.observe_phase("ml", "a", "Healthy", 0)
    telemetry.observe_phase("ml", "b", "Healthy", 0)
    telemetry.observe_phase("ml", "c", "Progressing", 5)
    assert set(shown_phases(telemetry)) == {("ml", "b"), ("ml", "c")}
    telemetry.observe_phase("ml", "d", "Paused", 20)
    assert shown_phases(telemetry) == {("ml", "c"): ["Progressing"], ("ml", "d"): ["Paused"]}

    telemetry.observe_phase("ml", "e", "Progressing", 5)
    assert ("ml", "e") not in shown_phases(telemetry)
    assert sample(telemetry, "modelship_series_waiting_rollouts") == 1

    telemetry.observe_phase("ml", "c", "Healthy", 0)
    assert shown_phases(telemetry) == {("ml", "d"): ["Paused"], ("ml", "e"): ["Progressing"]}
    assert sample(telemetry, "modelship_canary_weight", {"namespace": "ml", "name": "e"}) == 5
    assert sample(telemetry, "modelship_series_waiting_rollouts") == 0
    assert sample(telemetry, "modelship_rollouts", {"phase": "Healthy"}) == 3


def test_losing_the_slot_removes_every_series_of_the_object_and_fleet_counters_stay_exact() -> None:
    """Given an object with phase, SLO and counter series, when a rollout takes its slot, then none of its series
    remain; fleet counters still count decisions of objects without a slot."""
    telemetry = Telemetry(max_objects=1)
    telemetry.observe_phase("ml", "a", "Progressing", 10)
    telemetry.record_decision("ml", "a", CHECK, "AnalysisFailed", promoted=True)
    telemetry.count_reconcile_error("ml", "a")
    telemetry.observe_phase("ml", "a", "RolledBack", 0)
    assert per_object_series(telemetry)[("ml", "a")] >= {
        "modelship_deployment_phase", "modelship_canary_weight", "modelship_analysis", "modelship_slo_value",
        "modelship_slo_bound", "modelship_rollbacks", "modelship_promotions", "modelship_reconcile_errors",
    }  # fmt: skip

    telemetry.observe_phase("ml", "b", "Progressing", 10)
    telemetry.record_decision("ml", "c", CHECK, "Aborted")
    assert set(per_object_series(telemetry)) == {("ml", "b")}
    assert sample(telemetry, "modelship_fleet_analysis_total", {"verdict": "Pass"}) == 2
    assert sample(telemetry, "modelship_fleet_rollbacks_total", {"reason": "AnalysisFailed"}) == 1
    assert sample(telemetry, "modelship_fleet_rollbacks_total", {"reason": "Aborted"}) == 1
    assert sample(telemetry, "modelship_fleet_promotions_total") == 1
    assert sample(telemetry, "modelship_fleet_reconcile_errors_total") == 1


def test_forgetting_frees_the_slot_for_a_waiting_rollout() -> None:
    telemetry = Telemetry(max_objects=1)
    telemetry.observe_phase("ml", "a", "Progressing", 10)
    telemetry.observe_phase("ml", "b", "Progressing", 30)
    telemetry.forget("ml", "a")
    assert shown_phases(telemetry) == {("ml", "b"): ["Progressing"]}
    assert sample(telemetry, "modelship_rollouts", {"phase": "Progressing"}) == 1


def test_an_object_that_fails_before_its_first_status_gets_a_free_slot() -> None:
    """Given an object whose every reconcile raises, its per-object error counter exists (the
    ModelshipReconcileErrors alert names it) while a slot is free."""
    telemetry = Telemetry(max_objects=1)
    telemetry.count_reconcile_error("ml", "broken")
    telemetry.count_reconcile_error("ml", "other")
    assert sample(telemetry, "modelship_reconcile_errors_total", {"namespace": "ml", "name": "broken"}) == 1
    assert sample(telemetry, "modelship_reconcile_errors_total", {"namespace": "ml", "name": "other"}) is None
    assert sample(telemetry, "modelship_fleet_reconcile_errors_total") == 2


class NoIteration:
    """Mixin for a container that fails the test when anything walks it."""

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("walked every object")

    def keys(self) -> Any:
        raise AssertionError("walked every object")

    def values(self) -> Any:
        raise AssertionError("walked every object")

    def items(self) -> Any:
        raise AssertionError("walked every object")


class GuardedDict(NoIteration, dict):  # type: ignore[type-arg]
    pass


class GuardedOrderedDict(NoIteration, OrderedDict):  # type: ignore[type-arg]
    pass


class GuardedSet(NoIteration, set):  # type: ignore[type-arg]
    pass


def test_observing_a_phase_walks_no_collection_of_objects() -> None:
    """Given 1,000 objects (more than the cap), when objects change phase, start and settle rollouts, get checked
    and are deleted, then no per-object collection is iterated: the work per call does not grow with the fleet."""
    telemetry = Telemetry(max_objects=100)
    for index in range(1000):
        telemetry.observe_phase("ml", f"m{index}", "Healthy" if index % 10 else "Progressing", 0)
    cap: Any = telemetry._cap  # the spy replaces its containers
    telemetry._latest = GuardedDict(telemetry._latest)
    telemetry._series = GuardedDict(telemetry._series)
    cap._rolling = GuardedSet(cap._rolling)
    cap._settled = GuardedOrderedDict(cap._settled)
    cap._waiting = GuardedOrderedDict(cap._waiting)

    telemetry.observe_phase("ml", "m1", "Progressing", 10)
    telemetry.record_decision("ml", "m1", CHECK, None)
    telemetry.observe_phase("ml", "m1", "Healthy", 0)
    telemetry.observe_phase("ml", "m0", "Healthy", 0)
    telemetry.observe_phase("ml", "new", "Progressing", 5)
    telemetry.count_reconcile_error("ml", "fresh")
    telemetry.forget("ml", "m10")
    assert sample(telemetry, "modelship_rollouts", {"phase": "Progressing"}) == 99  # m0 settled, new, m10 deleted
    assert sample(telemetry, "modelship_rollouts", {"phase": "Healthy"}) == 901
    with pytest.raises(AssertionError, match="walked every object"):
        sum(1 for _ in telemetry._latest.values())  # a recount would have raised


def test_queue_leader_and_api_gauges() -> None:
    telemetry = Telemetry()
    assert sample(telemetry, "modelship_leader") == 0
    telemetry.observe_queue(depth=12, oldest_age_seconds=75.5, in_flight=16)
    telemetry.observe_leader(True)
    telemetry.count_api_request("get", written=False)
    telemetry.count_api_request("patch", written=True)
    telemetry.count_api_request("patch", written=True)
    telemetry.observe_throttle(0.25)
    telemetry.observe_throttle(0.5)
    assert sample(telemetry, "modelship_queue_depth") == 12
    assert sample(telemetry, "modelship_queue_oldest_age_seconds") == 75.5
    assert sample(telemetry, "modelship_reconciles_in_flight") == 16
    assert sample(telemetry, "modelship_leader") == 1
    assert sample(telemetry, "modelship_api_requests_total", {"verb": "patch"}) == 2
    assert sample(telemetry, "modelship_api_requests_total", {"verb": "get"}) == 1
    assert sample(telemetry, "modelship_api_writes_total", {"verb": "patch"}) == 2
    assert sample(telemetry, "modelship_api_writes_total", {"verb": "get"}) is None
    assert sample(telemetry, "modelship_api_throttled_seconds_total") == 0.75


def test_a_replica_that_stops_leading_reports_no_objects() -> None:
    """Given a leader that reported two objects, when it loses the lease, then its phase counts are zero and its
    per-object series are gone (the new leader's are the only ones), while fleet counters keep counting."""
    telemetry = Telemetry()
    telemetry.observe_leader(True)
    telemetry.observe_phase("ml", "a", "Progressing", 10)
    telemetry.observe_phase("ml", "b", "Healthy", 0)
    telemetry.record_decision("ml", "a", CHECK, None)
    telemetry.observe_leader(False)
    assert sample(telemetry, "modelship_leader") == 0
    assert all(sample(telemetry, "modelship_rollouts", {"phase": phase}) == 0 for phase in PHASES)
    assert per_object_series(telemetry) == {}
    assert sample(telemetry, "modelship_fleet_analysis_total", {"verdict": "Pass"}) == 1
    telemetry.observe_leader(True)
    telemetry.observe_phase("ml", "a", "Progressing", 10)
    assert sample(telemetry, "modelship_rollouts", {"phase": "Progressing"}) == 1


def test_a_negative_cap_names_the_setting() -> None:
    with pytest.raises(ValueError, match="MODELSHIP_METRICS_MAX_OBJECTS"):
        Telemetry(max_objects=-1)
