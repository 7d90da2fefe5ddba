"""The rollout engine: `decide(spec, status, observations, now)` is pure and total.

Durable state lives only in status, so a restarted operator resumes where it was; replaying a decision with
the status it produced changes nothing (checks count once per interval, transitions need fresh evidence).

Order inside one decision: Invalid short-circuit -> manual request (handled once, by id) -> target revision
(bootstrap, start, supersede, abandon) -> stage progression and deadline -> desired child state ->
phase/conditions/message. Semantics worth knowing:
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
- While the spec is Invalid nothing is applied or advanced and requests wait; leaving Invalid restarts the
  progress deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from modelship.domain.actions import Action, EmitEvent, EventType
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.desired import desired_actions
from modelship.domain.durations import parse_duration
from modelship.domain.narrative import finalize, set_condition
from modelship.domain.observations import Observations
from modelship.domain.revision import desired_revision
from modelship.domain.stages import (
    JUDGED_STAGES,
    advance,
    analysis_due,
    approve,
    bootstrap,
    check_deadline,
    check_refused,
    check_unschedulable,
    next_check_at,
    run_analysis,
    validating,
    validation_due,
)
from modelship.domain.status import ModelDeploymentStatus, Phase, Revision, Stage
from modelship.domain.transitions import Ctx, abandon, rollback, start_bootstrap, start_rollout, steps

__all__ = ["POLL_SECONDS", "Decision", "analysis_due", "decide", "validation_due"]

MIN_REQUEUE_SECONDS = 1.0
"""Floor for requeue_after: something overdue is retried promptly, never in a tight loop."""
POLL_SECONDS = 2.0
"""Re-check cadence while waiting on pods or Triton validation (Deployment watches also wake us)."""


@dataclass(frozen=True)
class Decision:
    """The whole new status, the actions to apply in order, and when to reconcile again (seconds)."""

    status: ModelDeploymentStatus
    actions: list[Action]
    requeue_after: float | None


def _same(a: Revision | None, b: Revision | None) -> bool:
    return a is not None and b is not None and a.hash == b.hash


def _ignore(ctx: Ctx, action: str, by: str, why: str) -> None:
    ctx.record("RequestIgnored", "RequestIgnored", f"{action} by {by} ignored: {why}",
               outcome="Ignored", by=by)


def _handle_request(ctx: Ctx, desired: Revision) -> None:
    """Apply a manual request once (by id), recording who asked."""
    st, req = ctx.st, ctx.obs.request
    if req is None or req.id == st.last_request_id:
        return
    st.last_request_id = req.id
    action, by, canary = req.action, req.by, st.canary_revision
    if action == "abort":
        if canary is None:
            _ignore(ctx, action, by, "no rollout in progress")
        else:
            rollback(ctx, f"aborted by {by}", cause="Aborted", by=by)
    elif action == "pause":
        if canary is None or st.paused:
            _ignore(ctx, action, by, "no rollout in progress" if canary is None else "already paused")
        else:
            st.paused = True
            ctx.record("Paused", "Paused", f"paused by {by}", by=by)
    elif action == "resume":
        if not st.paused:
            _ignore(ctx, action, by, "not paused")
        else:
            st.paused = False
            st.progress_at = ctx.now
            ctx.record("Resumed", "Resumed", f"resumed by {by}", by=by)
    elif action == "promote":
        if canary is not None and st.stage == Stage.CANARY and st.awaiting_approval:
            approve(ctx, by)
        else:
            _ignore(ctx, action, by, "nothing waits for approval (promote-full skips the remaining steps)")
    elif action == "promote-full":
        if canary is None or st.stage == Stage.PROMOTING:
            _ignore(ctx, action, by, "no rollout in progress" if canary is None else "already promoting")
        else:
            st.promote_full = True
            ctx.record("PromoteFullRequested", "PromoteFullRequested",
                       f"promote-full by {by}: promoting at the next passing check", by=by)
    elif action == "retry":
        failed = st.failed_revision
        if canary is not None or failed is None or failed.hash != desired.hash:
            _ignore(ctx, action, by, "nothing failed to retry for the current spec")
        else:
            st.failed_revision = None
            if st.stage == Stage.VALIDATING:
                st.progress_at = ctx.now
            ctx.record("Retried", "Retried", f"retry of {failed.version} ({failed.hash}) by {by}", by=by,
                       revision=failed)


def _reconcile_target(ctx: Ctx, desired: Revision) -> None:
    """Compare the spec's revision with stable and canary: bootstrap, start, supersede or abandon."""
    st = ctx.st
    stable, canary = st.stable_revision, st.canary_revision
    bootstrapping = canary is None and st.stage == Stage.VALIDATING
    if stable is None or (bootstrapping and not _same(stable, desired)):
        start_bootstrap(ctx, desired)
    elif _same(stable, desired):
        abandon(ctx)
        if not bootstrapping:  # there failedRevision marks the first revision as Failed
            st.failed_revision = None
    elif not _same(canary, desired) and not (canary is None and _same(st.failed_revision, desired)):
        start_rollout(ctx, desired)


