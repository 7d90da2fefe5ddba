"""Targeted properties of the guard (issue 8): each drives one hostile input straight at a live rollout.

The state machine in test_guard_properties.py mixes everything; these pin one promise each, with inputs wide
enough that a regression cannot hide behind a lucky sequence: non-finite metrics never pass (item 14), a
clock that ran ahead neither suspends checks nor the progress deadline (item 8), and ignored or replayed
requests never evict an outcome record nor run twice (item 6).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from engine_fixtures import MIN, Sim, few_requests, good, rolled_out
from engine_invariants import check_outcomes_kept, check_serialises, is_outcome, non_finite_evidence
from engine_strategies import GOOD, SLO_SETS, healthy
from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.status import ManualRequest, Stage, Verdict
from pydantic import ValidationError

DETERMINISTIC = settings(max_examples=60, deadline=None, derandomize=True, database=None)
NON_FINITE = [math.nan, math.inf, -math.inf]
SKEWED_FIELDS = ["step_started_at", "progress_at", "last_check_at", "stage_started_at", "rollout_started_at"]


def at_first_step(slo: str = "errorRate") -> Sim:
    """A v2 canary at 50% for 10m, one passing check behind it (progressDeadline 15m, interval 1m)."""
    sim = rolled_out(steps=[{"weight": 50, "duration": "10m"}], slo=SLO_SETS[slo])
    sim.decide()
    sim.decide(metrics=healthy())
    sim.decide(metrics=healthy(), after=MIN)
    assert sim.status.stage == Stage.CANARY and sim.status.last_analysis is not None
    return sim


@st.composite
def poisoned(draw: st.DrawFn) -> tuple[str, MetricsSnapshot]:
    """An SLO set and a healthy-looking snapshot with at least one NaN/Inf where that set judges it."""
    slo = draw(st.sampled_from(list(SLO_SETS)))
    values = {name: MetricValue(canary=c, stable=s) for name, (c, s) in GOOD.items()}
    requests = 500.0
    spot = draw(st.sampled_from(["requests", "canary", "stable"]))
    bad = draw(st.sampled_from(NON_FINITE))
    names = {"errorRate", "latencyP99Ms", "score"}
    name = draw(st.sampled_from(sorted(names)))
    if spot == "requests":
        requests = bad
    elif spot == "canary":
        values[name] = MetricValue(canary=bad, stable=values[name].stable)
    else:
        values[name] = MetricValue(canary=values[name].canary, stable=bad)
    return slo, MetricsSnapshot(available=True, canary_requests=requests, values=values)


@DETERMINISTIC
@given(case=poisoned())
def test_non_finite_metrics_are_never_a_pass_and_status_stays_strict_json(case: tuple[str, MetricsSnapshot]) -> None:
    slo, snapshot = case
    sim = at_first_step(slo)
    bad = non_finite_evidence(sim.spec, snapshot)
    before = sim.status.passed_checks
    d = sim.decide(metrics=snapshot, after=MIN)
    check_serialises(d.status)
    assert d.status.last_check_at == sim.now
    if bad:
        assert d.status.last_analysis is not None
        assert d.status.last_analysis.verdict != Verdict.PASS, f"Pass on {bad}"
        assert d.status.passed_checks == before


@DETERMINISTIC
@given(skew=st.integers(5, 24 * 60).map(lambda m: timedelta(minutes=m)),
       fields=st.sets(st.sampled_from(SKEWED_FIELDS), min_size=1))
def test_status_times_in_the_future_neither_suspend_checks_nor_the_deadline(
    skew: timedelta, fields: set[str]
) -> None:
    """A replica whose clock ran ahead wrote the times: checks resume within an interval or two, and a
    canary that stops progressing is rolled back within progressDeadline of now, not of the future."""
    sim = at_first_step()
    sim.status = sim.status.model_copy(update={f: getattr(sim.status, f) + skew for f in fields
                                               if getattr(sim.status, f) is not None})
    skewed_at = sim.now
    checks = 0
    while sim.status.canary_revision is not None and sim.now - skewed_at <= timedelta(minutes=30):
        before = sim.status.last_check_at
        sim.decide(metrics=few_requests(), after=MIN)
        checks += int(sim.status.last_check_at != before)
        if sim.now - skewed_at == 2 * MIN:
            assert checks >= 1, f"no SLO check within 2 intervals of times {skew} in the future ({sorted(fields)})"
    took = sim.now - skewed_at
    assert sim.status.canary_revision is None, "never rolled back"
    assert took <= timedelta(minutes=15) + MIN, (
        f"rolled back {took} after the skew, progressDeadline is 15m (times were {skew} ahead: {sorted(fields)})"
    )
    assert any(h.event == "RolledBack" for h in sim.status.history)


def request(number: int, action: str, sim: Sim, by: str = "", age: timedelta = timedelta(0)) -> dict[str, Any]:
    at = (sim.now - age).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"id": f"r{number}", "action": action, "by": by or f"user-{number}", "at": at}


@DETERMINISTIC
@given(actions=st.lists(st.sampled_from(["pause", "resume", "promote", "promote-full", "abort"]),
                        min_size=20, max_size=60),
       replays=st.lists(st.integers(0, 59), max_size=20), by_size=st.sampled_from([8, 256, 4096, 200 * 1024]))
def test_ignored_and_replayed_requests_never_evict_outcomes_nor_run_twice(
    actions: list[str], replays: list[int], by_size: int
) -> None:
    """After a rollback (an outcome record), a flood of requests that cannot apply, old ones re-sent among
    them, some with huge `by`: the outcome stays in history, nothing runs again, status stays small."""
    sim = at_first_step()
    sim.decide(request=ManualRequest.model_validate(request(0, "abort", sim)), after=MIN)
    assert sim.status.canary_revision is None
    outcomes = [h for h in sim.status.history if is_outcome(h)]
    assert outcomes, "the abort left no outcome record"
    sent = [request(n + 1, action, sim, by=f"user-{n + 1}-" + "x" * by_size) for n, action in enumerate(actions)]
    order = [*sent, *(sent[i % len(sent)] for i in replays)]
    for raw in order:
        try:
            parsed = ManualRequest.model_validate(raw)
        except ValidationError:
            continue  # refused on parse: the controller drops an unreadable request
        before = sim.status
        d = sim.decide(request=parsed, after=timedelta(seconds=5))
        check_outcomes_kept(before, d.status)
        check_serialises(d.status)
        assert d.status.canary_revision is None and d.status.stage == Stage.STABLE
    kept = {h.model_dump_json() for h in sim.status.history}
    assert all(h.model_dump_json() in kept for h in outcomes), "an outcome record left history"


@DETERMINISTIC
@given(action=st.sampled_from(["pause", "promote-full", "abort"]), others=st.integers(1, 5),
       delay=st.sampled_from([timedelta(seconds=5), MIN, 10 * MIN]))
def test_a_handled_request_resent_after_others_is_not_run_again(action: str, others: int, delay: timedelta) -> None:
    """An old annotation comes back (re-applied manifest, retried kubectl) after newer requests ran."""
    sim = at_first_step()
    first = ManualRequest.model_validate(request(0, action, sim))
    sim.decide(request=first, after=timedelta(seconds=1))
    for n in range(1, others + 1):
        sim.decide(request=ManualRequest.model_validate(request(n, "resume", sim)), after=delay)
    before = sim.status
    d = sim.decide(request=first, after=delay)
    seen = {h.model_dump_json() for h in before.history}
    ran = [h.event for h in d.status.history if h.model_dump_json() not in seen and h.event != "RequestIgnored"
           and h.by is not None and h.by.split(" ")[0] == first.by]
    assert not ran, f"{action} {first.id} ran again when re-sent: {ran}"
    assert d.status.paused == before.paused or action != "pause"
    assert d.status.promote_full == before.promote_full or action != "promote-full"


def test_healthy_canary_is_judged_on_every_slo_set() -> None:
    """The generators' healthy snapshot passes every SLO set (else the properties above prove nothing)."""
    for slo in SLO_SETS:
        d = at_first_step(slo).decide(metrics=healthy(), after=MIN)
        assert d.status.last_analysis is not None and d.status.last_analysis.verdict == Verdict.PASS, slo
    assert good().available
