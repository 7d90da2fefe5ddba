"""gpuSurge ScaleDownStable against a GPU pool that is really full: stable keeps lending GPUs while the canary
still lacks pods (one shrink per settled stable size), never below the floor of its traffic share."""

from __future__ import annotations

from datetime import timedelta

from engine_fixtures import PASSED, Sim, good, make_spec, rev
from modelship.domain.actions import EnsureRevision, Role, SetTraffic
from modelship.domain.engine import decide
from modelship.domain.observations import Observations, RevisionState
from modelship.domain.status import Phase, Stage


class Pool:
    """A scheduler over `slots` identical GPU slots: running pods keep theirs, new pods take free ones."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.placed: dict[str, int] = {}
        self.desired: dict[str, int] = {}

    def apply(self, desired: dict[str, int]) -> None:
        self.desired = dict(desired)
        self.placed = {h: min(n, self.placed.get(h, 0)) for h, n in desired.items()}  # scale-downs free slots
        for h, n in desired.items():  # then the scheduler places what fits
            free = self.slots - sum(self.placed.values())
            self.placed[h] = self.placed[h] + max(0, min(n - self.placed[h], free))

    def states(self) -> dict[str, RevisionState]:
        return {h: RevisionState(hash=h, desired_replicas=n, ready_replicas=self.placed[h],
                                 unschedulable="0/2 nodes are available: 2 Insufficient nvidia.com/gpu"
                                 if self.placed[h] < n else None)
                for h, n in self.desired.items()}


def test_given_full_pool_when_canary_needs_more_pods_at_promotion_then_stable_keeps_lending_and_promotes() -> None:
    # 3 stable pods on a 4-slot pool (6 of 8 GPUs at 2 per pod); one 50% step: the canary needs 2 pods, 1 fits.
    steps = [{"weight": 50, "duration": "1m"}]
    sim = Sim(make_spec("1", replicas=3, steps=steps, gpuSurge="ScaleDownStable")).healthy()
    sim.change(make_spec("2", replicas=3, steps=steps, gpuSurge="ScaleDownStable"))
    pool = Pool(slots=4)
    pool.apply(sim.replicas)
    stable_seen: list[tuple[str | None, int]] = []
    for _ in range(40):
        obs = sim.observe(metrics=good(), validation=PASSED)
        d = decide(sim.spec, sim.status, Observations(
            generation=obs.generation, revisions=pool.states(), validation=obs.validation, metrics=obs.metrics,
        ), sim.now)
        sim.apply(d)
        pool.apply({e.revision.hash: e.replicas for e in d.actions if isinstance(e, EnsureRevision)})
        stable = next(e.replicas for e in d.actions if isinstance(e, EnsureRevision) and e.role == Role.STABLE)
        stable_seen.append((d.status.stage, stable))
        if d.status.phase == Phase.HEALTHY and d.status.stable_revision == rev(sim.spec):
            break
        sim.now += timedelta(seconds=30)
    assert sim.status.phase == Phase.HEALTHY and sim.status.stable_revision == rev(sim.spec), stable_seen
    # While the canary takes 50%, stable keeps ceil(3 * 50%) = 2 pods; only promotion lends the last GPUs.
    assert min(n for stage, n in stable_seen if stage == Stage.CANARY) == 2, stable_seen
    assert min(n for _, n in stable_seen) >= 1, stable_seen


def stable_need(replicas: int, canary_weight: int) -> int:
    """Pods stable needs for the share it carries: ceil(replicas x (100 - weight)%), at least 1."""
    return max(1, -(-replicas * (100 - canary_weight) // 100))


def run_on_pool(replicas: int, slots: int, steps: list[dict[str, object]]) -> list[tuple[str | None, int, int]]:
    """Roll v2 out over v1 on a full pool; per decision (stage, stable replicas, weight stable carries
    while it runs at that size), checking that a shrink of stable never precedes the traffic move."""
    sim = Sim(make_spec("1", replicas=replicas, steps=steps, gpuSurge="ScaleDownStable")).healthy()
    sim.change(make_spec("2", replicas=replicas, steps=steps, gpuSurge="ScaleDownStable"))
    pool = Pool(slots=slots)
    pool.apply(sim.replicas)
    seen: list[tuple[str | None, int, int]] = []
    weight = 0
    for _ in range(80):
        obs = sim.observe(metrics=good(), validation=PASSED)
        d = decide(sim.spec, sim.status, Observations(
            generation=obs.generation, revisions=pool.states(), validation=obs.validation, metrics=obs.metrics,
        ), sim.now)
        sim.apply(d)
        pool.apply({e.revision.hash: e.replicas for e in d.actions if isinstance(e, EnsureRevision)})
        stable = next(e for e in d.actions if isinstance(e, EnsureRevision) and e.role == Role.STABLE)
        route = next(i for i, a in enumerate(d.actions) if isinstance(a, SetTraffic))
        new_weight = d.actions[route].canary_weight  # type: ignore[union-attr]
        at = d.actions.index(stable)
        # While stable runs at its new size it carries the old share if it shrank before the route moved.
        carried = weight if at < route else new_weight
        if d.status.stable_revision != rev(sim.spec):
            seen.append((d.status.stage, stable.replicas, 100 - min(carried, new_weight)))
        weight = new_weight
        if d.status.phase == Phase.HEALTHY and d.status.stable_revision == rev(sim.spec):
            break
        sim.now += timedelta(seconds=30)
    assert sim.status.phase == Phase.HEALTHY and sim.status.stable_revision == rev(sim.spec), seen
    return seen


def test_given_full_pool_when_promoting_then_stable_never_runs_below_the_share_it_carries() -> None:
    """Item 11: stable keeps what its CURRENT share needs in every stage, promotion included: the canary takes
    traffic over as its pods come up, and stable lends GPUs only for the share it no longer carries."""
    seen = run_on_pool(replicas=3, slots=4, steps=[{"weight": 50, "duration": "1m"}])
    short = [(stage, n, share) for stage, n, share in seen if n < stable_need(3, 100 - share)]
    assert not short, seen
    assert min(n for _, n, _ in seen) < 3, "stable lent GPUs"


def test_given_eight_replicas_on_a_nearly_full_pool_then_stable_never_drops_to_one_pod_while_carrying_most() -> None:
    seen = run_on_pool(replicas=8, slots=10, steps=[{"weight": 10, "duration": "1m"},
                                                     {"weight": 50, "duration": "1m"}])
    short = [(stage, n, share) for stage, n, share in seen if n < stable_need(8, 100 - share)]
    assert not short, seen
