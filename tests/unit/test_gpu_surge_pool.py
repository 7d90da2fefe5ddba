"""gpuSurge ScaleDownStable against a GPU pool that is really full: stable keeps lending GPUs while the canary
still lacks pods (one shrink per settled stable size), never below the floor of its traffic share."""

from __future__ import annotations

from datetime import timedelta

from engine_fixtures import PASSED, Sim, good, make_spec, rev
from modelship.domain.actions import EnsureRevision, Role
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
