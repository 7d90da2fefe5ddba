"""Properties of decide over generated specs and observation sequences (outages, failures, requests, crashes).

Invariants: weights stay in range and sum to 100; a promotion only follows passing evidence in every judged
stage and step; a rollback moves all traffic back first; a replayed decision changes nothing; status always
round-trips through its wire form.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import (
    CONTRACT,
    NOT_READY,
    PASSED,
    T0,
    Sim,
    bad,
    few_requests,
    good,
    make_spec,
    no_data,
    outage,
)
from engine_invariants import PassTracker, check_replay, check_rollback, check_round_trip, check_traffic
from engine_strategies import rollouts
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from modelship.domain.engine import decide
from modelship.domain.observations import MetricsSnapshot, Observations, ValidationReport
from modelship.domain.status import ManualRequest, ModelDeploymentStatus, Phase, Revision, Stage

METRICS = {"pass": good, "fail": bad, "nodata": no_data, "outage": outage, "few": few_requests}
VALIDATIONS: dict[str, ValidationReport | None] = {
    "passed": PASSED, "notready": NOT_READY, "contract": CONTRACT, "none": None,
}
ACTIONS = ["promote", "promote-full", "abort", "pause", "resume", "retry"]


tick = st.tuples(
    st.just("tick"),
    st.sampled_from([0, 10, 30, 60, 60, 60, 60, 60, 90, 240]),
    st.sampled_from(list(METRICS) + ["pass"] * 12),
    st.sampled_from(["passed"] * 12 + ["notready", "contract", "none"]),
)
others = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(ACTIONS)),
    st.tuples(st.just("spec")),
    st.tuples(st.just("unschedulable"), st.booleans()),
    st.tuples(st.just("crash")),
    st.tuples(st.just("invalid")),
)
ops = st.integers(0, 99).flatmap(lambda n: tick if n < 93 else others)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(knobs=rollouts(), script=st.lists(ops, min_size=8, max_size=60), fresh=st.booleans())
def test_engine_invariants_hold_over_any_observation_sequence(
    knobs: dict[str, Any], script: list[Any], fresh: bool
) -> None:
    version = 1
    sim = Sim(make_spec(str(version), **dict(knobs)))
    if not fresh:  # fresh: the first revision itself is deployed under the script
        sim.healthy()
        version += 1
        sim.change(make_spec(str(version), **dict(knobs)))
    tracker = PassTracker()
    request_n = 0
    pending_request: ManualRequest | None = None
    for op in script:
        kind = op[0]
        invalid: tuple[str, ...] = ()
        metrics: MetricsSnapshot | None = None
        validation: ValidationReport | None = PASSED
        if kind == "tick":
            sim.now += timedelta(seconds=op[1])
            metrics = METRICS[op[2]]()
            validation = VALIDATIONS[op[3]]
        elif kind == "request":
            request_n += 1
            raw = {"id": f"r{request_n}", "action": op[1], "by": "u"}
            pending_request = ManualRequest.model_validate(raw)
        elif kind == "spec":
            version += 1
            sim.change(make_spec(str(version), **dict(knobs)))
        elif kind == "unschedulable":
            target = sim.status.canary_revision or sim.status.stable_revision
            if op[1] and target is not None:
                sim.unschedulable[target.hash] = "Insufficient nvidia.com/gpu"
            else:
                sim.unschedulable.clear()
        elif kind == "invalid":
            invalid = ("spec.rollout: made up problem for the test",)
        obs = sim.observe(metrics, validation, pending_request, invalid)
        d = decide(sim.spec, sim.status, obs, sim.now)
        check_traffic(d)
        check_round_trip(d.status)
        check_rollback(d)
        check_replay(sim.spec, obs, d, sim.now)
        assert d.requeue_after is None or d.requeue_after >= 0
        if kind == "crash":
            continue  # the status patch was lost: the next decision starts from the old status again
        tracker.observe(sim.spec, sim.status, d.status)
        sim.apply(d)  # the request annotation stays on the object: handled once, by id
    for outcome in ("Promoted", "RolledBack", "Superseded", "Approved"):
        if any(h.event == outcome for h in sim.status.history):
            event(outcome)


revisions = st.sampled_from([None, Revision(version="1", hash="aaaaaaaaaa"), Revision(version="2", hash="bbbbbbbbbb")])
times = st.one_of(st.none(), st.integers(-3600, 3600).map(lambda s: T0 + timedelta(seconds=s)))


@st.composite
def any_status(draw: st.DrawFn) -> ModelDeploymentStatus:
    """Hand-edited or stale statuses: any combination of stage, step, revisions and flags."""
    return ModelDeploymentStatus(
        phase=draw(st.sampled_from(list(Phase))), stage=draw(st.one_of(st.none(), st.sampled_from(list(Stage)))),
        step=draw(st.one_of(st.none(), st.integers(-2, 30))), canary_weight=draw(st.integers(0, 100)),
        mirror_percent=draw(st.integers(0, 100)), stable_revision=draw(revisions),
        canary_revision=draw(revisions), failed_revision=draw(revisions), paused=draw(st.booleans()),
        awaiting_approval=draw(st.booleans()), promote_full=draw(st.booleans()),
        step_started_at=draw(times), progress_at=draw(times), last_check_at=draw(times),
        retired_revisions=[r for r in [draw(revisions)] if r is not None], retired_at=draw(times),
        consecutive_failures=draw(st.integers(0, 5)), passed_checks=draw(st.integers(0, 5)),
        stable_replicas=draw(st.one_of(st.none(), st.integers(0, 10))),
    )


@settings(max_examples=300, deadline=None)
@given(knobs=rollouts(), status=any_status(), metric=st.sampled_from(list(METRICS)),
       validation=st.sampled_from(list(VALIDATIONS)), action=st.sampled_from([None, *ACTIONS]))
def test_decide_never_crashes_and_keeps_traffic_sane_on_any_status(
    knobs: dict[str, Any], status: ModelDeploymentStatus, metric: str, validation: str, action: str | None
) -> None:
    spec = make_spec("2", **dict(knobs))
    request = None if action is None else ManualRequest.model_validate({"id": "x", "action": action})
    obs = Observations(generation=3, metrics=METRICS[metric](), validation=VALIDATIONS[validation],
                       request=request)
    d = decide(spec, status, obs, T0)
    check_traffic(d)
    check_round_trip(d.status)
    check_rollback(d)
    check_replay(spec, obs, d, T0)
    assert d.status.stable_revision is not None
    if d.status.canary_revision is None:
        assert d.status.canary_weight == 0 and d.status.mirror_percent == 0


@settings(max_examples=200, deadline=None)
@given(knobs=rollouts(), status=any_status(), metric=st.sampled_from(list(METRICS)))
def test_decide_copies_the_status_faithfully_and_never_mutates_its_input(
    knobs: dict[str, Any], status: ModelDeploymentStatus, metric: str,
) -> None:
    """`copy_status` (dump and validate: 25x faster than pydantic's deep copy) gives an equal status that shares
    no mutable part; `decide` leaves the status it was given as it was."""
    from modelship.domain.engine import copy_status  # noqa: PLC0415

    copied = copy_status(status)
    assert copied == status and copied is not status
    assert copied.history is not status.history or not status.history
    assert copied.model_dump(by_alias=True, mode="json") == status.model_dump(by_alias=True, mode="json")
    before = status.model_dump(by_alias=True, mode="json")
    spec = make_spec("2", **dict(knobs))
    decide(spec, status, Observations(generation=3, metrics=METRICS[metric](), validation=VALIDATIONS["passed"]), T0)
    assert status.model_dump(by_alias=True, mode="json") == before
