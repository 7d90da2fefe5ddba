"""Invariants of the post-promotion window and undo over any sequence of checks, requests and pod states."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import CONTRACT, NOT_READY, PASSED, Sim, bad, good, make_spec, no_data, outage, req
from engine_invariants import check_rollback, check_round_trip, check_traffic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelship.domain.actions import SetTraffic
from modelship.domain.observations import MetricsSnapshot, ValidationReport
from modelship.domain.post_promotion import grace, window_end
from modelship.domain.status import Revision, Stage

METRICS = {"good": good, "bad": bad, "no-data": no_data, "outage": outage}
VALIDATIONS: dict[str, ValidationReport | None] = {
    "passed": PASSED, "contract": CONTRACT, "not-ready": NOT_READY, "none": None}


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "postPromotion": {"window": f"{draw(st.integers(1, 4))}m",
                          "keepPrevious": {"replicas": draw(st.integers(0, 2))}},
        "analysis": {"failureLimit": draw(st.integers(1, 3)),
                     "onNoData": draw(st.sampled_from(["Hold", "Fail"])),
                     "onMetricsUnavailable": draw(st.sampled_from(["Hold", "Fail"]))},
        "progressDeadline": draw(st.sampled_from(["3m", "15m"])),
        **({"shadow": {"duration": "1m", "compare": {"canarySamplePercent": 20}}} if draw(st.booleans()) else {}),
    }


SCRIPT = st.lists(
    st.tuples(
        st.sampled_from([0, 5, 30, 60, 60, 60]),
        st.sampled_from(list(METRICS)),
        st.sampled_from(list(VALIDATIONS)),
        st.sampled_from([None] * 8 + ["undo", "undo-to-1", "abort", "retry"]),
        st.booleans(),  # previous pods schedulable
    ),
    min_size=1, max_size=25,
)


def promoted(knobs: dict[str, Any]) -> tuple[Sim, Revision, Revision]:
    sim = Sim(make_spec("1", **knobs)).healthy()
    old = sim.status.stable_revision
    sim.change(make_spec("2", **knobs))
    sim.decide(validation=None)
    sim.decide()
    for _ in range(12):  # shadow (if any), then the step
        if sim.status.stage == Stage.POST_PROMOTION:
            break
        sim.run_checks(1)
    new = sim.status.stable_revision
    assert old is not None and new is not None and sim.status.stage == Stage.POST_PROMOTION
    return sim, old, new


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(knobs=windows(), script=SCRIPT)
def test_window_and_undo_invariants_hold_over_any_sequence(knobs: dict[str, Any], script: list[Any]) -> None:
    sim, old, new = promoted(knobs)
    spec = sim.spec
    opened = sim.now
    length = timedelta(minutes=int(knobs["postPromotion"]["window"][:-1]))
    limit = length + grace(spec)
    validated = {old.hash}  # the previous revision served before; others must pass validation as the canary
    for n, (seconds, metrics, validation, request, schedulable) in enumerate(script):
        if schedulable:
            sim.unschedulable.pop(old.hash, None)
        else:
            sim.unschedulable[old.hash] = "Insufficient nvidia.com/gpu"
        before = sim.status
        report = VALIDATIONS[validation]
        manual = None
        if request is not None:
            action = "undo" if request.startswith("undo") else request
            extra = {"to_version": "1"} if request == "undo-to-1" else {}
            manual = req(action, id_=f"q{n}", **extra)
        snapshot: MetricsSnapshot = METRICS[metrics]()
        ready_before = {h for h, count in sim.replicas.items() if count > 0 and h not in sim.unschedulable}
        d = sim.decide(metrics=snapshot, validation=report, request=manual, after=timedelta(seconds=seconds))
        after = d.status
        check_traffic(d)
        check_rollback(d)
        check_round_trip(after)
        # the window never brings a progress-deadline rollback, and never outlives window + failureLimit checks
        assert not (before.stage == Stage.POST_PROMOTION and d.rolled_back == "ProgressDeadline")
        if after.stage == Stage.POST_PROMOTION:
            assert sim.now - opened <= limit, f"window still open {sim.now - opened} after promotion"
            assert window_end(spec, after) == opened + length
        # a breach (failureLimit failed checks) in the window always ends on the previous revision
        if before.stage == Stage.POST_PROMOTION and d.rolled_back == "AnalysisFailed":
            assert after.stable_revision == old or (after.canary_revision == old and after.restoring is not None)
            assert after.failed_revision == new and after.previous_revision is None
        # a revision takes all traffic only warm (ready pods, it served before) or once validated as a canary
        if before.canary_revision is not None and before.stage == Stage.VALIDATING and report is PASSED:
            validated.add(before.canary_revision.hash)
        target = after.stable_revision
        if target is not None and target != before.stable_revision:
            assert target.hash in ready_before or target.hash in validated, (
                f"{target.version} took all traffic cold and unvalidated")
        for action in d.actions:
            if isinstance(action, SetTraffic) and after.stage == Stage.POST_PROMOTION:
                assert action.canary_weight == 0, "in the window only the new stable takes live requests"
            if isinstance(action, SetTraffic) and action.canary is not None and (
                    action.canary_weight > 0 or action.mirror_percent > 0):
                assert action.canary.hash in validated, f"traffic on unvalidated {action.canary.version}"
