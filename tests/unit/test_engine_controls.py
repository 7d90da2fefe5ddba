"""Rollout engine scenarios: manual requests, spec changes, GPU surge policies and bookkeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import (
    CONTRACT,
    MIN,
    T0,
    Sim,
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
from modelship.domain.actions import DeleteRevision, Role, SetTraffic
from modelship.domain.engine import decide
from modelship.domain.observations import Observations
from modelship.domain.status import HISTORY_LIMIT, OUTCOME_HISTORY_LIMIT, ModelDeploymentStatus, Phase, Stage

# --- manual requests --------------------------------------------------------------------------------------


def test_given_request_already_handled_when_seen_again_then_ignored() -> None:
    sim = rolled_out(steps=[{"weight": 10, "duration": "30m"}])
    sim.decide(validation=None)
    sim.decide()
    sim.decide(request=req("pause", "a"))
    d = sim.decide(request=req("resume", "b"), after=timedelta(seconds=1))
    assert not d.status.paused
    d = sim.decide(request=req("resume", "b"))
    assert [h.event for h in d.status.history].count("Resumed") == 1


def test_given_pause_when_step_elapses_then_no_advance_and_no_deadline() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    sim.decide(request=req("pause"))
    d = sim.run_checks(20, few_requests())
    assert d.status.phase == Phase.PAUSED and d.status.stage == Stage.CANARY
    d = sim.run_checks(10)
    assert d.status.phase == Phase.PAUSED
    d = sim.decide(request=req("resume", "r2"))
    assert d.status.phase == Phase.HEALTHY


def test_given_pause_during_validation_when_validation_passes_then_waits_for_resume() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide(request=req("pause"), validation=None)
    d = sim.decide(after=timedelta(minutes=30))
    assert d.status.stage == Stage.VALIDATING and d.status.phase == Phase.PAUSED
    d = sim.decide(request=req("resume", "r2"))
    assert d.status.stage == Stage.CANARY and d.status.canary_weight == 10


def test_given_abort_when_canary_running_then_rolled_back_recording_who() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    d = sim.decide(request=req("abort", by="carol"))
    assert d.status.phase == Phase.ROLLED_BACK and d.status.history[-1].by == "carol"
    assert isinstance(d.actions[0], SetTraffic) and d.actions[0].canary_weight == 0


def test_given_rolled_back_when_nothing_changes_then_no_new_rollout_until_retry() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide(validation=CONTRACT)
    d = sim.decide(after=timedelta(hours=1))
    assert d.status.phase == Phase.ROLLED_BACK and d.status.canary_revision is None
    d = sim.decide(request=req("retry", by="dave"))
    assert d.status.stage == Stage.VALIDATING and d.status.canary_revision == rev(sim.spec)
    assert any(h.event == "Retried" and h.by == "dave" for h in d.status.history)


def test_given_rolled_back_when_spec_changes_to_new_version_then_new_rollout_starts() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide(validation=CONTRACT)
    sim.change(make_spec("3"))
    d = sim.decide(validation=None)
    assert d.status.canary_revision == rev(make_spec("3")) and d.status.phase == Phase.PROGRESSING


def test_given_unrelated_request_when_not_applicable_then_recorded_as_ignored() -> None:
    sim = Sim(make_spec("1")).healthy()
    d = sim.decide(request=req("promote"))
    assert d.status.history[-1].outcome == "Ignored" and d.status.last_request_id == "r1"


# --- spec changes -----------------------------------------------------------------------------------------


def test_given_canary_running_when_spec_changes_again_then_old_canary_superseded_traffic_first() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    old = sim.status.canary_revision
    sim.change(make_spec("3"))
    d = sim.decide(validation=None)
    assert isinstance(d.actions[0], SetTraffic) and d.actions[0].canary_weight == 0
    assert d.status.canary_revision == rev(make_spec("3")) and d.status.stage == Stage.VALIDATING
    assert old in d.status.retired_revisions
    assert any(h.outcome == "Superseded" for h in d.status.history)


def test_given_canary_running_when_spec_reverted_to_stable_then_canary_abandoned_healthy() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    sim.change(make_spec("1"))
    d = sim.decide()
    assert d.status.phase == Phase.HEALTHY and d.status.canary_revision is None
    assert traffic(d)[0].canary_weight == 0 and d.actions[0] == traffic(d)[0]


def test_given_invalid_spec_when_deciding_then_invalid_condition_and_only_running_revisions_applied() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    before = sim.status.model_copy(deep=True)
    d = sim.decide(invalid=("spec.rollout.shadow: the none router cannot mirror; use gatewayAPI or istio",))
    assert d.status.phase == Phase.INVALID and cond(d.status, "Invalid") == ("True", "InvalidSpec")
    running = {r.hash for r in (before.stable_revision, before.canary_revision) if r is not None}
    assert {e.revision.hash for e in ensures(d)} == running
    assert d.status.canary_weight == before.canary_weight and traffic(d)[0].canary_weight == before.canary_weight
    d = sim.decide(after=timedelta(minutes=1))
    assert d.status.phase == Phase.PROGRESSING and cond(d.status, "Invalid")[0] == "False"
    assert "SpecValid" in [e.reason for e in events(d)]


# --- GPU surge --------------------------------------------------------------------------------------------


def test_given_unschedulable_canary_and_never_policy_then_rollback_with_scheduler_message() -> None:
    sim = rolled_out(gpuSurge="Never")
    sim.unschedulable[rev(sim.spec).hash] = "0/2 nodes: Insufficient nvidia.com/gpu"
    sim.decide(validation=None)
    d = sim.decide(validation=None)
    assert d.status.phase == Phase.ROLLED_BACK
    assert "Insufficient nvidia.com/gpu" in d.status.history[-1].reason


def test_given_unschedulable_canary_and_scale_down_stable_then_stable_shrinks_once_not_below_its_share() -> None:
    sim = rolled_out(gpuSurge="ScaleDownStable", steps=[{"weight": 50, "duration": "1m"}])
    sim.unschedulable[rev(sim.spec).hash] = "Insufficient nvidia.com/gpu"
    d = sim.decide(validation=None)
    assert {e.role: e.replicas for e in ensures(d)} == {Role.STABLE: 4, Role.CANARY: 1}
    d = sim.decide(validation=None)  # stable still carries 100%: it keeps all 4 pods, the canary waits
    assert next(e for e in ensures(d) if e.role == Role.STABLE).replicas == 4
    assert d.status.stable_replicas is None and "unschedulable" in d.status.message
    sim.unschedulable.clear()
    d = sim.decide()
    assert d.status.stage == Stage.CANARY and d.status.canary_weight == 50
    sim.unschedulable[rev(sim.spec).hash] = "Insufficient nvidia.com/gpu"
    d = sim.decide()  # the canary's 2 pods for 50% are missing: stable 4 -> 2 = ceil(4 * 50%)
    assert next(e for e in ensures(d) if e.role == Role.STABLE).replicas == 2
    assert d.status.stable_replicas == 2
    d = sim.decide()  # replayed while still pending: no second shrink
    assert next(e for e in ensures(d) if e.role == Role.STABLE).replicas == 2


def test_given_unschedulable_canary_and_allow_policy_then_condition_explains_then_deadline() -> None:
    sim = rolled_out()
    sim.unschedulable[rev(sim.spec).hash] = "Insufficient nvidia.com/gpu"
    sim.decide(validation=None)
    d = sim.decide(validation=None, after=MIN)
    assert cond(d.status, "Progressing") == ("True", "CanaryUnschedulable")
    assert "Insufficient" in d.status.message
    assert sim.decide(validation=None, after=timedelta(minutes=15)).status.phase == Phase.ROLLED_BACK


def test_given_none_router_when_canary_step_then_replicas_follow_the_weight() -> None:
    sim = rolled_out(steps=[{"weight": 25, "duration": "5m"}], traffic={"none": {}})
    sim.decide(validation=None)
    d = sim.decide()
    reps = {e.role: e.replicas for e in ensures(d)}
    assert reps == {Role.STABLE: 3, Role.CANARY: 1}


# --- bookkeeping ------------------------------------------------------------------------------------------


def test_given_healthy_stable_when_only_replicas_change_then_stable_rescaled_without_rollout() -> None:
    sim = Sim(make_spec("1")).healthy()
    sim.change(make_spec("1", replicas=7))
    d = sim.decide()
    assert d.status.canary_revision is None and d.status.phase == Phase.HEALTHY
    assert [(e.role, e.replicas) for e in ensures(d)] == [(Role.STABLE, 7)]


def test_given_many_rollouts_when_history_grows_then_bounded_dropping_oldest() -> None:
    sim = Sim(make_spec("1")).healthy()
    for v in range(2, 30):
        sim.change(make_spec(str(v)))
        sim.decide(validation=None)
    progress = [h for h in sim.status.history if h.outcome is None]
    outcomes = [h for h in sim.status.history if h.outcome is not None]
    assert len(progress) == HISTORY_LIMIT and len(outcomes) == OUTCOME_HISTORY_LIMIT  # a budget per kind
    assert outcomes[-1].version == "28" and outcomes[0].version == str(28 - OUTCOME_HISTORY_LIMIT + 1)
    assert sim.status.history[-1].version == "29"


def test_given_same_inputs_when_decided_twice_then_identical_and_no_double_advance() -> None:
    sim = rolled_out(steps=[{"weight": 5, "duration": "1m"}, {"weight": 50, "duration": "1m"}])
    sim.decide(validation=None)
    sim.decide()
    now = sim.now + MIN
    obs = Observations(generation=2, revisions=sim.observe().revisions, metrics=good())
    first = decide(sim.spec, sim.status, obs, now)
    again = decide(sim.spec, first.status, obs, now)
    assert first.status.step == 1 and again.status.step == 1
    assert again.status.model_dump() == first.status.model_dump()
    assert not [e for e in events(again) if e.reason in ("StepAdvanced", "StageChanged")]


def test_given_decision_when_inputs_given_then_input_status_is_not_mutated() -> None:
    status = ModelDeploymentStatus()
    decide(make_spec("1"), status, Observations(generation=1), T0)
    assert status == ModelDeploymentStatus()


def test_given_canary_step_when_requeue_computed_then_points_at_next_check() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    d = sim.decide()
    assert d.requeue_after == 60.0


def test_given_rollback_when_scale_down_delay_passes_then_canary_deployment_deleted() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    sim.decide()
    canary = sim.status.canary_revision
    assert canary is not None
    d = sim.decide(request=req("abort"))
    assert DeleteRevision(canary.hash) not in d.actions and d.status.retired_revisions == [canary]
    assert d.requeue_after == 30.0
    d = sim.decide(after=timedelta(seconds=30))
    assert DeleteRevision(canary.hash) in d.actions and d.status.retired_at is None


def test_given_unknown_owned_deployment_when_observed_then_deleted_as_orphan() -> None:
    sim = Sim(make_spec("1")).healthy()
    sim.replicas["0123456789"] = 2
    d = sim.decide()
    assert DeleteRevision("0123456789") in d.actions
    assert rev(sim.spec).hash not in [a.revision_hash for a in d.actions if isinstance(a, DeleteRevision)]


def test_given_shadow_elapsed_without_any_pass_when_checked_then_never_reaches_live_traffic() -> None:
    sim = rolled_out(shadow={"mirrorPercent": 100, "duration": "1m"})
    sim.decide(validation=None)
    sim.decide()
    d = sim.run_checks(5, few_requests())
    assert d.status.stage == Stage.SHADOW and all(t.canary_weight == 0 for t in traffic(d))


def test_given_promote_full_at_approval_gate_when_next_check_passes_then_promoted_skipping_steps() -> None:
    steps: list[dict[str, Any]] = [
        {"weight": 10, "duration": "1m"}, {"approval": {}}, {"weight": 50, "duration": "1h"}
    ]
    sim = rolled_out(steps=steps)
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1)
    assert sim.status.awaiting_approval
    d = sim.decide(request=req("promote-full", by="erin"))
    assert d.status.awaiting_approval and d.status.promote_full
    d = sim.run_checks(1)
    assert d.status.phase == Phase.HEALTHY and d.status.stable_revision == rev(sim.spec)
    assert any(h.event == "PromoteFullRequested" and h.by == "erin" for h in d.status.history)


def test_given_condition_unchanged_when_deciding_later_then_transition_time_kept() -> None:
    sim = Sim(make_spec("1")).healthy()
    first = next(c for c in sim.status.conditions if c.type == "Ready").last_transition_time
    d = sim.decide(after=timedelta(hours=2))
    assert next(c for c in d.status.conditions if c.type == "Ready").last_transition_time == first


def test_given_rollback_when_later_reconciles_then_degraded_reason_keeps_the_cause() -> None:
    sim = rolled_out()
    sim.decide(validation=None)
    d = sim.decide(validation=CONTRACT)
    assert cond(d.status, "Degraded") == ("True", "ValidationFailed")
    d = sim.decide(after=timedelta(minutes=5))
    assert cond(d.status, "Degraded") == ("True", "ValidationFailed")
