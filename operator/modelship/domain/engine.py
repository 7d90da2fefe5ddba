"""The rollout engine: `decide(spec, status, observations, now)` is pure and total.

Durable state lives only in status, so a restarted operator resumes where it was; replaying a decision with
the status it produced changes nothing (checks count once per interval, transitions need fresh evidence).

Order inside one decision: future timestamps clamped -> manual request (handled once, by id) -> target
revision (bootstrap, start, supersede, abandon; not while Invalid) -> stage progression and deadline ->
desired child state -> phase/conditions/message. Semantics worth knowing:
- The first revision is deployed directly as stable (stage Validating until its pods are available; no Triton
  validation since there is no stable contract to compare with and nothing to protect); past progressDeadline
  it is Failed but keeps being applied, and becomes Healthy if its pods come up later.
- Analysis keeps running while paused or waiting for approval: a breach still rolls back. Pause and
  approval waits only stop advancing and the progress deadline. Time paused counts toward the step.
- `promote` passes an approval gate only. `promote-full` is remembered and promotes at the next passing
  check (never on a failing or missing one), skipping remaining steps and gates.
- After a rollback the revision is not retried until the desired revision changes or `retry` arrives.
  Phase RolledBack means a stable still serves; Failed is kept for a first revision that never came up.
- Retired revisions (old stable, rolled-back or superseded canary) are deleted (DeleteRevision) once
  scaleDownDelay has passed; an owned Deployment that status no longer knows (a crash between the status
  patch and the delete) is deleted as an orphan.
- A spec change that keeps the revision hash (SLOs, steps, policies, replicas) does not restart a rollout;
  steps are re-read and the current index is clamped, never skipped forward.
- While the newest spec is Invalid, `spec` is the last valid one (kept in status.lastValidSpec, see
  last_valid.py) and the running rollout stays guarded under it: checks, rollbacks, the progress deadline and
  manual requests work as before; nothing of the new spec is applied and no transition moves traffic forward
  (a transition that is due waits, exempt from the deadline like a pause). Phase Invalid and the Invalid
  condition name the field and the fix. The controller freezes instead only when no valid spec was ever kept.
- Status times later than `now` (a clock that ran ahead wrote them) are treated as now and said so.
- With rollout.postPromotion, promotion enters stage PostPromotion: the new stable is still judged for the
  window with the previous revision warm; a breach, `abort` or `undo` puts traffic back on it (see
  post_promotion.py, which also says how a cold revision is restored: validated before it takes traffic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from modelship.domain.actions import Action, EmitEvent, EventType
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.desired import desired_actions
from modelship.domain.durations import parse_duration
from modelship.domain.last_valid import remember
from modelship.domain.manual import handle_request
from modelship.domain.narrative import finalize
from modelship.domain.observations import Observations
from modelship.domain.post_promotion import JUDGED_STAGES, watch, window_end
from modelship.domain.revision import desired_revision
from modelship.domain.revisions import seed_revisions
from modelship.domain.skew import clamp_future_times
from modelship.domain.stages import (
    advance,
    analysis_due,
    bootstrap,
    check_deadline,
    check_refused,
    check_unschedulable,
    next_check_at,
    reread_steps,
    run_analysis,
    validating,
    validation_due,
)
from modelship.domain.status import AnalysisRecord, ModelDeploymentStatus, Phase, Revision, Stage
from modelship.domain.transitions import Ctx, abandon, start_bootstrap, start_rollout, steps

__all__ = ["POLL_SECONDS", "Decision", "analysis_due", "decide", "validation_due"]

MIN_REQUEUE_SECONDS = 1.0
"""requeue_after for something already overdue: retried promptly, never in a tight loop."""
POLL_SECONDS = 2.0
"""Re-check cadence while waiting on pods or Triton validation (Deployment watches also wake us)."""


@dataclass(frozen=True)
class Decision:
    """The whole new status, the actions to apply in order, and when to reconcile again (seconds); and what
    happened in this decision, for operator metrics (so the controller never compares statuses to find out)."""

    status: ModelDeploymentStatus
    actions: list[Action]
    requeue_after: float | None
    checked: AnalysisRecord | None = None
    """The SLO check counted in this decision, if one was."""
    rolled_back: str | None = None
    """The cause of a rollback taken in this decision (the Degraded reason)."""
    promoted: Revision | None = None
    """The revision promoted to stable in this decision."""


def _same(a: Revision | None, b: Revision | None) -> bool:
    return a is not None and b is not None and a.hash == b.hash


def _reconcile_target(ctx: Ctx, desired: Revision) -> None:
    """Compare the spec's revision with stable and canary: bootstrap, start, supersede or abandon."""
    st = ctx.st
    if st.restoring is not None:  # an undo or rollback redeploys a cold revision: a new spec waits for it
        return
    stable, canary = st.stable_revision, st.canary_revision
    bootstrapping = canary is None and st.stage == Stage.VALIDATING
    if stable is None or (bootstrapping and not _same(stable, desired)):
        start_bootstrap(ctx, desired)
    elif _same(stable, desired):
        abandon(ctx)
        # Kept: bootstrapping, failedRevision marks the first revision as Failed; after a failed restore it marks
        # the stable revision that was being undone (it still serves, the mark says its undo did not happen).
        if not bootstrapping and not _same(st.failed_revision, stable):
            st.failed_revision = None
    elif not _same(canary, desired) and not (canary is None and _same(st.failed_revision, desired)):
        start_rollout(ctx, desired)


