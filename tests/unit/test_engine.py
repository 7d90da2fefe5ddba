"""Rollout engine scenarios: each test drives decide like the controller would and checks what it asks for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import (
    CONTRACT,
    MIN,
    NOT_READY,
    Sim,
    bad,
    cond,
    ensures,
    events,
    few_requests,
    good,
    make_spec,
    no_data,
    outage,
    req,
    rev,
    rolled_out,
    traffic,
)
from modelship.domain.actions import DeleteRevision, EventType, Role, SetTraffic
from modelship.domain.engine import analysis_due, decide, validation_due
from modelship.domain.observations import Observations
from modelship.domain.status import Phase, Stage

# --- first revision ---------------------------------------------------------------------------------------


def test_given_nothing_deployed_when_deciding_then_first_revision_deployed_as_full_stable() -> None:
    sim = Sim(make_spec("1"))
    d = sim.decide()
    assert d.status.stable_revision == rev(sim.spec) and d.status.canary_revision is None
    assert ensures(d)[0].replicas == 4 and ensures(d)[0].role == Role.STABLE
    assert traffic(d) == [SetTraffic(rev(sim.spec), None, 0, 0)]
    assert d.status.phase == Phase.PROGRESSING and d.requeue_after is not None


def test_given_first_revision_pods_available_when_deciding_then_healthy_stable() -> None:
    sim = Sim(make_spec("1")).healthy()
    assert (sim.status.phase, sim.status.stage) == (Phase.HEALTHY, Stage.STABLE)
    assert cond(sim.status, "Ready") == ("True", "StableAvailable")
    assert sim.last is not None and sim.last.requeue_after is None


def test_given_first_revision_never_available_when_deadline_passes_then_failed_but_still_applied() -> None:
    spec = make_spec("1")
    sim = Sim(spec, unschedulable={rev(spec).hash: "0/3 nodes: Insufficient nvidia.com/gpu"})
    sim.decide()
    d = sim.decide(after=timedelta(minutes=16))
    assert d.status.phase == Phase.FAILED and cond(d.status, "Degraded") == ("True", "DeployFailed")
    assert ensures(d) and "Insufficient" in d.status.message
    d = sim.decide(after=MIN)
    assert d.status.phase == Phase.FAILED and not events(d)
    sim.unschedulable.clear()
    assert sim.decide(after=MIN).status.phase == Phase.HEALTHY


# --- start, validation ------------------------------------------------------------------------------------


def test_given_healthy_stable_when_new_version_then_rollout_starts_validating_without_traffic() -> None:
    sim = rolled_out()
    d = sim.decide(validation=None)
    st = d.status
    assert st.stage == Stage.VALIDATING and st.canary_revision == rev(sim.spec)
    assert st.phase == Phase.PROGRESSING
    assert st.history[-1].event == "Started" and st.observed_generation == 2
    assert traffic(d)[0].canary_weight == 0 and traffic(d)[0].canary is None
    assert [e.role for e in ensures(d)] == [Role.STABLE, Role.CANARY]
    assert any(e.reason == "RolloutStarted" for e in events(d))
    assert validation_due(st)


def test_given_validation_passed_when_no_shadow_then_first_canary_step_gets_its_weight() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    d = sim.decide()
    assert (d.status.stage, d.status.step, d.status.canary_weight) == (Stage.CANARY, 0, 10)
    assert traffic(d)[-1].canary_weight == 10 and traffic(d)[-1].stable_weight == 90
    validated = next(h for h in d.status.history if h.event == "Validated")
    assert validated.stage == Stage.VALIDATING and "validation passed" in validated.reason
    assert any(e.reason == "Validated" and e.type == EventType.NORMAL for e in events(d))


def test_given_validation_not_ready_when_deadline_passes_then_rollback_without_traffic() -> None:
    sim = rolled_out()
    sim.decide(validation=NOT_READY)
    assert sim.decide(validation=NOT_READY, after=timedelta(minutes=5)).status.stage == Stage.VALIDATING
    d = sim.decide(validation=NOT_READY, after=timedelta(minutes=11))
    assert d.status.phase == Phase.ROLLED_BACK and "progressDeadline" in d.status.history[-1].reason


def test_given_contract_mismatch_when_validating_then_rollback_immediately() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    d = sim.decide(validation=CONTRACT)
    assert d.status.phase == Phase.ROLLED_BACK and d.status.canary_weight == 0
    assert isinstance(d.actions[0], SetTraffic) and d.actions[0].canary_weight == 0
    assert "ContractMismatch" in d.status.history[-1].reason
    assert d.status.history[-1].stage == Stage.VALIDATING  # where it failed, not the Stable it fell back to
    warning = [e for e in events(d) if e.type == EventType.WARNING]
    assert warning and "FP16" in warning[0].message


# --- canary analysis --------------------------------------------------------------------------------------


def test_given_canary_step_when_duration_elapses_with_passing_checks_then_promoted() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    old = sim.status.stable_revision
    d = sim.run_checks(4)
    assert d.status.stage == Stage.CANARY and d.status.passed_checks == 4
    d = sim.run_checks(1)
    st = d.status
    assert (st.phase, st.stage) == (Phase.HEALTHY, Stage.STABLE)
    assert st.stable_revision == rev(sim.spec) and st.canary_revision is None
    assert traffic(d)[-1] == SetTraffic(rev(sim.spec), None, 0, 0)
    assert st.retired_revisions == [old] and st.history[-1].event == "Promoted"
    assert "Pass" in st.history[-1].reason
    assert old is not None
    d = sim.decide(after=timedelta(seconds=30))
    assert DeleteRevision(old.hash) in d.actions and d.status.retired_revisions == []


def test_given_check_not_yet_due_when_metrics_offered_then_nothing_is_counted() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    assert not analysis_due(sim.spec, sim.status, sim.now + timedelta(seconds=59))
    assert analysis_due(sim.spec, sim.status, sim.now + MIN)
    early = sim.now + timedelta(seconds=30)
    d = decide(sim.spec, sim.status, Observations(generation=2, metrics=good()), early)
    assert d.status.passed_checks == 0 and d.status.last_check_at is None


def test_given_failures_reaching_failure_limit_when_checked_then_rollback_with_evidence() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(1, bad())
    assert d.status.consecutive_failures == 1 and d.status.phase == Phase.PROGRESSING
    assert any(e.reason == "AnalysisFailed" and e.type == EventType.WARNING for e in events(d))
    d = sim.run_checks(1, bad())
    st = d.status
    assert st.phase == Phase.ROLLED_BACK and st.canary_weight == 0 and st.canary_revision is None
    assert d.actions[0] == SetTraffic(st.stable_revision, None, 0, 0)  # type: ignore[arg-type]
    warning = next(e for e in events(d) if e.reason == "RolledBack")
    assert warning.type == EventType.WARNING
    assert "errorRate=0.2" in warning.message and "max 0.01" in warning.message
    assert st.history[-1].outcome == "RolledBack" and cond(st, "Degraded") == ("True", "AnalysisFailed")
    assert st.history[-1].stage == Stage.CANARY and st.stage == Stage.STABLE


def test_given_pass_between_failures_when_checked_then_consecutive_count_resets() -> None:
    sim = rolled_out(steps=[{"weight": 10, "duration": "30m"}])
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1, bad())
    sim.run_checks(1, good())
    d = sim.run_checks(1, bad())
    assert d.status.consecutive_failures == 1 and d.status.phase == Phase.PROGRESSING


def test_given_no_data_with_hold_when_checked_then_holds_and_rolls_back_only_at_deadline() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(10, no_data())
    assert d.status.stage == Stage.CANARY and d.status.consecutive_failures == 0
    d = sim.run_checks(5, no_data())
    assert d.status.phase == Phase.ROLLED_BACK and "progressDeadline" in d.status.history[-1].reason


def test_given_no_data_with_fail_policy_when_checked_then_counts_as_failure() -> None:
    sim = rolled_out(analysis={"onNoData": "Fail"})
    sim.decide(validation=None)
    sim.decide()
    assert sim.run_checks(2, no_data()).status.phase == Phase.ROLLED_BACK


def test_given_prometheus_down_when_hold_then_never_promotes_and_rolls_back_at_deadline() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(14, outage())
    assert d.status.stage == Stage.CANARY and d.status.stable_revision != rev(sim.spec)
    assert sim.run_checks(1, outage()).status.phase == Phase.ROLLED_BACK


def test_given_prometheus_down_when_fail_policy_then_counts_as_failure() -> None:
    sim = rolled_out(analysis={"onMetricsUnavailable": "Fail"})
    sim.decide(validation=None)
    sim.decide()
    assert sim.run_checks(2, outage()).status.phase == Phase.ROLLED_BACK


def test_given_too_few_requests_when_step_ends_then_never_advances() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(8, few_requests())
    assert d.status.stage == Stage.CANARY and d.status.passed_checks == 0
    assert "minRequests" in d.status.message


def test_given_step_elapsed_when_last_check_is_not_a_pass_then_step_holds_until_a_pass() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(4)
    d = sim.run_checks(2, few_requests())
    assert d.status.stage == Stage.CANARY
    assert sim.run_checks(1).status.phase == Phase.HEALTHY


# --- shadow, steps, approval ------------------------------------------------------------------------------


def test_given_shadow_stage_when_validated_then_mirror_only_and_then_first_step() -> None:
    sim = rolled_out(shadow={"mirrorPercent": 50, "duration": "2m"})
    sim.decide(validation=None)
    d = sim.decide()
    assert d.status.stage == Stage.SHADOW and traffic(d)[-1].mirror_percent == 50
    assert traffic(d)[-1].canary_weight == 0 and traffic(d)[-1].canary == rev(sim.spec)
    d = sim.run_checks(2)
    assert d.status.stage == Stage.CANARY and traffic(d)[-1].mirror_percent == 0
    assert traffic(d)[-1].canary_weight == 10


def test_given_multi_step_when_progressing_then_message_counts_steps_and_checks() -> None:
    sim = rolled_out(steps=[{"weight": 5, "duration": "2m"}, {"weight": 25, "duration": "10m"}])
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(2)
    assert d.status.step == 1 and d.status.canary_weight == 25
    d = sim.run_checks(3)
    assert d.status.message.startswith("step 2/2: 25% for 10m; 3 checks passed")


def test_given_approval_step_when_reached_then_paused_without_deadline_until_promote() -> None:
    steps: list[dict[str, Any]] = [
        {"weight": 10, "duration": "1m"}, {"approval": {}}, {"weight": 50, "duration": "1m"}
    ]
    sim = rolled_out(steps=steps)
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(1)
    assert d.status.phase == Phase.PAUSED and d.status.awaiting_approval and d.status.canary_weight == 10
    d = sim.run_checks(30)
    assert d.status.phase == Phase.PAUSED
    d = sim.decide(request=req("promote", by="bob"), after=MIN)
    assert d.status.step == 2 and d.status.canary_weight == 50 and not d.status.awaiting_approval
    assert any(h.event == "Approved" and h.by == "bob" for h in d.status.history)
    assert sim.run_checks(1).status.phase == Phase.HEALTHY


def test_given_failing_canary_at_approval_gate_when_checked_then_still_rolls_back() -> None:
    sim = rolled_out(steps=[{"weight": 10, "duration": "1m"}, {"approval": {}}])
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1)
    assert sim.run_checks(2, bad()).status.phase == Phase.ROLLED_BACK


def test_given_promote_full_when_latest_check_fails_then_waits_for_a_pass() -> None:
    steps = [{"weight": 5, "duration": "10m"}, {"weight": 50, "duration": "10m"}]
    sim = rolled_out(steps=steps, analysis={"failureLimit": 5})
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1, bad())
    d = sim.decide(request=req("promote-full"))
    assert d.status.promote_full and d.status.stage == Stage.CANARY
    d = sim.run_checks(1, bad())
    assert d.status.stage == Stage.CANARY
    d = sim.run_checks(1, good())
    assert d.status.phase == Phase.HEALTHY and d.status.stable_revision == rev(sim.spec)
