"""State transitions of a rollout, each recorded once: history entry plus Kubernetes Event.

`Ctx` carries one `decide` call: the inputs, the status being built (a deep copy, never the caller's) and the
events produced. Transitions only change status; the desired EnsureRevision/SetTraffic actions are derived
from the resulting status afterwards (see `desired.py`), so they are re-emitted on every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelship.domain.actions import EmitEvent, EventType
from modelship.domain.analysis import evidence
from modelship.domain.api import CanaryStep, ModelDeploymentSpec
from modelship.domain.durations import parse_duration
from modelship.domain.observations import Observations, RevisionState
from modelship.domain.revisions import OPERATOR, close_revision, open_revision
from modelship.domain.status import (
    HISTORY_LIMIT,
    HISTORY_REASON_MAX,
    IGNORED_HISTORY_LIMIT,
    OUTCOME_HISTORY_LIMIT,
    AnalysisRecord,
    HistoryEntry,
    ModelDeploymentStatus,
    Revision,
    Stage,
    Verdict,
)


@dataclass
class Ctx:
    """Inputs and outputs of one decision in progress."""

    spec: ModelDeploymentSpec
    obs: Observations
    now: datetime
    st: ModelDeploymentStatus
    events: list[EmitEvent] = field(default_factory=list)
    traffic_first: bool = False
    """Traffic leaves a revision in this decision: SetTraffic goes before any other action."""
    hold: str | None = None
    """Why the rollout is waiting, for the status message and Progressing condition."""
    hold_reason: str | None = None
    cause: str | None = None
    """Machine-readable rollback cause (Degraded condition reason): AnalysisFailed, ValidationFailed,
    ProgressDeadline, Aborted, Unschedulable; DeployFailed for a first revision that never came up."""
    blocked: bool = False
    """A transition was due but waits for the newest spec to become valid: exempt from the deadline, like a
    pause (the canary is not failing, the user's spec is)."""
    checked: AnalysisRecord | None = None
    """The SLO check counted in this decision (each check is in exactly one decision)."""
    rolled_back: str | None = None
    """Cause of a rollback taken in this decision."""
    promoted: Revision | None = None
    """Revision promoted to stable in this decision."""

    def seconds(self, text: str) -> timedelta:
        return parse_duration(text)

    def state(self, rev: Revision | None) -> RevisionState | None:
        return None if rev is None else self.obs.revisions.get(rev.hash)

    def ready_pods(self, rev: Revision | None) -> int:
        """Ready pods of `rev` as observed (0 when its Deployment is not seen)."""
        state = self.state(rev)
        return 0 if state is None else state.ready_replicas

    def record(
        self, event: str, reason: str, message: str, *, outcome: str | None = None, by: str | None = None,
        revision: Revision | None = None, warning: bool = False, stage: Stage | None = None,
        request: str | None = None,
    ) -> None:
        """Append a bounded history entry (at `stage`, default the current one) and emit the matching Event."""
        st = self.st
        message = clip(message, HISTORY_REASON_MAX)
        rev = revision or st.canary_revision or st.stable_revision
        if rev is not None:
            st.history.append(HistoryEntry(
                revision=rev.hash, version=rev.version, event=event, stage=stage or st.stage, outcome=outcome,
                reason=message, by=by or OPERATOR, request=request, time=self.now,
            ))
            st.history = trim_history(st.history)
        self.events.append(EmitEvent(EventType.WARNING if warning else EventType.NORMAL, reason, message))


IGNORED = "Ignored"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut (status and Events stay bounded)."""
    if len(text) <= limit:
        return text
    marker = f"... ({len(text) - limit} more characters cut)"
    return text[: max(0, limit - len(marker))] + marker


HISTORY_BUDGETS = {IGNORED: IGNORED_HISTORY_LIMIT, "outcome": OUTCOME_HISTORY_LIMIT, "progress": HISTORY_LIMIT}
"""How many entries of each kind history keeps: ignored requests, outcomes and progress apart."""


def _kind(entry: HistoryEntry) -> str:
    return IGNORED if entry.outcome == IGNORED else "outcome" if entry.outcome is not None else "progress"


def trim_history(history: list[HistoryEntry]) -> list[HistoryEntry]:
    """Drop the oldest entries of each kind beyond its budget; order is kept. An outcome leaves only by age,
    pushed out by newer outcomes, never by ignored requests or progress entries."""
    kept: list[HistoryEntry] = []
    seen: dict[str, int] = {}
    for entry in reversed(history):
        kind = _kind(entry)
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= HISTORY_BUDGETS[kind]:
            kept.append(entry)
    kept.reverse()
    return kept


def steps(ctx: Ctx) -> list[CanaryStep]:
    return list(ctx.spec.rollout.canary.steps)


def step_index(ctx: Ctx) -> int:
    """Current step, clamped: a spec edit that removes steps must not skip the remaining ones."""
    return min(max(ctx.st.step or 0, 0), len(steps(ctx)) - 1)


def held_weight(ctx: Ctx, index: int) -> int:
    """Weight in force at a step: its own, or the last weight step before an approval gate."""
    for step in reversed(steps(ctx)[: index + 1]):
        if step.weight is not None:
            return step.weight
    return 0


def retire(ctx: Ctx, rev: Revision | None) -> None:
    """Traffic has left `rev`: scale it down after scaleDownDelay."""
    st = ctx.st
    if rev is None or any(r.hash == rev.hash for r in st.retired_revisions):
        return
    if st.stable_revision and rev.hash == st.stable_revision.hash:
        return
    st.retired_revisions.append(rev)
    st.retired_at = ctx.now


def unretire(ctx: Ctx, rev: Revision) -> None:
    ctx.st.retired_revisions = [r for r in ctx.st.retired_revisions if r.hash != rev.hash]


def reset_rollout(ctx: Ctx) -> None:
    st = ctx.st
    ctx.hold = ctx.hold_reason = None
    st.step = None
    st.canary_weight = 0
    st.mirror_percent = 0
    st.paused = False
    st.awaiting_approval = False
    st.promote_full = False
    st.consecutive_failures = 0
    st.passed_checks = 0
    st.stable_replicas = None
    st.restoring = None


def _enter_period(ctx: Ctx) -> None:
    st = ctx.st
    st.step_started_at = ctx.now
    st.progress_at = ctx.now
    st.passed_checks = 0


def start_rollout(ctx: Ctx, desired: Revision) -> None:
    """Begin rolling out `desired`; a canary already running is superseded (traffic back to stable first)."""
    st = ctx.st
    old = st.canary_revision
    if old is not None:
        ctx.traffic_first = True
        ctx.record("Superseded", "Superseded", f"canary {old.version} ({old.hash}) superseded by "
                   f"{desired.version} ({desired.hash}) after a spec change",
                   outcome="Superseded", revision=old)
        retire(ctx, old)
    if st.stage == Stage.POST_PROMOTION:
        end_window(ctx, f"a new rollout ({desired.version}) started")
    reset_rollout(ctx)
    unretire(ctx, desired)
    st.canary_revision = desired
    st.failed_revision = None
    st.stage = Stage.VALIDATING
    st.rollout_started_at = st.stage_started_at = ctx.now
    st.last_check_at = None
    st.last_analysis = None
    _enter_period(ctx)
    stable = st.stable_revision
    ctx.record("Started", "RolloutStarted", f"rolling out version {desired.version} ({desired.hash}) over "
               f"{stable.version if stable else 'nothing'}: validating")


def start_bootstrap(ctx: Ctx, desired: Revision) -> None:
    """No stable yet: the first revision is deployed directly as stable (nothing to compare it against)."""
    st = ctx.st
    previous = st.stable_revision
    if previous is not None and previous.hash != desired.hash:
        st.stable_revision = None
        retire(ctx, previous)
    reset_rollout(ctx)
    unretire(ctx, desired)
    st.stable_revision = desired
    st.canary_revision = None
    st.failed_revision = None
    st.stage = Stage.VALIDATING
    st.rollout_started_at = st.stage_started_at = ctx.now
    _enter_period(ctx)
    ctx.record("Started", "RolloutStarted", f"deploying first revision {desired.version} ({desired.hash})")


def enter_stage(ctx: Ctx, stage: Stage, message: str) -> None:
    ctx.st.stage = stage
    ctx.st.stage_started_at = ctx.now
    _enter_period(ctx)
    ctx.record("StageChanged", "StageChanged", message)


def enter_shadow(ctx: Ctx, mirror: int) -> None:
    st = ctx.st
    st.step = None
    st.canary_weight = 0
    st.mirror_percent = mirror
    shadow = ctx.spec.rollout.shadow
    where = ("the comparator, which asks stable and canary and compares their answers"
             if shadow is not None and shadow.compare.enabled else "the canary")
    enter_stage(ctx, Stage.SHADOW, f"shadow: mirroring {mirror}% of live traffic to {where}")


def enter_step(ctx: Ctx, index: int) -> None:
    """Move to canary step `index` (approval steps keep the previous weight and wait for a human)."""
    st = ctx.st
    first = st.stage != Stage.CANARY
    st.step = index
    st.mirror_percent = 0
    st.canary_weight = held_weight(ctx, index)
    step = steps(ctx)[index]
    st.awaiting_approval = False
    total = len(steps(ctx))
    if step.approval is not None:
        text = f"step {index + 1}/{total}: waiting for approval at {st.canary_weight}%"
    else:
        text = f"step {index + 1}/{total}: {step.weight}% for {step.duration}"
    if first:
        enter_stage(ctx, Stage.CANARY, "canary " + text)
    else:
        _enter_period(ctx)
        ctx.record("StageChanged", "StepAdvanced", text)
    if step.approval is not None:
        await_approval(ctx, index)


def await_approval(ctx: Ctx, index: int) -> None:
    """Wait at approval step `index`; announced once per gate (the ApprovalRequired Event is what notifies)."""
    st = ctx.st
    if st.awaiting_approval:
        return
    st.awaiting_approval = True
    ctx.record("ApprovalRequired", "ApprovalRequired", f"step {index + 1}/{len(steps(ctx))} at {st.canary_weight}% "
               "waits for approval: kubectl modelship promote")


def restart_step(ctx: Ctx, index: int, why: str) -> None:
    """Steps were edited under a running canary: hold what step `index` allows now, in a fresh period (its
    duration and a passing check at this weight again before moving on: the step is not the one judged)."""
    st = ctx.st
    weight = held_weight(ctx, index)
    old_step, old_weight = st.step, st.canary_weight
    st.step = index
    st.canary_weight = weight
    st.awaiting_approval = False
    _enter_period(ctx)
    total = len(steps(ctx))
    was = f"step {(old_step or 0) + 1} at {old_weight}%"
    ctx.record("StepsChanged", "StepsChanged", f"{why}: now step {index + 1}/{total} at {weight}% (was {was})")
    if steps(ctx)[index].approval is not None:
        await_approval(ctx, index)


def enter_promoting(ctx: Ctx, why: str) -> None:
    st = ctx.st
    st.awaiting_approval = False
    st.mirror_percent = 0
    enter_stage(ctx, Stage.PROMOTING, f"promoting: {why}")


def complete_promotion(ctx: Ctx) -> None:
    """The canary becomes stable at 100%. With spec.rollout.postPromotion the old stable stays warm and the new
    one is judged for the window (stage PostPromotion); otherwise the old stable is retired (scaled down after
    scaleDownDelay). A restore (undo, rollback of a cold previous revision) skips the window."""
    st = ctx.st
    new, old, restoring = st.canary_revision, st.stable_revision, st.restoring
    assert new is not None
    watch = ctx.spec.rollout.post_promotion
    baseline = st.last_analysis
    st.stable_revision = new
    st.canary_revision = None
    reset_rollout(ctx)
    st.stage = Stage.STABLE
    st.stage_started_at = st.progress_at = ctx.now
    if restoring is not None:
        retire(ctx, old)
        close_revision(st, old, ctx.now, restoring.outcome)
        open_revision(st, new, ctx.now, restoring.by, f"restored: {restoring.reason}")
        ctx.record("Restored", "Restored", f"version {new.version} ({new.hash}) validated and serving all traffic "
                   f"again, replacing {old.version if old else 'nothing'}: {restoring.reason}", revision=new)
        return
    ctx.promoted = new
    close_revision(st, old, ctx.now, "Replaced")
    open_revision(st, new, ctx.now, promoter(ctx, new), f"promoted; last check {evidence(baseline)}")
    watched = ""
    if watch is not None and old is not None:
        st.previous_revision = old
        st.baseline = baseline
        st.stage = Stage.POST_PROMOTION
        _enter_period(ctx)  # the first check in the window is a full interval after promotion
        watched = (f"; watching it for {watch.window} with {old.version} kept warm at "
                   f"{watch.keep_previous.replicas} pods")
    else:
        retire(ctx, old)
    ctx.record("Promoted", "Promoted", f"version {new.version} ({new.hash}) promoted to stable, replacing "
               f"{old.version if old else 'nothing'}; last check {evidence(baseline)}{watched}",
               outcome="Promoted", revision=new)


def promoter(ctx: Ctx, revision: Revision) -> str:
    """Who made `revision` stable: the human who approved its last gate or asked for promote-full, else
    modelship."""
    started = ctx.st.rollout_started_at
    for entry in reversed(ctx.st.history):
        if started is not None and entry.time < started:
            break
        if entry.revision == revision.hash and entry.event in ("Approved", "PromoteFullRequested") and entry.by:
            return entry.by
    return OPERATOR


def end_window(ctx: Ctx, why: str) -> None:
    """The post-promotion window is over without a rollback: the previous revision is retired (scaled down
    after scaleDownDelay) and stable is just stable."""
    st = ctx.st
    previous = st.previous_revision
    st.previous_revision = None
    st.baseline = None
    st.stage = Stage.STABLE
    st.stage_started_at = ctx.now
    st.passed_checks = st.consecutive_failures = 0
    retire(ctx, previous)
    stable = st.stable_revision
    if stable is not None:
        gone = f"; previous {previous.version} retired" if previous is not None else ""
        ctx.record("WindowEnded", "PostPromotionWindowEnded",
                   f"post-promotion watch of {stable.version} ended: {why}{gone}", revision=stable)


def rollback(ctx: Ctx, reason: str, *, cause: str, by: str | None = None) -> None:
    """Traffic back to stable at once, canary retired; the revision is not retried until spec changes."""
    st = ctx.st
    canary = st.canary_revision
    if canary is None:
        return
    failed_in = st.stage  # history says where the rollout failed, not the Stable it falls back to
    ctx.traffic_first = True
    ctx.cause = ctx.rolled_back = cause
    retire(ctx, canary)
    if st.restoring is None:  # a failed restore leaves the undone revision marked, so it is not rolled out again
        st.failed_revision = canary
    st.canary_revision = None
    reset_rollout(ctx)
    st.stage = Stage.STABLE
    st.stage_started_at = ctx.now
    detail = reason
    bad = (Verdict.FAIL, Verdict.ERROR, Verdict.NO_DATA)
    if st.last_analysis is not None and st.last_analysis.verdict in bad:
        detail = f"{reason}; evidence: {evidence(st.last_analysis)}"
    ctx.record("RolledBack", "RolledBack", f"rolled back version {canary.version} ({canary.hash}): {detail}",
               outcome="RolledBack", by=by, revision=canary, warning=True, stage=failed_in)


def abandon(ctx: Ctx) -> None:
    """Spec went back to the stable revision while a canary ran: drop the canary, no failure."""
    st = ctx.st
    canary = st.canary_revision
    if canary is None:
        return
    ctx.traffic_first = True
    retire(ctx, canary)
    st.canary_revision = None
    reset_rollout(ctx)
    st.stage = Stage.STABLE
    st.stage_started_at = ctx.now
    stable = st.stable_revision.version if st.stable_revision else ""
    ctx.record("Abandoned", "RolloutAbandoned",
               f"spec reverted to stable {stable}: canary {canary.version} ({canary.hash}) abandoned",
               outcome="Abandoned", revision=canary)
