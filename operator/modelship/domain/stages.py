"""Per-stage progression: validation, SLO checks, step advance, promotion and the progress deadline.

A check counts only when it was due (one per `analysis.interval`, the first one a full interval after the
stage or step began, so its window measures the current weight) and a snapshot is present; `last_check_at`
makes a replayed decision a no-op. A stage or weight step completes only when its duration has elapsed,
at least one check passed in it and the latest check passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelship.domain.actions import EmitEvent, EventType
from modelship.domain.analysis import assess, evidence
from modelship.domain.api import GpuSurgePolicy, ModelDeploymentSpec, NoDataPolicy
from modelship.domain.durations import format_duration, parse_duration
from modelship.domain.observations import ValidationFailure
from modelship.domain.post_promotion import JUDGED_STAGES, judged_revision, roll_back_window, with_baseline
from modelship.domain.revisions import OPERATOR, open_revision
from modelship.domain.status import ModelDeploymentStatus, Stage, Verdict
from modelship.domain.transitions import (
    Ctx,
    await_approval,
    complete_promotion,
    enter_promoting,
    enter_shadow,
    enter_step,
    held_weight,
    restart_step,
    rollback,
    step_index,
    steps,
)


def next_check_at(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> datetime | None:
    """When the next SLO check is due; None when no check applies (nothing under analysis)."""
    if judged_revision(status) is None:
        return None
    starts = [t for t in (status.last_check_at, status.step_started_at) if t is not None]
    if not starts:
        return now
    return max(starts) + parse_duration(spec.rollout.analysis.interval)


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """True when the controller should query metrics before calling decide."""
    due = next_check_at(spec, status, now)
    return due is not None and now >= due


def validation_due(status: ModelDeploymentStatus) -> bool:
    """True when the controller should run Triton checks on the canary pods before calling decide."""
    return status.canary_revision is not None and status.stage == Stage.VALIDATING


def analysis_hold(st: ModelDeploymentStatus) -> tuple[str, str] | None:
    """(message, reason) when the latest check in this stage or step held the rollout (derived from status
    alone, so a replayed decision words it identically)."""
    last = st.last_analysis
    if st.stage not in JUDGED_STAGES or last is None or last.verdict == Verdict.PASS:
        return None
    started, checked = st.step_started_at, st.last_check_at
    if started is not None and checked is not None and checked < started:
        return None
    return f"holding: {last.message}", f"Analysis{last.verdict}"


def passing(ctx: Ctx) -> bool:
    """At least one Pass in the current stage or step, and the latest check passed."""
    last = ctx.st.last_analysis
    return ctx.st.passed_checks >= 1 and last is not None and last.verdict == Verdict.PASS


def _period_done(ctx: Ctx, duration: timedelta) -> bool:
    started = ctx.st.step_started_at
    return passing(ctx) and (started is None or ctx.now - started >= duration)


def deadline(ctx: Ctx) -> timedelta:
    return parse_duration(ctx.spec.rollout.progress_deadline)


def deadline_passed(ctx: Ctx) -> bool:
    since = ctx.st.progress_at
    return since is not None and ctx.now - since >= deadline(ctx)


def frozen(ctx: Ctx) -> bool:
    """True when the newest spec is Invalid: a transition that is due waits (and says why) instead of moving
    traffic forward under a spec the user is replacing. Checks, rollbacks and requests are not held."""
    if not ctx.obs.invalid:
        return False
    ctx.blocked = True
    ctx.hold, ctx.hold_reason = "not advancing until the newest spec is valid", "InvalidSpec"
    return True


def reread_steps(ctx: Ctx) -> None:
    """Steps edited mid-canary (same revision): never hold more weight than the current step allows, never
    sit on an index past the end. A changed weight starts the step afresh (see `restart_step`)."""
    st = ctx.st
    if st.canary_revision is None or st.stage != Stage.CANARY:
        return
    index = step_index(ctx)
    if index != st.step or held_weight(ctx, index) != st.canary_weight:
        restart_step(ctx, index, "canary steps changed")


def check_unschedulable(ctx: Ctx) -> None:
    """Canary pods that cannot be placed: the gpuSurge policy decides (replicas themselves: desired.py)."""
    cs = ctx.state(ctx.st.canary_revision)
    if cs is None or not cs.unschedulable or cs.available:
        return
    policy = ctx.spec.rollout.gpu_surge
    if policy == GpuSurgePolicy.NEVER:
        rollback(ctx, f"canary cannot be scheduled and gpuSurge is Never: {cs.unschedulable}",
                 cause="Unschedulable")
        return
    ctx.hold_reason = "CanaryUnschedulable"
    if policy == GpuSurgePolicy.SCALE_DOWN_STABLE:
        ctx.hold = f"canary unschedulable ({cs.unschedulable}): shrinking stable to free GPUs"
    else:
        ctx.hold = f"canary unschedulable ({cs.unschedulable}); holding until progressDeadline"


def validating(ctx: Ctx) -> None:
    """Pods available and a passed Triton validation report move on; a final failure rolls back at once."""
    cs = ctx.state(ctx.st.canary_revision)
    report = ctx.obs.validation
    final = (ValidationFailure.CONTRACT_MISMATCH, ValidationFailure.SAMPLE_FAILED)
    if report is not None and not report.passed and report.failure in final:
        rollback(ctx, f"validation failed ({report.failure}): {report.message}; no traffic was moved",
                 cause="ValidationFailed")
        return
    if ctx.st.paused:
        ctx.hold = ctx.hold or "paused before leaving validation"
        return
    if cs is not None and cs.available and report is not None and report.passed:
        if frozen(ctx):
            return
        # What passed (READY pods, contract, samples) is the evidence for letting traffic near the canary.
        ctx.record("Validated", "Validated", f"validation passed: {report.message}")
        shadow = ctx.spec.rollout.shadow
        if ctx.st.restoring is not None:
            enter_promoting(ctx, f"restoring a revision that was not warm: {ctx.st.restoring.reason}")
        elif shadow is not None:
            enter_shadow(ctx, shadow.mirror_percent)
        else:
            enter_step(ctx, 0)
        return
    if ctx.hold is None:
        if cs is None:
            ctx.hold = "waiting for the canary Deployment"
        elif not cs.available:
            ctx.hold = f"waiting for canary pods: {cs.ready_replicas}/{cs.desired_replicas} ready"
        elif report is None or report.passed:
            ctx.hold = "waiting for Triton validation of the canary pods"
        else:
            ctx.hold = f"validation {report.failure or 'NotReady'}: {report.message}"
        ctx.hold_reason = ctx.hold_reason or "Validating"


OBSERVED_BREACH = "ObservedSloBreach"
"""Event reason for an observe-only SLO (`enforce: false`) outside its bound."""


def run_analysis(ctx: Ctx) -> None:
    """Count one due check; failures (and NoData/Error under a Fail policy) accumulate to failureLimit."""
    st, snapshot = ctx.st, ctx.obs.metrics
    if snapshot is None or not analysis_due(ctx.spec, st, ctx.now):
        return
    policy = ctx.spec.rollout.analysis
    watching = st.stage == Stage.POST_PROMOTION
    record = assess(ctx.spec, with_baseline(snapshot, st.baseline) if watching else snapshot, ctx.now, st.stage)
    st.last_analysis = ctx.checked = record
    st.last_check_at = ctx.now
    for metric in record.metrics:
        if not metric.enforced and metric.verdict == Verdict.FAIL:
            # observe-only: an Event for the humans building trust in it, never history or a failed check
            ctx.events.append(EmitEvent(EventType.WARNING, OBSERVED_BREACH, metric.message))
    verdict = record.verdict
    if verdict == Verdict.PASS:
        st.consecutive_failures = 0
        st.passed_checks += 1
        st.progress_at = ctx.now
        return
    counted = (
        verdict == Verdict.FAIL
        or (verdict == Verdict.NO_DATA and policy.on_no_data == NoDataPolicy.FAIL)
        or (verdict == Verdict.ERROR and policy.on_metrics_unavailable == NoDataPolicy.FAIL)
    )
    if not counted:
        return
    st.consecutive_failures += 1
    limit = policy.failure_limit
    ctx.record("AnalysisFailed", "AnalysisFailed",
               f"check failed {st.consecutive_failures}/{limit}: {evidence(record)}", warning=True)
    if st.consecutive_failures >= limit:
        why = f"{st.consecutive_failures} consecutive failed checks (failureLimit {limit})"
        if watching:
            roll_back_window(ctx, f"{why} after promotion", cause="AnalysisFailed", by=OPERATOR)
        else:
            rollback(ctx, why, cause="AnalysisFailed")


def promoting(ctx: Ctx) -> None:
    """Promote once the canary runs at full replicas, so stable capacity never drops on the switch. Under
    gpuSurge ScaleDownStable the canary's weight follows its ready pods meanwhile (never down)."""
    replicas = ctx.spec.serving.replicas
    cs = ctx.state(ctx.st.canary_revision)
    if cs is not None and cs.ready_replicas >= replicas:
        if not frozen(ctx):
            complete_promotion(ctx)
        return
    ready = ctx.ready_pods(ctx.st.canary_revision)
    st = ctx.st
    if ctx.spec.rollout.gpu_surge == GpuSurgePolicy.SCALE_DOWN_STABLE and not ctx.obs.invalid:
        # GPUs are scarce: hand traffic over as canary pods come up, so stable can lend the GPUs of the share
        # it no longer carries (desired.py) and is never left short for the share it still carries.
        st.canary_weight = max(st.canary_weight, min(99, -(-100 * ready // replicas)))
    ctx.hold = ctx.hold or (f"waiting for {replicas} canary pods before switching traffic ({ready} ready; "
                            f"{st.canary_weight}% on the canary meanwhile)")
    ctx.hold_reason = ctx.hold_reason or "Promoting"


def approve(ctx: Ctx, by: str, request: str | None = None, forced_over: str | None = None) -> None:
    """A human passed the approval gate: move to the next step (or promote after the last). `forced_over`:
    why the gate would have refused (e.g. a failing latest check), recorded when `--force` overrode it."""
    index = step_index(ctx)
    total = len(steps(ctx))
    forced = f" with --force over: {forced_over}" if forced_over else ""
    ctx.record("Approved", "Approved", f"step {index + 1}/{total} approved by {by}{forced}", by=by,
               request=request, warning=bool(forced_over))
    ctx.st.awaiting_approval = False
    if index + 1 < total:
        enter_step(ctx, index + 1)
    else:
        enter_promoting(ctx, f"approved by {by} at the last step")


def advance(ctx: Ctx) -> None:
    """Take every transition whose conditions hold now (bounded: each one starts a fresh period)."""
    for _ in range(len(steps(ctx)) + 3):
        st = ctx.st
        if st.canary_revision is None or st.paused:
            return
        if st.stage in JUDGED_STAGES and st.promote_full and passing(ctx):
            if frozen(ctx):
                return
            enter_promoting(ctx, f"promote-full after a passing check ({evidence(st.last_analysis)})")
            continue
        if st.stage == Stage.SHADOW:
            shadow = ctx.spec.rollout.shadow
            if not _period_done(ctx, parse_duration(shadow.duration) if shadow else timedelta(0)) or frozen(ctx):
                return
            enter_step(ctx, 0)
            continue
        if st.stage == Stage.CANARY:
            index = step_index(ctx)
            step = steps(ctx)[index]
            if step.approval is not None:
                await_approval(ctx, index)
                return
            if not _period_done(ctx, parse_duration(step.duration or "0s")) or frozen(ctx):
                return
            if index + 1 < len(steps(ctx)):
                enter_step(ctx, index + 1)
            else:
                enter_promoting(ctx, f"all {len(steps(ctx))} steps passed")
            continue
        if st.stage == Stage.PROMOTING:
            promoting(ctx)
        return


def check_refused(ctx: Ctx) -> None:
    """An apply the API server refused earlier (`obs.refused`) kept the status from before the transition
    that needed it, so progress_at still dates from the last real progress. Past the deadline roll back here,
    before that transition is decided again (it would restart the deadline); pause and approval are exempt."""
    st, refused = ctx.st, ctx.obs.refused
    if refused is None or st.canary_revision is None or st.paused or st.awaiting_approval:
        return
    if deadline_passed(ctx):
        rollback(ctx, f"no progress for {format_duration(deadline(ctx))} (progressDeadline): "
                 f"the API server refused {refused}", cause="ApplyRefused")


def check_deadline(ctx: Ctx) -> None:
    """No progress for progressDeadline rolls back; pause and approval waits are exempt."""
    st = ctx.st
    if st.canary_revision is None or st.paused or st.awaiting_approval or ctx.blocked or not deadline_passed(ctx):
        return
    held = analysis_hold(st)
    why = ctx.hold or (held[0] if held else f"no passing check in stage {st.stage}")
    rollback(ctx, f"no progress for {format_duration(deadline(ctx))} (progressDeadline): {why}",
             cause="ProgressDeadline")


def bootstrap(ctx: Ctx) -> None:
    """First revision: Healthy once its pods are available; Failed (kept trying) past the deadline."""
    st = ctx.st
    ss = ctx.state(st.stable_revision)
    if ss is not None and ss.available:
        st.stage = Stage.STABLE
        st.stage_started_at = st.progress_at = ctx.now
        st.failed_revision = None
        if st.stable_revision is not None:
            open_revision(st, st.stable_revision, ctx.now, OPERATOR, "first revision")
        ctx.record("StageChanged", "Deployed", f"first revision available: {ss.ready_replicas} pods ready")
        return
    if ss is None:
        ctx.hold = "waiting for the Deployment"
    else:
        ctx.hold = f"waiting for pods: {ss.ready_replicas}/{ss.desired_replicas} ready"
        if ss.unschedulable:
            ctx.hold += f" ({ss.unschedulable})"
    failed = st.failed_revision is not None and st.stable_revision is not None and (
        st.failed_revision.hash == st.stable_revision.hash)
    if not failed and deadline_passed(ctx):
        st.failed_revision = st.stable_revision
        ctx.cause = "DeployFailed"
        ctx.record("Failed", "DeployFailed",
                   f"first revision not available within progressDeadline: {ctx.hold}",
                   outcome="Failed", warning=True)
