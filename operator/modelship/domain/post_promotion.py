"""After promotion: the watch window, the warm previous revision, and undo.

- With `spec.rollout.postPromotion`, promotion enters stage PostPromotion (transitions.complete_promotion): the
  new stable carries all traffic and is still checked every interval against the same SLOs, its ratio bounds
  against its own last canary check (status.baseline: nothing else carries traffic to compare with), while the
  previous revision stays deployed at keepPrevious.replicas with no traffic (status.previousRevision).
- failureLimit failed checks in the window put all traffic back on the previous revision (`restore`), record
  RolledBack at stage PostPromotion with the evidence and leave spec alone: the spec's revision is marked
  failed, exactly as after a canary rollback (retry or a spec change start it again).
- The window ends once its length has passed with no failed check pending (a pending one gets failureLimit
  more intervals to pass or roll back): the previous revision is retired and scaled down.
- `restore` is one path for a breach in the window, `abort` in the window and `undo`: a warm target (a ready
  pod) takes all traffic in this decision; a cold one is redeployed as a canary, validated like any canary
  (Triton contract and samples), then takes 100% at once without shadow or steps (status.restoring). The
  current stable serves until then: a cold revision never takes traffic unvalidated.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from modelship.domain.analysis import evidence
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.durations import format_duration, parse_duration
from modelship.domain.observations import MetricsSnapshot
from modelship.domain.revision import desired_revision
from modelship.domain.revisions import close_revision, earlier_revisions, open_revision
from modelship.domain.status import (
    AnalysisRecord,
    ModelDeploymentStatus,
    Restore,
    Revision,
    Stage,
    Verdict,
)
from modelship.domain.transitions import Ctx, end_window, reset_rollout, retire, unretire

JUDGED_STAGES = (Stage.SHADOW, Stage.CANARY, Stage.POST_PROMOTION)
"""Stages with SLO checks: the canary in Shadow and Canary, the new stable in PostPromotion."""


def judged_revision(status: ModelDeploymentStatus) -> Revision | None:
    """The revision a check in the current stage judges, None when no check applies."""
    if status.stage == Stage.POST_PROMOTION and status.canary_revision is None:
        return status.stable_revision
    if status.stage in (Stage.SHADOW, Stage.CANARY):
        return status.canary_revision
    return None


def window_end(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> datetime | None:
    """When the post-promotion window ends (from the spec's window: editing it moves the end)."""
    watch = spec.rollout.post_promotion
    if status.stage != Stage.POST_PROMOTION or watch is None or status.stage_started_at is None:
        return None
    return status.stage_started_at + parse_duration(watch.window)


def grace(spec: ModelDeploymentSpec) -> timedelta:
    """How long past the window a failed check may stay pending before the window ends anyway."""
    analysis = spec.rollout.analysis
    return parse_duration(analysis.interval) * analysis.failure_limit


def with_baseline(snapshot: MetricsSnapshot, baseline: AnalysisRecord | None) -> MetricsSnapshot:
    """The snapshot with each SLO's stable value replaced by the new stable's own last canary value."""
    canary_values = {m.name: m.value for m in baseline.metrics} if baseline is not None else {}
    values = {name: replace(value, stable=canary_values.get(name)) for name, value in snapshot.values.items()}
    return replace(snapshot, values=values)


def warm(ctx: Ctx, revision: Revision) -> bool:
    """At least one Ready pod: traffic can move to it in this decision."""
    return ctx.ready_pods(revision) >= 1


def watch(ctx: Ctx) -> None:
    """End the window when it has passed (checks and breaches are run_analysis's, in stages.py)."""
    st = ctx.st
    if st.stage != Stage.POST_PROMOTION:
        return
    if st.previous_revision is None or ctx.spec.rollout.post_promotion is None:
        end_window(ctx, "postPromotion was removed from the spec")
        return
    end = window_end(ctx.spec, st)
    if end is None or ctx.now < end:
        return
    checks = f"{st.passed_checks} passing check{'s' if st.passed_checks != 1 else ''}"
    if st.consecutive_failures == 0:
        end_window(ctx, f"window of {ctx.spec.rollout.post_promotion.window} passed with {checks}; "
                   f"last check {evidence(st.last_analysis)}")
    elif ctx.now >= end + grace(ctx.spec):
        end_window(ctx, f"window passed; {st.consecutive_failures} failed check(s) pending did not reach "
                   f"failureLimit within {format_duration(grace(ctx.spec))}")
    else:
        ctx.hold = f"window passed, waiting for the next check: {st.consecutive_failures} failed check(s) pending"
        ctx.hold_reason = "PostPromotionCheckPending"


def restore(ctx: Ctx, target: Revision, *, reason: str, cause: str, by: str, outcome: str) -> None:
    """Put all traffic back on `target` (an earlier stable): at once when it is warm, after redeploying and
    validating it when it is not. The spec's revision is marked failed so it is not rolled out again."""
    st = ctx.st
    current = st.stable_revision
    assert current is not None
    stage = st.stage
    desired = desired_revision(ctx.spec)
    if desired.hash != target.hash and desired.hash == current.hash:
        st.failed_revision = current
    ctx.cause = ctx.rolled_back = cause
    detail = reason
    last = st.last_analysis
    if stage == Stage.POST_PROMOTION and last is not None and last.verdict in (Verdict.FAIL, Verdict.ERROR):
        detail = f"{reason}; evidence: {evidence(last)}"
    is_warm = warm(ctx, target)
    how = "at once (warm)" if is_warm else "once redeployed and validated (it was not warm)"
    ctx.record(outcome, outcome, f"{outcome.lower().replace('rolledback', 'rolled back')} version {current.version} "
               f"({current.hash}): {detail}; traffic back to {target.version} ({target.hash}) {how}",
               outcome=outcome, by=by, revision=current, warning=True, stage=stage)
    st.previous_revision = None
    st.baseline = None
    reset_rollout(ctx)
    unretire(ctx, target)
    st.stage_started_at = st.progress_at = ctx.now
    st.last_check_at = None
    ctx.traffic_first = True  # the route is written first either way: it names who serves now
    if is_warm:
        st.stable_revision = target
        st.stage = Stage.STABLE
        retire(ctx, current)
        close_revision(st, current, ctx.now, outcome)
        open_revision(st, target, ctx.now, by, f"restored: {reason}")
        return
    st.canary_revision = target
    st.stage = Stage.VALIDATING
    st.rollout_started_at = st.step_started_at = ctx.now
    st.last_analysis = None
    st.restoring = Restore(by=by, outcome=outcome, reason=reason)


def roll_back_window(ctx: Ctx, reason: str, *, cause: str, by: str) -> None:
    """A breach (or abort) inside the window: back to the previous revision."""
    previous = ctx.st.previous_revision
    if previous is None:
        return
    restore(ctx, previous, reason=reason, cause=cause, by=by, outcome="RolledBack")


def undo_target(ctx: Ctx, to_version: str | None) -> tuple[Revision | None, str]:
    """The revision `undo` goes back to, or None and why not."""
    st = ctx.st
    stable = st.stable_revision
    if st.restoring is not None and st.canary_revision is not None:
        return None, f"a restore of {st.canary_revision.version} is already in progress"
    if st.canary_revision is not None:
        return None, (f"a rollout of {st.canary_revision.version} is in progress: abort it (kubectl modelship "
                      "abort) to put all traffic back on stable; undo goes back from a stable revision")
    if stable is None or st.stage == Stage.VALIDATING:
        return None, "no revision serves as stable yet: nothing to go back from"
    candidates = earlier_revisions(st)
    if to_version is not None:
        if to_version == stable.version:
            return None, f"version {to_version} already serves as stable"
        found = next((r for r in candidates if r.version == to_version), None)
        if found is None:
            known = ", ".join(r.version for r in candidates) or "none"
            return None, (f"no revision with version {to_version} served here (earlier versions: {known}); undo "
                          "goes back only to a version in status.revisions (kubectl modelship revisions NAME)")
        return found, ""
    if not candidates:
        return None, "no earlier revision served here: nothing to go back to"
    return candidates[0], ""
