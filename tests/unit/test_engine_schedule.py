"""When the engine asks to be back: never later than the next thing due. A reconcile that runs a little before a
step ends (the work queue starts one early by the time the last one took) must come back when the step ends;
the 1 s floor is for what is already overdue (no tight loop), not for what is due in 50 ms."""

from __future__ import annotations

from datetime import timedelta

from engine_fixtures import Sim, good, rolled_out
from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.domain.status import Stage

STEPS = [{"weight": 10, "duration": "30s"}, {"weight": 50, "duration": "30s"}]


def in_canary_step() -> Sim:
    sim = rolled_out(steps=STEPS, analysis={"interval": "10s"})
    sim.decide(validation=None)
    sim.decide()
    assert sim.status.stage == Stage.CANARY and sim.status.step == 0 and sim.status.step_started_at == sim.now
    return sim


@settings(max_examples=60, deadline=None)
@given(early_ms=st.integers(1, 999))
def test_a_step_ending_within_a_second_is_decided_when_it_ends_not_a_second_later(early_ms: int) -> None:
    """Given canary step 0 (30 s, checks every 10 s, passing), when a reconcile runs `early_ms` before it
    ends, then it asks to be back exactly at the end; and there, the step advances. (bench.fleet at 1,000
    objects: due -> decided p99 was exactly 1.000 s, the floor.)"""
    sim = in_canary_step()
    started = sim.status.step_started_at
    assert started is not None
    early = timedelta(milliseconds=early_ms)
    sim.decide(metrics=good(), after=timedelta(seconds=10))
    sim.decide(metrics=good(), after=timedelta(seconds=10))
    d = sim.decide(metrics=good(), after=timedelta(seconds=10) - early)
    assert sim.status.step == 0
    assert d.requeue_after is not None and abs(d.requeue_after - early.total_seconds()) < 1e-6
    sim.decide(metrics=good(), after=early)
    assert sim.status.step == 1
    assert sim.status.step_started_at == started + timedelta(seconds=30)


def test_what_is_overdue_is_retried_after_the_floor_not_in_a_tight_loop() -> None:
    """Given a check that is due and cannot run (no metrics offered), the engine asks again after 1 s, not 0."""
    sim = in_canary_step()
    d = sim.decide(metrics=None, after=timedelta(seconds=29))
    assert d.requeue_after is not None and d.requeue_after >= 1.0
