"""Phase, conditions and the one-line message, derived from the durable fields after every decision.

Deriving them (instead of storing them as independent state) keeps them consistent after a crash, an Invalid
interlude or a hand-edited status.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from modelship.domain.durations import format_duration
from modelship.domain.last_valid import last_valid_generation
from modelship.domain.post_promotion import window_end
from modelship.domain.stages import analysis_hold
from modelship.domain.status import Condition, ModelDeploymentStatus, Phase, Revision, Stage
from modelship.domain.transitions import Ctx, clip, held_weight, step_index, steps

MESSAGE_MAX = 2000
"""Characters of status.message kept (problem lists and evidence can be long)."""


def derive_phase(st: ModelDeploymentStatus, desired: Revision) -> Phase:
    if st.canary_revision is not None:
        return Phase.PAUSED if st.paused or st.awaiting_approval else Phase.PROGRESSING
    stable = st.stable_revision
    if stable is None:
        return Phase.PENDING
    failed = st.failed_revision
    if st.stage == Stage.VALIDATING:
        return Phase.FAILED if failed is not None and failed.hash == stable.hash else Phase.PROGRESSING
    if st.stage == Stage.POST_PROMOTION:
        return Phase.PROGRESSING
    if failed is not None and failed.hash == desired.hash:
        return Phase.ROLLED_BACK
    return Phase.HEALTHY


def _checks(st: ModelDeploymentStatus) -> str:
    n = st.passed_checks
    return f"{n} check{'s' if n != 1 else ''} passed"


def _stage_text(ctx: Ctx) -> str:
    st = ctx.st
    canary = st.canary_revision
    if canary is None:
        stable = st.stable_revision
        if stable is None:
            return "no revision yet"
        if st.stage == Stage.VALIDATING:
            return f"deploying first revision {stable.version} ({stable.hash})"
        if st.phase == Phase.ROLLED_BACK and st.failed_revision is not None:
            last = next((h for h in reversed(st.history) if h.event == "RolledBack"), None)
            why = f": {last.reason}" if last else ""
            return f"serving {stable.version} ({stable.hash}); rolled back {st.failed_revision.version}{why}"
        if st.stage == Stage.POST_PROMOTION:
            return _watch_text(ctx, stable)
        return f"serving {stable.version} ({stable.hash})"
    if st.restoring is not None:
        doing = "validating" if st.stage == Stage.VALIDATING else "waiting for its pods"
        serving = st.stable_revision.version if st.stable_revision else "nothing"
        text = (f"restoring {canary.version} ({canary.hash}) after {st.restoring.reason}: {doing} before it "
                f"takes all traffic back; {serving} serves meanwhile")
    elif st.stage == Stage.VALIDATING:
        text = f"validating {canary.version} ({canary.hash})"
    elif st.stage == Stage.SHADOW:
        shadow = ctx.spec.rollout.shadow
        length = f" for {shadow.duration}" if shadow else ""
        compared = " to the comparator" if shadow is not None and shadow.compare.enabled else ""
        text = f"shadow: {st.mirror_percent}% mirrored{compared}{length}; {_checks(st)}"
    elif st.stage == Stage.CANARY:
        index, total = step_index(ctx), len(steps(ctx))
        step = steps(ctx)[index]
        if step.approval is not None:
            text = (f"step {index + 1}/{total}: waiting for approval at {held_weight(ctx, index)}% "
                    f"(kubectl modelship promote); {_checks(st)}")
        else:
            text = f"step {index + 1}/{total}: {step.weight}% for {step.duration}; {_checks(st)}"
    else:
        text = f"promoting {canary.version} ({canary.hash})"
    if st.paused:
        text += "; paused (kubectl modelship resume)"
    return text


def _watch_text(ctx: Ctx, stable: Revision) -> str:
    st, watch = ctx.st, ctx.spec.rollout.post_promotion
    end = window_end(ctx.spec, st)
    left = format_duration(max(end - ctx.now, timedelta(0))) if end is not None else "?"
    previous = st.previous_revision
    kept = ""
    if previous is not None and watch is not None:
        kept = (f"; previous {previous.version} kept at {watch.keep_previous.replicas} pods "
                f"({ctx.ready_pods(previous)} ready)")
    length = watch.window if watch is not None else "?"
    return (f"watching {stable.version} ({stable.hash}) after promotion: {left} of {length} left{kept}; "
            f"{_checks(st)}")


def previous_warm(ctx: Ctx) -> None:
    """PreviousWarm: during the window, whether a breach can move traffic back at once."""
    st, watch = ctx.st, ctx.spec.rollout.post_promotion
    previous = st.previous_revision
    if st.stage != Stage.POST_PROMOTION or previous is None or watch is None:
        st.conditions = [c for c in st.conditions if c.type != "PreviousWarm"]
        return
    state, ready = ctx.state(previous), ctx.ready_pods(previous)
    wanted = watch.keep_previous.replicas
    if ready >= max(1, wanted):
        set_condition(ctx, "PreviousWarm", "True", "Warm", f"{previous.version}: {ready} pods ready")
        return
    why = f" ({state.unschedulable})" if state is not None and state.unschedulable else ""
    then = ("a rollback moves traffic at once" if ready else
            "a rollback in the window redeploys and validates it before traffic moves")
    set_condition(ctx, "PreviousWarm", "False", "NotWarm" if wanted else "NotKept",
                  f"{previous.version}: {ready}/{wanted} pods ready{why}; {then}")


def message(ctx: Ctx) -> str:
    text = _stage_text(ctx)
    held = analysis_hold(ctx.st) if ctx.st.canary_revision is not None else None
    if held and ctx.hold is None:
        ctx.hold, ctx.hold_reason = held
    text = f"{text}; {ctx.hold}" if ctx.hold else text
    invalid = ctx.obs.invalid
    if invalid:
        kept = last_valid_generation(ctx.st)
        under = f" (generation {kept})" if kept is not None else ""
        text = (f"spec invalid, not applied: {'; '.join(invalid)}; the running rollout stays guarded under the "
                f"last valid spec{under}: {text}")
    return clip(text, MESSAGE_MAX)


def set_condition(
    ctx: Ctx, kind: str, status: Literal["True", "False", "Unknown"], reason: str, text: str = ""
) -> None:
    """Upsert a condition; lastTransitionTime moves only when the status flips."""
    conditions = ctx.st.conditions
    for i, c in enumerate(conditions):
        if c.type == kind:
            when = c.last_transition_time if c.status == status else ctx.now
            conditions[i] = Condition(type=kind, status=status, reason=reason, message=text,
                                      last_transition_time=when)
            return
    conditions.append(
        Condition(type=kind, status=status, reason=reason, message=text, last_transition_time=ctx.now)
    )


def update_conditions(ctx: Ctx, invalid: tuple[str, ...] = ()) -> None:
    """Ready, Progressing, Degraded and Invalid, each with a machine-readable reason."""
    st = ctx.st
    stable_state = ctx.state(st.stable_revision)
    if stable_state is not None and stable_state.available:
        set_condition(ctx, "Ready", "True", "StableAvailable",
                      f"{stable_state.ready_replicas} stable pods ready")
    elif st.stable_revision is None:
        set_condition(ctx, "Ready", "False", "NoRevision", "nothing deployed yet")
    else:
        ready = ctx.ready_pods(st.stable_revision)
        set_condition(ctx, "Ready", "False", "StableUnavailable", f"{ready} stable pods ready")
    phase = st.phase
    if invalid:
        set_condition(ctx, "Invalid", "True", "InvalidSpec", "; ".join(invalid))
        set_condition(ctx, "Progressing", "False", "InvalidSpec", "the newest spec is not applied until it is fixed; "
                      "the running rollout is still checked and rolled back under the last valid spec")
    else:
        set_condition(ctx, "Invalid", "False", "Valid")
        if phase in (Phase.PROGRESSING, Phase.PAUSED):
            if st.paused:
                reason = "Paused"
            elif st.awaiting_approval:
                reason = "AwaitingApproval"
            else:
                reason = ctx.hold_reason or str(st.stage or "Progressing")
            set_condition(ctx, "Progressing", "True", reason, st.message)
        else:
            set_condition(ctx, "Progressing", "False", str(phase), st.message)
    previous_warm(ctx)
    if phase in (Phase.ROLLED_BACK, Phase.FAILED):
        last = next((h for h in reversed(st.history) if h.outcome in ("RolledBack", "Failed")), None)
        before = next((c for c in st.conditions if c.type == "Degraded" and c.status == "True"), None)
        cause = ctx.cause or (before.reason if before else str(phase))
        set_condition(ctx, "Degraded", "True", cause, last.reason if last else st.message)
    else:
        set_condition(ctx, "Degraded", "False", "AsExpected")


def finalize(ctx: Ctx, desired: Revision) -> None:
    """Phase, message and conditions; an Invalid newest spec shows as phase Invalid, while Degraded and Ready
    still tell what happened to the running rollout."""
    ctx.st.phase = derive_phase(ctx.st, desired)
    ctx.st.message = message(ctx)
    update_conditions(ctx, ctx.obs.invalid)
    if ctx.obs.invalid:
        ctx.st.phase = Phase.INVALID
