"""Invariants every `decide` result must keep, shared by the engine and guard property tests.

Each check takes what one decision saw and produced and fails with the broken promise in words: traffic
weights, rollback routing, earned promotions, the audit trail, the wire form and replay.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime

from modelship.domain.actions import EmitEvent, EnsureRevision, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.engine import Decision, decide
from modelship.domain.observations import MetricsSnapshot, Observations
from modelship.domain.status import HistoryEntry, ModelDeploymentStatus, Stage, Verdict

STATUS_LIMIT_BYTES = 256 * 1024
"""What etcd and the API server accept for a whole object, with room to spare: status alone stays below it."""
OUTCOMES = frozenset({"Promoted", "RolledBack", "Failed", "Aborted", "Superseded", "Abandoned"})
JUDGED = (Stage.SHADOW, Stage.CANARY)


def check_traffic(d: Decision) -> None:
    """Weights in range and summing to 100; a route without a canary sends it nothing."""
    for a in d.actions:
        if isinstance(a, SetTraffic):
            assert 0 <= a.canary_weight <= 100 and 0 <= a.stable_weight <= 100
            assert a.canary_weight + a.stable_weight == 100
            assert 0 <= a.mirror_percent <= 100
            assert a.canary is not None or (a.canary_weight == 0 and a.mirror_percent == 0)
        if isinstance(a, EnsureRevision):
            assert a.replicas >= 0


def check_round_trip(status: ModelDeploymentStatus) -> None:
    wire = status.model_dump(by_alias=True, mode="json")
    again = ModelDeploymentStatus.model_validate(wire)
    assert again.model_dump(by_alias=True, mode="json") == wire


def check_serialises(status: ModelDeploymentStatus) -> None:
    """Strict JSON (no NaN/Infinity, which the API server refuses) and small enough to patch."""
    wire = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    text = json.dumps(wire, allow_nan=False)  # raises ValueError on NaN/Infinity
    size = len(text.encode())
    assert size < STATUS_LIMIT_BYTES, f"status is {size} bytes, over {STATUS_LIMIT_BYTES}"


def check_rollback(d: Decision) -> None:
    if not any(isinstance(a, EmitEvent) and a.reason == "RolledBack" for a in d.actions):
        return
    first = next(a for a in d.actions if isinstance(a, SetTraffic))
    assert isinstance(d.actions[0], SetTraffic)
    assert first.canary_weight == 0 and first.mirror_percent == 0 and first.canary is None
    assert d.status.canary_weight == 0 and d.status.mirror_percent == 0


def check_canary_leaves_first(before: ModelDeploymentStatus, d: Decision) -> None:
    """A canary that leaves without being promoted (rollback, abort, supersede, abandon): 100% to stable,
    and the route is the first thing applied."""
    old = before.canary_revision
    if old is None:
        return
    new = d.status.canary_revision
    promoted = d.status.stable_revision is not None and d.status.stable_revision.hash == old.hash
    if (new is not None and new.hash == old.hash) or promoted:
        return
    assert d.actions and isinstance(d.actions[0], SetTraffic), f"canary left but first action is {d.actions[:1]}"
    first = d.actions[0]
    assert first.canary is None and first.canary_weight == 0 and first.mirror_percent == 0


def check_replay(spec: ModelDeploymentSpec, obs: Observations, d: Decision, now: datetime) -> None:
    again = decide(spec, d.status, obs, now)
    assert again.status.model_dump() == d.status.model_dump()
    assert not [a for a in again.actions if isinstance(a, EmitEvent)]


def check_step_allowance(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> None:
    """In a canary step the weight never exceeds what the spec's current step allows (item 10)."""
    if status.stage != Stage.CANARY or status.canary_revision is None:
        return
    steps = spec.rollout.canary.steps
    assert status.step is not None and 0 <= status.step < len(steps), f"step {status.step} of {len(steps)}"
    allowed = next((s.weight for s in reversed(steps[: status.step + 1]) if s.weight is not None), 0)
    assert status.canary_weight <= allowed, (
        f"canary at {status.canary_weight}% but step {status.step + 1}/{len(steps)} allows {allowed}%"
    )


def _key(entry: HistoryEntry) -> str:
    return entry.model_dump_json()


def is_outcome(entry: HistoryEntry) -> bool:
    return entry.outcome in OUTCOMES or entry.event in OUTCOMES


