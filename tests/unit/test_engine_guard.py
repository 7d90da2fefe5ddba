"""The guard keeps working when the spec or the clock does not: an Invalid newest spec (issue 8 item 2), status
timestamps from a skewed clock (item 8) and a step list shrunk mid-rollout (item 10)."""

from __future__ import annotations

import random
from datetime import timedelta

from engine_fixtures import (
    MIN,
    bad,
    cond,
    ensures,
    events,
    few_requests,
    good,
    make_spec,
    req,
    rev,
    rolled_out,
    traffic,
)
from modelship.domain.last_valid import last_valid_spec
from modelship.domain.status import Phase, Stage

PROBLEM = ("spec.rollout.canary.steps[0].duration: 1s is shorter than analysis.interval 1m: no SLO check could run "
           "in this step; make it at least 1m",)


# --- item 2: an Invalid newest spec keeps the running rollout guarded -------------------------------------


def test_given_failing_canary_when_newest_spec_invalid_then_analysis_still_rolls_back() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    assert sim.status.canary_weight == 50
    d = sim.decide(metrics=bad(), invalid=PROBLEM, after=MIN)
    assert d.status.canary_weight == 50 and d.status.consecutive_failures == 1
    d = sim.decide(metrics=bad(), invalid=PROBLEM, after=MIN)
    assert d.status.canary_revision is None and d.status.failed_revision == rev(sim.spec)
    assert traffic(d)[0].canary_weight == 0 and d.actions[0] == traffic(d)[0]
    assert d.status.phase == Phase.INVALID, "the newest spec is still invalid"
    assert cond(d.status, "Invalid") == ("True", "InvalidSpec")
    assert cond(d.status, "Degraded") == ("True", "AnalysisFailed")
    assert "steps[0].duration" in d.status.message and "make it at least 1m" in d.status.message


def test_given_invalid_newest_spec_when_abort_requested_then_rolled_back_by_the_requester() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    d = sim.decide(invalid=PROBLEM, request=req("abort", by="carol"))
    assert d.status.canary_revision is None and traffic(d)[0].canary_weight == 0
    rolled = next(h for h in d.status.history if h.event == "RolledBack")
    assert rolled.by == "carol" and d.status.last_request_id == "r1"


def test_given_invalid_newest_spec_when_no_data_past_deadline_then_rolled_back() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    for _ in range(16):
        d = sim.decide(metrics=few_requests(), invalid=PROBLEM, after=MIN)
    assert d.status.canary_revision is None
    assert cond(d.status, "Degraded") == ("True", "ProgressDeadline")


def test_given_passing_canary_when_newest_spec_invalid_then_holds_and_resumes_once_valid() -> None:
    sim = rolled_out(steps=[{"weight": 10, "duration": "5m"}, {"weight": 50, "duration": "5m"}])
    sim.decide(validation=None)
    sim.decide()
    for _ in range(30):  # far past the step and the progress deadline: checks pass, nothing moves forward
        d = sim.decide(metrics=good(), invalid=PROBLEM, after=MIN)
        assert d.status.canary_weight == 10 and d.status.step == 0
        assert {e.canary_weight for e in traffic(d)} == {10}
    assert d.status.phase == Phase.INVALID and d.status.canary_revision == rev(sim.spec)
    assert "not advancing" in d.status.message
    assert d.requeue_after is not None, "checks stay scheduled while the spec is invalid"
    d = sim.decide(metrics=good(), after=MIN)
    assert d.status.step == 1 and d.status.canary_weight == 50 and d.status.phase == Phase.PROGRESSING
    assert cond(d.status, "Invalid")[0] == "False"


def test_given_invalid_newest_spec_when_deciding_then_only_the_running_revisions_are_applied() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    running = {r.hash for r in (sim.status.stable_revision, sim.status.canary_revision) if r is not None}
    d = sim.decide(invalid=PROBLEM)
    assert {e.revision.hash for e in ensures(d)} == running
    assert [e.reason for e in events(d)] == ["InvalidSpec"]
    d = sim.decide(invalid=PROBLEM)
    assert not events(d), "the Invalid Event is sent once"


def test_given_valid_spec_when_deciding_then_it_is_kept_in_status_for_later_invalid_specs() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    d = sim.decide(validation=None)
    assert last_valid_spec(d.status) == sim.spec
    d = sim.decide(invalid=PROBLEM)
    assert last_valid_spec(d.status) == sim.spec


