"""Clocks that jump (issue 8 item 8): a replica whose clock runs ahead writes status now and then; whatever it
wrote, the replica with the right clock never keeps a time in the future and never waits past the deadline."""

from __future__ import annotations

from datetime import timedelta

from engine_fixtures import Sim, few_requests, rolled_out
from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.domain.engine import decide
from modelship.domain.skew import TIMED_FIELDS
from modelship.domain.status import Stage

DEADLINE = timedelta(minutes=3)
TICK = timedelta(seconds=30)

moves = st.lists(
    st.tuples(st.booleans(), st.sampled_from([0, 5, 30, 60, 90])),  # (skewed replica decides?, seconds)
    min_size=1, max_size=25,
)


def tick(sim: Sim, skew: timedelta | None) -> None:
    """One reconcile at real time sim.now, by the replica with the right clock (skew None) or the skewed one."""
    now = sim.now + (skew or timedelta(0))
    d = decide(sim.spec, sim.status, sim.observe(metrics=few_requests()), now)
    sim.apply(d)
    if skew is None:
        for name in TIMED_FIELDS:
            value = getattr(d.status, name)
            assert value is None or value <= now, f"{name} {value} is after now {now}"
        if d.status.canary_revision is not None and not d.status.paused:
            assert d.requeue_after is not None and d.requeue_after <= DEADLINE.total_seconds()


@settings(max_examples=150, deadline=None)
@given(skew_minutes=st.integers(1, 24 * 60), moves=moves)
def test_a_canary_that_never_passes_is_rolled_back_within_the_deadline_whatever_a_skewed_clock_wrote(
    skew_minutes: int, moves: list[tuple[bool, int]]
) -> None:
    sim = rolled_out(steps=[{"weight": 20, "duration": "10m"}], progressDeadline="3m")
    skew = timedelta(minutes=skew_minutes)
    for skewed, seconds in moves:
        sim.now += timedelta(seconds=seconds)
        tick(sim, skew if skewed else None)
    # From here on only the replica with the right clock decides: the canary (never a passing check) is gone
    # within one progressDeadline (plus one tick), not after the skew.
    end = sim.now + DEADLINE + TICK
    while sim.status.canary_revision is not None and sim.now <= end:
        tick(sim, None)
        sim.now += TICK
    assert sim.status.canary_revision is None, (sim.status.stage, sim.status.progress_at, sim.now)
    assert sim.status.stage == Stage.STABLE


def test_the_skewed_replica_alone_cannot_hold_a_rollout_past_the_deadline_of_the_right_clock() -> None:
    """Given a skewed replica (1h ahead) that starts the canary step, when the right clock takes over, then the
    3m deadline counts from its own now."""
    sim = rolled_out(steps=[{"weight": 20, "duration": "10m"}], progressDeadline="3m")
    skew = timedelta(hours=1)
    tick(sim, skew)
    tick(sim, skew)
    assert sim.status.stage == Stage.CANARY and sim.status.progress_at == sim.now + skew
    for _ in range(8):
        sim.now += TICK
        tick(sim, None)
    assert sim.status.canary_revision is None