def _progress(ctx: Ctx) -> None:
    st = ctx.st
    if st.canary_revision is None:
        if st.stage == Stage.VALIDATING:
            bootstrap(ctx)
        elif st.stage == Stage.POST_PROMOTION:
            run_analysis(ctx)
            watch(ctx)
        if st.canary_revision is None:
            return
        # A failed watch restores a cold previous revision as the canary: judge it on this same evidence now, as
        # the next reconcile would (decide must give the same status when replayed on its own output).
    check_refused(ctx)
    reread_steps(ctx)
    check_unschedulable(ctx)
    if st.canary_revision is not None and st.stage == Stage.VALIDATING:
        validating(ctx)
    if st.canary_revision is not None and st.stage in JUDGED_STAGES:
        run_analysis(ctx)
    advance(ctx)
    check_deadline(ctx)


def _requeue(ctx: Ctx) -> float | None:
    """Seconds until something is due: a check, a step end, a deadline, a scale-down or a poll."""
    st, now, rollout = ctx.st, ctx.now, ctx.spec.rollout
    due: list[datetime] = []
    poll = now + timedelta(seconds=POLL_SECONDS)
    deadline_applies = not st.paused and not st.awaiting_approval
    if st.canary_revision is not None:
        if st.stage in (Stage.VALIDATING, Stage.PROMOTING):
            due.append(poll)
        check = next_check_at(ctx.spec, st, now)
        if check is not None:
            due.append(check)
        length = _period_length(ctx)
        if length is not None and st.step_started_at is not None and st.step_started_at + length > now:
            due.append(st.step_started_at + length)
    elif st.stage == Stage.VALIDATING:
        due.append(poll)
    elif st.stage == Stage.POST_PROMOTION:
        deadline_applies = False
        check, end = next_check_at(ctx.spec, st, now), window_end(ctx.spec, st)
        due.extend(moment for moment in (check, end if end is not None and end > now else None) if moment)
    else:
        deadline_applies = False
    if deadline_applies and st.progress_at is not None:
        due.append(st.progress_at + parse_duration(rollout.progress_deadline))
    if st.retired_revisions and st.retired_at is not None:
        due.append(st.retired_at + parse_duration(rollout.scale_down_delay))
    if not due:
        return None
    # The floor is for what is overdue (retried promptly, never in a tight loop). What is due in 50 ms is waited
    # for exactly: the floor there made a step end 1 s late whenever the reconcile before it ran a little early.
    nearest = (min(due) - now).total_seconds()
    return nearest if nearest > 0 else MIN_REQUEUE_SECONDS


def _period_length(ctx: Ctx) -> timedelta | None:
    st = ctx.st
    if st.stage == Stage.SHADOW and ctx.spec.rollout.shadow is not None:
        return parse_duration(ctx.spec.rollout.shadow.duration)
    if st.stage == Stage.CANARY and st.step is not None and st.step < len(steps(ctx)):
        duration = steps(ctx)[st.step].duration
        return parse_duration(duration) if duration else None
    return None


def copy_status(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """A deep copy to decide on. Through a dump and validation: 25x faster than `model_copy(deep=True)` (Python's
    deepcopy of every nested model; ~2 ms for a status with its history, a reconcile's largest single cost)."""
    return ModelDeploymentStatus.model_validate(status.model_dump())


def decide(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observations: Observations, now: datetime
) -> Decision:
    """Next status and the actions that bring the cluster to it; never mutates its inputs."""
    ctx = Ctx(spec=spec, obs=observations, now=now, st=copy_status(status))
    st = ctx.st
    st.observed_generation = observations.generation
    clamp_future_times(ctx)
    invalid = observations.invalid
    if invalid and status.phase != Phase.INVALID:
        ctx.events.append(EmitEvent(EventType.WARNING, "InvalidSpec", "spec invalid, not applied (the running "
                                    f"rollout stays guarded under the last valid spec): {'; '.join(invalid)}"))
    if not invalid:
        if status.phase == Phase.INVALID:
            if status.last_valid_spec is None:  # the controller froze the rollout: its deadline starts over
                st.progress_at = now
            ctx.events.append(EmitEvent(EventType.NORMAL, "SpecValid", "spec valid again: rollout resumes"))
        remember(st, spec, observations.generation)
    desired = desired_revision(spec)
    handle_request(ctx, desired)
    if not invalid:
        _reconcile_target(ctx, desired)
    _progress(ctx)
    seed_revisions(st, now)
    actions = desired_actions(ctx)
    finalize(ctx, desired)
    return Decision(status=st, actions=[*actions, *ctx.events], requeue_after=_requeue(ctx),
                    checked=ctx.checked, rolled_back=ctx.rolled_back, promoted=ctx.promoted)