def _progress(ctx: Ctx) -> None:
    st = ctx.st
    if st.canary_revision is None:
        if st.stage == Stage.VALIDATING:
            bootstrap(ctx)
        return
    check_refused(ctx)
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
    else:
        deadline_applies = False
    if deadline_applies and st.progress_at is not None:
        due.append(st.progress_at + parse_duration(rollout.progress_deadline))
    if st.retired_revisions and st.retired_at is not None:
        due.append(st.retired_at + parse_duration(rollout.scale_down_delay))
    if not due:
        return None
    return max(MIN_REQUEUE_SECONDS, (min(due) - now).total_seconds())


def _period_length(ctx: Ctx) -> timedelta | None:
    st = ctx.st
    if st.stage == Stage.SHADOW and ctx.spec.rollout.shadow is not None:
        return parse_duration(ctx.spec.rollout.shadow.duration)
    if st.stage == Stage.CANARY and st.step is not None and st.step < len(steps(ctx)):
        duration = steps(ctx)[st.step].duration
        return parse_duration(duration) if duration else None
    return None


def _invalid(ctx: Ctx) -> Decision:
    """Semantically invalid spec: freeze, touch nothing, say which field and how to fix it."""
    st, problems = ctx.st, ctx.obs.invalid
    text = "; ".join(problems)
    if st.phase != Phase.INVALID:
        ctx.events.append(EmitEvent(EventType.WARNING, "InvalidSpec", f"spec invalid, not applied: {text}"))
    st.phase = Phase.INVALID
    st.message = f"spec invalid, rollout frozen and stable left as is: {text}"
    set_condition(ctx, "Invalid", "True", "InvalidSpec", text)
    set_condition(ctx, "Progressing", "False", "InvalidSpec", "frozen until the spec is fixed")
    return Decision(status=st, actions=list(ctx.events), requeue_after=None)


def decide(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observations: Observations, now: datetime
) -> Decision:
    """Next status and the actions that bring the cluster to it; never mutates its inputs."""
    ctx = Ctx(spec=spec, obs=observations, now=now, st=status.model_copy(deep=True))
    st = ctx.st
    st.observed_generation = observations.generation
    if observations.invalid:
        return _invalid(ctx)
    if status.phase == Phase.INVALID:
        st.progress_at = now
        ctx.events.append(EmitEvent(EventType.NORMAL, "SpecValid", "spec valid again: rollout resumes"))
    desired = desired_revision(spec)
    _handle_request(ctx, desired)
    _reconcile_target(ctx, desired)
    _progress(ctx)
    actions = desired_actions(ctx)
    finalize(ctx, desired)
    return Decision(status=st, actions=[*actions, *ctx.events], requeue_after=_requeue(ctx))