# --- item 8: timestamps from a clock running ahead --------------------------------------------------------


def test_given_status_times_in_the_future_when_deciding_then_treated_as_now_and_said_so() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}], progressDeadline="3m")
    sim.decide(validation=None)
    sim.decide()
    ahead = sim.now + timedelta(hours=1)  # written by a replica whose clock ran an hour ahead
    sim.status = sim.status.model_copy(update={"progress_at": ahead, "step_started_at": ahead,
                                               "last_check_at": ahead})
    d = sim.decide(metrics=few_requests(), after=timedelta(seconds=1))
    skew = [e for e in events(d) if e.reason == "ClockSkew"]
    assert skew and "progressAt" in skew[0].message and "in the future" in skew[0].message
    assert any(h.event == "ClockSkew" and "treated as now" in h.reason for h in d.status.history)
    assert d.status.progress_at == sim.now and d.status.step_started_at == sim.now
    for _ in range(4):  # the deadline counts from now: 3 minutes, not 63
        d = sim.decide(metrics=few_requests(), after=MIN)
    assert d.status.canary_revision is None
    assert cond(d.status, "Degraded") == ("True", "ProgressDeadline")


def test_given_future_last_check_when_deciding_then_checks_run_on_time() -> None:
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    sim.status = sim.status.model_copy(update={"last_check_at": sim.now + timedelta(hours=1)})
    sim.decide(after=timedelta(seconds=1))
    d = sim.decide(metrics=bad(), after=MIN)
    assert d.status.consecutive_failures == 1


# --- item 10: steps shrunk mid-rollout --------------------------------------------------------------------


def test_given_steps_shrunk_below_current_step_when_deciding_then_weight_drops_to_the_step_and_rechecks() -> None:
    steps = [{"weight": 10, "duration": "2m"}, {"weight": 30, "duration": "2m"}, {"weight": 60, "duration": "2m"}]
    sim = rolled_out(steps=steps)
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(2)
    sim.run_checks(2)
    assert sim.status.step == 2 and sim.status.canary_weight == 60
    sim.change(make_spec("2", steps=[{"weight": 20, "duration": "2m"}]))
    d = sim.decide()
    assert d.status.step == 0 and d.status.canary_weight == 20
    assert {e.canary_weight for e in traffic(d)} == {20}
    assert "step 1/1: 20%" in d.status.message and d.status.passed_checks == 0
    d = sim.decide(after=timedelta(minutes=5))
    assert d.status.stage == Stage.CANARY, "no promotion without a passing check at the new step"
    d = sim.run_checks(2)
    assert d.status.phase == Phase.HEALTHY and d.status.stable_revision == rev(sim.spec)


def test_given_current_step_lowered_when_deciding_then_weight_follows_the_step() -> None:
    sim = rolled_out(steps=[{"weight": 40, "duration": "10m"}, {"weight": 80, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1)
    sim.change(make_spec("2", steps=[{"weight": 15, "duration": "10m"}, {"weight": 80, "duration": "10m"}]))
    d = sim.decide()
    assert d.status.step == 0 and d.status.canary_weight == 15 and traffic(d)[-1].canary_weight == 15
    assert any(h.event == "StepsChanged" for h in d.status.history)


def test_given_a_spec_too_large_to_keep_when_deciding_then_status_stays_small_and_says_nothing_was_kept() -> None:
    """Status must stay far below etcd's limits: a spec whose encoding exceeds the limit is not kept (an Invalid
    spec after it then freezes the rollout, see last_valid.py), and status still serialises small."""
    noise = random.Random(8)
    env = [{"name": f"NOISE_{i}", "value": "".join(noise.choice("0123456789abcdef") for _ in range(2000))}
           for i in range(48)]
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}])
    spec = sim.spec.model_copy(update={"serving": sim.spec.serving.model_validate(
        {**sim.spec.serving.model_dump(by_alias=True), "env": env})})
    sim.change(spec)
    d = sim.decide(validation=None)
    assert last_valid_spec(d.status) is None
    assert len(d.status.model_dump_json(by_alias=True)) < 64 * 1024
    small = rolled_out(steps=[{"weight": 50, "duration": "10m"}]).decide(validation=None)
    assert small.status.last_valid_spec is not None and len(small.status.last_valid_spec.data) < 2048
