"""Pure engine cost: `decide` through whole rollouts of many varied ModelDeployments.

Every object bootstraps version 1, then rolls out version 2 through validation, an optional shadow stage,
1-4 canary steps (some with an approval gate, promoted by a synthetic `kubectl modelship promote`) and
promotion; one object in five gets breaching metrics and rolls back. A single manual clock jumps to the
next object due (by each decision's `requeue_after`), so all rollouts are in flight together as they
would be in one operator. Pods become ready a few simulated seconds after they are asked for.

Only the `decide` call is timed. A second pass under tracemalloc reports the peak Python allocation of
the whole run (all specs and statuses alive at once), so the timing pass is not slowed by tracing.

    python -m bench.decide [--objects 1000] [--quick] [--seed 1]
"""

from __future__ import annotations

import heapq
import random
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship.domain.actions import DeleteRevision, EnsureRevision
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.engine import analysis_due, decide, validation_due
from modelship.domain.observations import Observations, RevisionState, ValidationReport
from modelship.domain.status import ManualRequest, ModelDeploymentStatus, Phase, Stage

from bench.common import in_process_options, snapshot, summary_ms, table, varied_spec, write_results

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POD_READY_AFTER = timedelta(seconds=4)
IDLE = 60.0
MAX_DECISIONS_PER_OBJECT = 500
PASSED = ValidationReport(passed=True, pods_checked=1)


@dataclass
class Sim:
    """One ModelDeployment as the controller would see it: spec, status and obedient pods."""

    index: int
    raw: dict[str, Any]
    spec: ModelDeploymentSpec
    healthy_canary: bool
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    generation: int = 1
    pods: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    """revision hash -> (replicas, when they were asked for)"""
    decisions: int = 0
    outcome: str = ""

    def observe(self, now: datetime) -> Observations:
        revisions = {
            h: RevisionState(hash=h, desired_replicas=n, ready_replicas=n if now - at >= POD_READY_AFTER else 0)
            for h, (n, at) in self.pods.items()
        }
        st = self.status
        request = None
        if st.awaiting_approval:
            request = ManualRequest(id=f"approve-{self.generation}-{st.step}", action="promote", by="bench")
        return Observations(
            generation=self.generation,
            revisions=revisions,
            validation=PASSED if validation_due(st) else None,
            metrics=snapshot(self.raw["slo"], self.healthy_canary) if analysis_due(self.spec, st, now) else None,
            request=request,
        )

    def apply(self, actions: list[Any], now: datetime) -> None:
        for action in actions:
            if isinstance(action, EnsureRevision):
                n, at = self.pods.get(action.revision.hash, (0, now))
                self.pods[action.revision.hash] = (action.replicas, at if n == action.replicas else now)
            elif isinstance(action, DeleteRevision):
                self.pods.pop(action.revision_hash, None)

    def finished(self) -> bool:
        """Version 2 is stable or rolled back, and nothing retired waits for scale-down."""
        st = self.status
        if self.generation < 2 or st.canary_revision is not None or st.retired_revisions:
            return False
        return st.phase in (Phase.HEALTHY, Phase.ROLLED_BACK) and st.stage == Stage.STABLE


def build(n: int, seed: int) -> list[Sim]:
    rng = random.Random(seed)
    sims = []
    for i in range(n):
        raw = varied_spec(i, "1", rng)
        sims.append(Sim(i, raw, ModelDeploymentSpec.model_validate(raw), healthy_canary=i % 5 != 4))
    return sims


def run(sims: list[Sim]) -> tuple[list[float], list[float], float]:
    """Drive every rollout to its end; returns per-decision wall and CPU times (s) and the simulated span (s).

    CPU time (this thread's) is what a decision costs; wall time also holds whatever else the machine ran.
    """
    latencies: list[float] = []
    cpu: list[float] = []
    heap: list[tuple[datetime, int]] = [(T0 + timedelta(milliseconds=i), i) for i in range(len(sims))]
    heapq.heapify(heap)
    now = T0
    while heap:
        now, i = heapq.heappop(heap)
        sim = sims[i]
        obs = sim.observe(now)
        started, started_cpu = time.perf_counter(), time.thread_time()
        decision = decide(sim.spec, sim.status, obs, now)
        latencies.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
        sim.decisions += 1
        sim.status = decision.status
        sim.apply(decision.actions, now)
        st = sim.status
        if sim.generation == 1 and st.phase == Phase.HEALTHY:
            sim.raw = {**sim.raw, "model": {**sim.raw["model"], "version": "2"}}
            sim.spec = ModelDeploymentSpec.model_validate(sim.raw)
            sim.generation = 2
            heapq.heappush(heap, (now + timedelta(seconds=1), i))
            continue
        if sim.finished():
            sim.outcome = str(st.phase)
            continue
        if sim.decisions >= MAX_DECISIONS_PER_OBJECT:
            sim.outcome = f"stuck:{st.phase}/{st.stage}"
            continue
        wait = decision.requeue_after if decision.requeue_after is not None else IDLE
        heapq.heappush(heap, (now + timedelta(seconds=wait), i))
    return latencies, cpu, (now - T0).total_seconds()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    n, seed = in_process_options("bench.decide", __doc__, argv)

    sims = build(n, seed)
    wall = time.perf_counter()
    latencies, cpu, span = run(sims)
    wall = time.perf_counter() - wall

    tracemalloc.start()
    traced = build(n, seed)
    run(traced)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    outcomes: dict[str, int] = {}
    for sim in sims:
        outcomes[sim.outcome] = outcomes.get(sim.outcome, 0) + 1
    decided = sum(latencies)
    figures: dict[str, Any] = {
        "objects": n,
        "decisions": len(latencies),
        "decisions_per_object_mean": len(latencies) / n,
        **{f"decide_{k}": v for k, v in summary_ms(latencies).items()},
        **{f"decide_cpu_{k}": v for k, v in summary_ms(cpu).items() if k in ("p50_ms", "p99_ms", "max_ms")},
        "decisions_per_s": len(latencies) / decided if decided else 0.0,
        "bench_wall_s": wall,
        "simulated_span_s": span,
        "tracemalloc_peak_mib": peak / 2**20,
        "tracemalloc_retained_mib": retained / 2**20,
        "outcomes": outcomes,
    }
    print(table(figures.items(), f"decide: {n} ModelDeployments through whole rollouts (pure engine)"))
    print(f"  bar: step decision p99 < 1000 ms -> {'met' if figures['decide_p99_ms'] < 1000 else 'MISSED'}")
    print(f"  results: {write_results('decide', figures)}")
    return figures


if __name__ == "__main__":
    main()
