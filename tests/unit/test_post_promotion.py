"""After promotion: the watch window, the warm previous revision, undo and the revision history (engine)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import (
    CONTRACT,
    INVALID,
    Sim,
    bad,
    cond,
    ensures,
    events,
    good,
    make_spec,
    no_data,
    req,
    rev,
    traffic,
)
from modelship.domain.actions import (
    DeleteRevision,
    EnsureComparator,
    EnsureRevision,
    RemoveComparator,
    Role,
    SetTraffic,
)
from modelship.domain.engine import decide
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.slos import active_comparison, judged_slos
from modelship.domain.status import Phase, Revision, Stage

WINDOW = {"window": "5m", "keepPrevious": {"replicas": 1}}


def promoted(window: dict[str, Any] | None = None, **rollout: Any) -> tuple[Sim, Revision, Revision]:
    """v1 stable, v2 rolled out through one 10% step and promoted: the sim is at the moment of promotion."""
    knobs = {"postPromotion": window or WINDOW, **rollout}
    sim = Sim(make_spec("1", **knobs)).healthy()
    old = sim.status.stable_revision
    sim.change(make_spec("2", **knobs))
    sim.decide(validation=None)
    d = sim.decide()
    for _ in range(10):  # through shadow (if any) and the 5m step, one passing check a minute
        if d.status.stable_revision == rev(sim.spec):
            break
        d = sim.run_checks(1)
    assert d.status.stable_revision == rev(sim.spec), d.status.message
    assert old is not None
    return sim, old, rev(sim.spec)


# --- the window ---------------------------------------------------------------------------------------------


def test_given_post_promotion_when_promoted_then_new_stable_watched_and_previous_kept_warm() -> None:
    sim, old, new = promoted()
    st = sim.status
    assert (st.stage, st.phase) == (Stage.POST_PROMOTION, Phase.PROGRESSING)
    assert st.previous_revision == old and old not in st.retired_revisions
    assert EnsureRevision(old, Role.PREVIOUS, 1) in ensures(sim.last)  # type: ignore[arg-type]
    assert traffic(sim.last)[-1] == SetTraffic(new, None, 0, 0)  # type: ignore[arg-type]
    assert st.baseline is not None and st.baseline.verdict == "Pass"
    assert "watching 2" in st.message and "previous 1 kept at 1 pods" in st.message
    assert cond(st, "PreviousWarm") == ("True", "Warm")
    assert [(r.version, r.outcome) for r in st.revisions] == [("1", "Replaced"), ("2", None)]


def test_given_window_when_it_passes_with_passing_checks_then_previous_retired_and_deleted() -> None:
    sim, old, new = promoted()
    d = sim.run_checks(5)
    st = d.status
    assert (st.stage, st.phase) == (Stage.STABLE, Phase.HEALTHY)
    assert st.previous_revision is None and st.retired_revisions == [old]
    assert st.history[-1].event == "WindowEnded" and "5 passing checks" in st.history[-1].reason
    assert not [c for c in st.conditions if c.type == "PreviousWarm"]
    d = sim.decide(after=timedelta(seconds=30))
    assert DeleteRevision(old.hash) in d.actions and d.status.stable_revision == new


def test_given_breach_in_window_when_failure_limit_reached_then_all_traffic_back_on_previous_at_once() -> None:
    sim, old, new = promoted()
    sim.run_checks(1, bad())
    d = sim.run_checks(1, bad())
    st = d.status
    assert st.stable_revision == old and st.failed_revision == new and st.stage == Stage.STABLE
    assert st.phase == Phase.ROLLED_BACK and cond(st, "Degraded") == ("True", "AnalysisFailed")
    assert d.actions[0] == SetTraffic(old, None, 0, 0)
    entry = st.history[-1]
    assert (entry.event, entry.outcome, entry.stage, entry.version) == (
        "RolledBack", "RolledBack", Stage.POST_PROMOTION, "2")
    assert "errorRate=0.2" in entry.reason and "at once (warm)" in entry.reason
    assert d.rolled_back == "AnalysisFailed"
    assert [(r.version, r.outcome) for r in st.revisions] == [("1", "Replaced"), ("2", "RolledBack"), ("1", None)]
    assert st.retired_revisions == [new]
    later = sim.run_checks(3)  # the spec still names v2 (GitOps owns it): it is not rolled out again
    assert later.status.canary_revision is None and later.status.stable_revision == old


def test_given_ratio_bound_when_watched_then_judged_against_own_last_canary_value() -> None:
    slo = {"errorRate": {"max": 0.5}, "latencyP99Ms": {"maxRatioToStable": 1.5}}
    sim = Sim(make_spec("1", postPromotion=WINDOW, slo=slo)).healthy()
    sim.change(make_spec("2", postPromotion=WINDOW, slo=slo))
    sim.decide(validation=None)
    sim.decide()

    def latency(canary: float, stable: float | None) -> MetricsSnapshot:
        return MetricsSnapshot(available=True, canary_requests=500, values={
            "errorRate": MetricValue(canary=0.001), "latencyP99Ms": MetricValue(canary=canary, stable=stable)})

    sim.run_checks(5, latency(100, 90))
    assert sim.status.stage == Stage.POST_PROMOTION
    d = sim.run_checks(1, latency(140, None))  # nothing else serves: no stable series, baseline 100
    assert d.status.last_analysis is not None and d.status.last_analysis.verdict == "Pass"
    d = sim.run_checks(1, latency(160, None))
    assert d.status.last_analysis is not None and d.status.last_analysis.verdict == "Fail"
    assert "1.60x stable 100" in d.status.last_analysis.message


def test_given_ratio_bound_when_the_old_stable_series_is_nan_in_the_window_then_it_is_not_evidence() -> None:
    """In the window the stable column is the new stable's baseline; what the old pods' series says is discarded
    (the guard property test once counted a NaN there as Pass on non-finite evidence)."""
    slo = {"errorRate": {"max": 0.5, "maxRatioToStable": 2.0}}
    sim, _, _ = promoted(slo=slo)
    nan_stable = MetricsSnapshot(available=True, canary_requests=500, values={
        "errorRate": MetricValue(canary=0.001, stable=float("nan"))})
    d = sim.run_checks(1, nan_stable)
    assert d.status.last_analysis is not None and d.status.last_analysis.verdict == "Pass"
    judged = {m.name: m for m in d.status.last_analysis.metrics}
    assert judged["errorRate"].stable_value == 0.001, "judged against the baseline, not the NaN"


def test_given_window_when_the_spec_turns_invalid_then_previous_kept_at_its_replicas_and_nothing_new_starts() -> None:
    sim, old, new = promoted({"window": "5m", "keepPrevious": {"replicas": 0}})
    d = sim.decide(invalid=INVALID, after=timedelta(seconds=30))
    assert ensures(d) == [EnsureRevision(new, Role.STABLE, 4), EnsureRevision(old, Role.PREVIOUS, 0)]
    assert d.status.stage == Stage.POST_PROMOTION


def test_given_failed_check_pending_when_window_passes_then_window_waits_for_the_next_check() -> None:
    sim, old, _ = promoted()
    sim.run_checks(4)
    d = sim.run_checks(1, bad())
    assert d.status.stage == Stage.POST_PROMOTION and "failed check(s) pending" in d.status.message
    d = sim.run_checks(1, bad())
    assert d.status.stable_revision == old


def test_given_window_when_no_check_can_run_then_it_still_ends_and_never_hits_the_progress_deadline() -> None:
    sim, _, new = promoted(progressDeadline="2m", analysis={"onMetricsUnavailable": "Hold"})
    d = sim.run_checks(6, MetricsSnapshot(available=False, error="connection refused"))
    assert d.status.stable_revision == new and d.status.stage == Stage.STABLE
    assert not [e for e in d.status.history if e.outcome == "RolledBack"]


def test_given_window_when_requeued_then_next_wake_is_the_next_check_or_window_end() -> None:
    sim, _, _ = promoted()
    assert sim.last is not None and sim.last.requeue_after == 60.0


def test_given_previous_unschedulable_when_watched_then_condition_says_so_and_promotion_stands() -> None:
    sim, old, new = promoted()
    sim.unschedulable[old.hash] = "0/3 nodes: Insufficient nvidia.com/gpu"
    d = sim.decide(after=timedelta(seconds=10))
    assert d.status.stable_revision == new and d.status.stage == Stage.POST_PROMOTION
    status, reason = cond(d.status, "PreviousWarm")
    assert (status, reason) == ("False", "NotWarm")
    warm = next(c for c in d.status.conditions if c.type == "PreviousWarm")
    assert "Insufficient nvidia.com/gpu" in warm.message and "redeploys and validates" in warm.message


def test_given_previous_not_warm_when_breach_then_previous_validated_before_it_takes_traffic() -> None:
    sim, old, new = promoted()
    sim.unschedulable[old.hash] = "Insufficient nvidia.com/gpu"
    sim.run_checks(1, bad())
    d = sim.run_checks(1, bad())
    st = d.status
    assert st.canary_revision == old and st.stage == Stage.VALIDATING and st.restoring is not None
    assert st.stable_revision == new and traffic(d)[-1].canary is None  # v2 serves until v1 is validated
    assert "once redeployed and validated" in st.history[-1].reason
    del sim.unschedulable[old.hash]
    d = sim.decide(validation=CONTRACT, after=timedelta(seconds=5))
    assert d.status.stable_revision == new  # a revision that fails validation never takes traffic
    sim2, old2, new2 = promoted()
    sim2.unschedulable[old2.hash] = "Insufficient nvidia.com/gpu"
    sim2.run_checks(2, bad())
    del sim2.unschedulable[old2.hash]
    sim2.decide(after=timedelta(seconds=5))
    d = sim2.decide(after=timedelta(seconds=5))
    st = d.status
    assert st.stable_revision == old2 and st.stage == Stage.STABLE and st.restoring is None
    assert st.failed_revision == new2 and st.phase == Phase.ROLLED_BACK
    assert st.history[-1].event == "Restored"
    assert [(r.version, r.outcome) for r in st.revisions][-2:] == [("2", "RolledBack"), ("1", None)]


def test_given_cold_previous_when_a_breach_restores_it_then_deciding_again_on_that_evidence_changes_nothing() -> None:
    """decide is a function of (status, observations): the decision that starts restoring a cold previous revision
    must already say what the restore waits for, or the next reconcile rewrites status with nothing new (found
    by hypothesis: keepPrevious.replicas 0, failureLimit 1)."""
    sim, old, _ = promoted({"window": "5m", "keepPrevious": {"replicas": 0}}, analysis={"failureLimit": 1})
    sim.now += timedelta(minutes=1)
    observations = sim.observe(bad())
    d = decide(sim.spec, sim.status, observations, sim.now)
    assert d.rolled_back is not None and d.status.canary_revision == old and d.status.restoring is not None
    assert "waiting for canary pods: 0/" in d.status.message
    again = decide(sim.spec, d.status, observations, sim.now)
    assert again.status.model_dump() == d.status.model_dump()


def test_given_a_restore_that_fails_validation_when_deciding_again_then_the_undone_revision_stays_marked() -> None:
    """The breaching revision keeps serving because its predecessor failed validation: status says so, and the
    next reconcile must not quietly turn that into Healthy (it used to clear failedRevision, stable == spec)."""
    sim, _, new = promoted({"window": "5m", "keepPrevious": {"replicas": 0}}, analysis={"failureLimit": 1})
    sim.run_checks(1, bad())
    d = sim.decide(validation=CONTRACT, after=timedelta(seconds=5))
    assert d.status.stable_revision == new and d.status.canary_revision is None
    assert (d.status.failed_revision, d.status.phase) == (new, Phase.ROLLED_BACK), d.status.message
    again = sim.decide(after=timedelta(seconds=5))
    assert (again.status.failed_revision, again.status.phase) == (new, Phase.ROLLED_BACK), again.status.message


def test_given_window_when_spec_changes_then_window_ends_and_the_new_rollout_starts() -> None:
    sim, old, _ = promoted()
    sim.change(make_spec("3", postPromotion=WINDOW))
    d = sim.decide(after=timedelta(seconds=10))
    st = d.status
    assert st.canary_revision == rev(sim.spec) and st.stage == Stage.VALIDATING
    assert st.previous_revision is None and old in st.retired_revisions
    assert any(e.event == "WindowEnded" and "new rollout" in e.reason for e in st.history)


def test_given_window_when_abort_then_back_on_previous_recorded_with_who() -> None:
    sim, old, new = promoted()
    d = sim.decide(request=req("abort", by="carol"), after=timedelta(seconds=10))
    st = d.status
    assert st.stable_revision == old and st.failed_revision == new
    assert st.history[-1].by == "carol" and st.history[-1].outcome == "RolledBack"


def test_given_post_promotion_removed_from_spec_when_watching_then_window_ends() -> None:
    sim, old, _ = promoted()
    sim.change(make_spec("2"))
    d = sim.decide(after=timedelta(seconds=10))
    assert d.status.stage == Stage.STABLE and old in d.status.retired_revisions


# --- undo ---------------------------------------------------------------------------------------------------


def test_given_warm_previous_when_undo_then_traffic_moves_at_once_and_spec_revision_is_not_retried() -> None:
    sim, old, new = promoted()
    d = sim.decide(request=req("undo", by="dave"), after=timedelta(seconds=10))
    st = d.status
    assert st.stable_revision == old and d.actions[0] == SetTraffic(old, None, 0, 0)
    assert st.failed_revision == new and st.phase == Phase.ROLLED_BACK
    entry = st.history[-1]
    assert (entry.event, entry.by, entry.outcome) == ("Undone", "dave", "Undone")
    assert [(r.version, r.outcome, r.by) for r in st.revisions][-2:] == [("2", "Undone", "modelship"),
                                                                         ("1", None, "dave")]
    d = sim.decide(request=req("retry", id_="r2"), after=timedelta(seconds=10))
    assert d.status.canary_revision == new  # retry behaves as after any rollback: a full rollout


def test_given_cold_previous_when_undo_then_redeployed_and_validated_before_taking_all_traffic() -> None:
    sim, old, new = promoted(window={"window": "1m", "keepPrevious": {"replicas": 1}})
    sim.run_checks(2)
    sim.decide(after=timedelta(seconds=30))
    assert old.hash not in sim.replicas  # scaled down and deleted after the window
    d = sim.decide(request=req("undo", to_version="1"), after=timedelta(seconds=10))
    st = d.status
    assert st.canary_revision == old and st.stage == Stage.VALIDATING and st.stable_revision == new
    assert [a for a in traffic(d) if a.canary is not None] == []
    d = sim.decide(after=timedelta(seconds=5))  # validation passed; its pods are all up: it takes 100% at once
    assert any(e.event == "Validated" for e in d.status.history[-3:])
    assert d.status.stable_revision == old and d.status.stage == Stage.STABLE
    assert traffic(d)[-1] == SetTraffic(old, None, 0, 0)
    assert d.promoted is None  # a restore is not a promotion in the operator's metrics
    assert d.status.phase == Phase.ROLLED_BACK and d.status.failed_revision == new


def test_given_unknown_version_when_undo_then_refused_with_the_known_versions() -> None:
    sim, _, new = promoted()
    d = sim.decide(request=req("undo", to_version="7"), after=timedelta(seconds=10))
    assert d.status.stable_revision == new
    reason = d.status.history[-1].reason
    assert "no revision with version 7" in reason and "earlier versions: 1" in reason


def test_given_rollout_in_progress_when_undo_then_refused_pointing_to_abort() -> None:
    sim = Sim(make_spec("1")).healthy()
    sim.change(make_spec("2"))
    sim.decide(validation=None)
    d = sim.decide(request=req("undo"), after=timedelta(seconds=5))
    ignored = next(e for e in d.status.history if e.event == "RequestIgnored")
    assert d.status.canary_revision is not None and "abort" in ignored.reason


def test_given_nothing_earlier_when_undo_then_refused() -> None:
    sim = Sim(make_spec("1")).healthy()
    d = sim.decide(request=req("undo"), after=timedelta(seconds=5))
    assert "nothing to go back to" in d.status.history[-1].reason
    assert [e.message for e in events(d)][-1].startswith("undo by alice ignored")


# --- revision history ---------------------------------------------------------------------------------------


def test_given_many_promotions_when_recorded_then_revisions_bounded_and_approver_named() -> None:
    steps = [{"weight": 10, "duration": "1m"}, {"approval": {}}]
    sim = Sim(make_spec("1", steps=steps)).healthy()
    for n in range(2, 14):
        sim.change(make_spec(str(n), steps=steps))
        sim.decide(validation=None)
        sim.decide()
        sim.run_checks(2)
        sim.decide(request=req("promote", id_=f"p{n}", by=f"user{n}"), after=timedelta(seconds=1))
        sim.decide(after=timedelta(seconds=1))
        assert sim.status.stable_revision == rev(sim.spec), sim.status.message
    revisions = sim.status.revisions
    assert len(revisions) == 10 and revisions[-1].version == "13" and revisions[-1].by == "user13"
    assert all(r.outcome == "Replaced" for r in revisions[:-1])


def test_given_status_from_an_older_operator_when_deciding_then_serving_revision_gets_an_entry() -> None:
    sim = Sim(make_spec("1")).healthy()
    sim.status.revisions = []
    d = sim.decide(after=timedelta(seconds=5))
    assert [(r.version, r.reason) for r in d.status.revisions] == [("1", "serving when revision history began")]


def test_given_first_revision_when_deployed_then_history_starts_with_it() -> None:
    sim = Sim(make_spec("1")).healthy()
    assert [(r.version, r.outcome, r.retired_at, r.reason) for r in sim.status.revisions] == [
        ("1", None, None, "first revision")]


def test_given_good_checks_when_window_is_open_then_no_rollback_ever(  # a healthy stable is never rolled back
) -> None:
    sim, _, new = promoted()
    d = sim.run_checks(5, good())
    assert d.status.stable_revision == new and d.rolled_back is None


def test_given_failed_check_pending_when_later_checks_have_no_data_then_window_ends_after_grace() -> None:
    sim, old, new = promoted()  # failureLimit 2, interval 1m: a pending failure gets 2 more minutes
    sim.run_checks(4)
    d = sim.run_checks(1, bad())
    assert d.status.stage == Stage.POST_PROMOTION
    d = sim.run_checks(1, no_data())
    assert d.status.stage == Stage.POST_PROMOTION
    d = sim.run_checks(1, no_data())
    assert d.status.stage == Stage.STABLE and d.status.stable_revision == new
    assert "did not reach failureLimit" in d.status.history[-1].reason and old in d.status.retired_revisions


# --- comparing the new stable's answers with the previous revision's in the window ------------------------------


def test_given_window_with_canary_sample_when_previous_warm_then_new_stable_compared_against_it() -> None:
    shadow = {"duration": "1m", "compare": {"canarySamplePercent": 20}}
    sim, old, new = promoted(shadow=shadow)
    d = sim.decide(after=timedelta(seconds=5))
    [comparator] = [a for a in d.actions if isinstance(a, EnsureComparator)]
    assert (comparator.canary, comparator.after_promotion, comparator.sample_percent) == (new, True, 20)
    [route] = traffic(d)
    assert route == SetTraffic(new, old, 0, 100, compared=True)  # previous answers copies, never live requests
    assert d.actions.index(comparator) < d.actions.index(route)
    assert [b.name for b in judged_slos(sim.spec, Stage.POST_PROMOTION)] == ["errorRate", "outputShift"]
    sim.unschedulable[old.hash] = "Insufficient nvidia.com/gpu"
    sim.replicas[old.hash] = 1
    d = sim.decide(after=timedelta(seconds=5))
    assert RemoveComparator() in d.actions and traffic(d)[-1] == SetTraffic(new, None, 0, 0)


def test_given_window_without_canary_sample_or_warm_pods_then_nothing_is_compared() -> None:
    shadow = {"duration": "1m"}
    sim, _, new = promoted(shadow=shadow)
    d = sim.decide(after=timedelta(seconds=5))
    assert RemoveComparator() in d.actions and traffic(d)[-1] == SetTraffic(new, None, 0, 0)
    cold = make_spec("2", shadow={"duration": "1m", "compare": {"canarySamplePercent": 20}},
                     postPromotion={"window": "5m", "keepPrevious": {"replicas": 0}})
    assert active_comparison(cold, Stage.POST_PROMOTION) is None