def check_outcomes_kept(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> None:
    """Outcome records leave history only by age: the oldest go first, and only to make room for newer
    outcomes (never for ignored requests or other chatter)."""
    old = [e for e in before.history if is_outcome(e)]
    new = [e for e in after.history if is_outcome(e)]
    removed = Counter(map(_key, old)) - Counter(map(_key, new))
    added = Counter(map(_key, new)) - Counter(map(_key, old))
    if not removed:
        return
    lost = [e for e in old if _key(e) in removed]
    assert sum(removed.values()) <= sum(added.values()), (
        f"outcome records evicted without newer outcomes: {[(e.event, e.outcome, e.reason) for e in lost]}; "
        f"added in this decision: {[(e.event, e.reason[:60]) for e in after.history[len(before.history):]]}"
    )
    oldest = old[: len(lost)]
    assert [_key(e) for e in lost] == [_key(e) for e in oldest], "a newer outcome record left before older ones"


def non_finite_evidence(spec: ModelDeploymentSpec, snapshot: MetricsSnapshot, *, stable_measured: bool = True
                        ) -> list[str]:
    """What in this snapshot is NaN or infinite and would be judged for this spec (item 14).

    stable_measured=False: after promotion the stable column is the baseline from status, not this snapshot's."""
    slo = spec.slo
    declared: dict[str, bool] = {}
    for name, bound in (("errorRate", slo.error_rate), ("latencyP99Ms", slo.latency_p99_ms),
                        ("latencyP95Ms", slo.latency_p95_ms), ("queueP99Ms", slo.queue_p99_ms)):
        if bound is not None:
            declared[name] = bound.max_ratio_to_stable is not None
    declared.update({c.name: False for c in slo.custom})
    if not declared:
        declared["errorRate"] = False  # the default bound
    found = []
    if not snapshot.available:
        return found
    if snapshot.canary_requests is not None and not math.isfinite(snapshot.canary_requests):
        found.append(f"canary_requests={snapshot.canary_requests}")
    for name, ratio in declared.items():
        mv = snapshot.values.get(name)
        if mv is None or mv.error:
            continue
        if mv.canary is not None and not math.isfinite(mv.canary):
            found.append(f"{name}.canary={mv.canary}")
        if ratio and stable_measured and mv.stable is not None and not math.isfinite(mv.stable):
            found.append(f"{name}.stable={mv.stable}")
    return found


def check_non_finite_never_passes(
    spec: ModelDeploymentSpec, obs: Observations, before: ModelDeploymentStatus, after: ModelDeploymentStatus
) -> None:
    """A check that ran on NaN/Inf evidence is never a Pass (item 14)."""
    if obs.metrics is None or after.last_check_at == before.last_check_at or after.last_analysis is None:
        return
    bad = non_finite_evidence(spec, obs.metrics, stable_measured=before.stage != Stage.POST_PROMOTION)
    if bad:
        assert after.last_analysis.verdict != Verdict.PASS, f"judged Pass on non-finite evidence: {bad}"


def check_promotion_earned(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> None:
    """Promoting starts (and a promotion completes) only with the latest check passed (items 9, 10)."""
    entered = before.stage in JUDGED and after.stage == Stage.PROMOTING and (
        after.canary_revision is not None and before.canary_revision is not None
        and after.canary_revision.hash == before.canary_revision.hash)
    canary = before.canary_revision
    promoted = canary is not None and after.stable_revision is not None and after.stable_revision.hash == canary.hash
    if entered or (promoted and before.stage in JUDGED):
        last = after.last_analysis
        assert last is not None and last.verdict == Verdict.PASS, (
            f"left {before.stage} step {before.step} for promotion with latest check "
            f"{None if last is None else last.verdict}"
        )


ORDER = {Stage.VALIDATING: 0, Stage.SHADOW: 1, Stage.CANARY: 2, Stage.PROMOTING: 3}


class PassTracker:
    """Counts passing checks per judged period to check that every forward exit was earned.

    A period is (canary, stage, step); its start time may move (a future timestamp treated as now) without
    ending it. Moving forward (a later stage, a later step, promotion) out of a judged weight step or shadow
    needs a passing check in that period and a passing latest check.
    """

    def __init__(self) -> None:
        self.passes = 0

    def observe(
        self, spec: ModelDeploymentSpec, old: ModelDeploymentStatus, new: ModelDeploymentStatus
    ) -> None:
        checked = new.last_check_at != old.last_check_at and new.last_analysis is not None
        passed_now = checked and new.last_analysis is not None and new.last_analysis.verdict == Verdict.PASS
        canary = old.canary_revision
        same_canary = canary is not None and new.canary_revision is not None and new.canary_revision == canary
        if same_canary and (new.stage, new.step) == (old.stage, old.step):
            self.passes += int(passed_now)
            return
        # A restore (undo, or a failed post-promotion watch) brings back a revision on validation alone: it is not
        # a promotion judged by analysis.
        promoted = canary is not None and new.stable_revision == canary and old.restoring is None
        later_stage = ORDER.get(Stage(new.stage), -1) > ORDER.get(Stage(old.stage), -1) if (
            new.stage and old.stage) else False
        later_step = new.stage == old.stage == Stage.CANARY and (new.step or 0) > (old.step or 0)
        forward = promoted or (same_canary and (later_stage or later_step))
        steps = spec.rollout.canary.steps
        index = min(max(old.step or 0, 0), len(steps) - 1)
        judged_weight_step = old.stage == Stage.SHADOW or (
            old.stage == Stage.CANARY and old.step is not None and steps[index].weight is not None
        )
        if forward and judged_weight_step:
            assert self.passes + int(passed_now) >= 1, (
                f"left {old.stage} step {old.step} for {new.stage} step {new.step} without a passing check in it"
            )
            assert new.last_analysis is not None and new.last_analysis.verdict == Verdict.PASS
        if promoted:
            assert new.last_analysis is not None and new.last_analysis.verdict == Verdict.PASS
        self.passes = 0
