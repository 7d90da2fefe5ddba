"""Manual requests (`kubectl modelship promote|abort|pause|resume|retry|undo`): judged once, recorded with who asked.

A request is acted upon only when it is new (its id differs from status.lastRequestId), fresh (its `at` within
REQUEST_MAX_AGE before now and at most REQUEST_MAX_SKEW after), and sent after the last request acted upon
(status.lastRequestAt only moves forward, so a replayed old annotation never runs again, even after other
requests were handled). Anything else is recorded once as an ignored request, in its own small history
budget. `by` is the requester the API server authenticated when the admission policy was in force, and
says "(unverified)" otherwise.
"""

from __future__ import annotations

from modelship.domain.analysis import evidence
from modelship.domain.durations import format_duration
from modelship.domain.post_promotion import restore, roll_back_window, undo_target
from modelship.domain.stages import approve
from modelship.domain.status import (
    REQUEST_MAX_AGE,
    REQUEST_MAX_SKEW,
    UNVERIFIED,
    ManualRequest,
    Revision,
    Stage,
    Verdict,
)
from modelship.domain.transitions import IGNORED, Ctx, rollback, step_index, steps


def requester(request: ManualRequest) -> str:
    """The name recorded in history and Events: marked when the API server did not vouch for it."""
    return request.by if request.verified else f"{request.by} ({UNVERIFIED})"


def request_problem(ctx: Ctx, request: ManualRequest) -> str | None:
    """Why a new request must not run at all (unreadable, stale, from the future, a replay), else None."""
    if request.problem is not None:
        return request.problem
    at, now, last = request.at, ctx.now, ctx.st.last_request_at
    if request.action is None or at is None or at.tzinfo is None:
        return "the request names no action or no time with a zone (at); send it again with kubectl modelship"
    if at < now - REQUEST_MAX_AGE:
        return (f"stale: sent {format_duration(now - at)} ago, more than {format_duration(REQUEST_MAX_AGE)}; "
                "send it again if it still applies")
    if at > now + REQUEST_MAX_SKEW:
        return (f"sent {format_duration(at - now)} in the future (more than {format_duration(REQUEST_MAX_SKEW)} "
                "of clock skew): check the client's clock and send it again")
    if last is not None and at <= last:
        return "a replay: not sent after the last request acted upon; send a new request"
    return None


def last_gate_refusal(ctx: Ctx) -> str | None:
    """Approving the last gate promotes to 100%: only over a passing latest check (else --force)."""
    if step_index(ctx) + 1 < len(steps(ctx)):
        return None
    last = ctx.st.last_analysis
    if last is None:
        return "no SLO check has run yet at the last approval gate; wait for a passing check or use --force"
    if last.verdict != Verdict.PASS:
        return (f"the latest check did not pass ({evidence(last)}); promoting now would put a failing canary at "
                "100%: wait for a passing check, or use --force to promote anyway")
    return None


def handle_request(ctx: Ctx, desired: Revision) -> None:
    """Apply a manual request once (by id), recording who asked."""
    st, request = ctx.st, ctx.obs.request
    if request is None or request.id == st.last_request_id:
        return
    st.last_request_id = request.id
    by = requester(request)
    why = request_problem(ctx, request)
    if why is not None or request.action is None:
        _ignore(ctx, request, by, why or "no action")
        return
    st.last_request_at = request.at
    action, canary = request.action, st.canary_revision

    def ignore(reason: str) -> None:
        _ignore(ctx, request, by, reason)

    if action == "abort":
        if canary is None and st.stage == Stage.POST_PROMOTION and st.previous_revision is not None:
            roll_back_window(ctx, f"aborted by {by} after promotion", cause="Aborted", by=by)
        elif canary is None:
            ignore("no rollout in progress")
        else:
            rollback(ctx, f"aborted by {by}", cause="Aborted", by=by)
    elif action == "pause":
        if canary is None or st.paused:
            ignore("no rollout in progress" if canary is None else "already paused")
        else:
            st.paused = True
            ctx.record("Paused", "Paused", f"paused by {by}", by=by, request=request.id)
    elif action == "resume":
        if not st.paused:
            ignore("not paused")
        else:
            st.paused = False
            st.progress_at = ctx.now
            ctx.record("Resumed", "Resumed", f"resumed by {by}", by=by, request=request.id)
    elif action == "promote":
        if canary is None or st.stage != Stage.CANARY or not st.awaiting_approval:
            ignore("nothing waits for approval (promote-full skips the remaining steps)")
            return
        gate = last_gate_refusal(ctx)
        if gate is not None and not request.force:
            ignore(gate)
        else:
            approve(ctx, by, request.id, forced_over=gate)
    elif action == "promote-full":
        if canary is None or st.stage == Stage.PROMOTING:
            ignore("no rollout in progress" if canary is None else "already promoting")
        else:
            st.promote_full = True
            ctx.record("PromoteFullRequested", "PromoteFullRequested",
                       f"promote-full by {by}: promoting at the next passing check", by=by, request=request.id)
    elif action == "undo":
        target, why = undo_target(ctx, request.to_version)
        if target is None:
            ignore(why)
        else:
            restore(ctx, target, reason=f"undo by {by}", cause="Undone", by=by, outcome="Undone")
    elif action == "retry":
        failed = st.failed_revision
        if canary is not None or failed is None or failed.hash != desired.hash:
            ignore("nothing failed to retry for the current spec")
        else:
            st.failed_revision = None
            if st.stage == Stage.VALIDATING:
                st.progress_at = ctx.now
            ctx.record("Retried", "Retried", f"retry of {failed.version} ({failed.hash}) by {by}", by=by,
                       revision=failed, request=request.id)


def _ignore(ctx: Ctx, request: ManualRequest, by: str, why: str) -> None:
    action = request.action or "request"
    ctx.record("RequestIgnored", "RequestIgnored", f"{action} by {by} ignored: {why}",
               outcome=IGNORED, by=by, request=request.id)
