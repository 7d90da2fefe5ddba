"""The desired child state derived from status: Deployments, replicas, route, and clean-up.

Emitted in full on every decision (every action is idempotent), so a hand-edited route is restored and a
crash between the status patch and the apply heals on the next reconcile.
"""

from __future__ import annotations

from math import ceil

from modelship.domain.actions import (
    Action,
    DeleteRevision,
    EnsureComparator,
    EnsureRevision,
    RemoveComparator,
    Role,
    SetTraffic,
)
from modelship.domain.api import GpuSurgePolicy
from modelship.domain.durations import parse_duration
from modelship.domain.post_promotion import warm
from modelship.domain.slos import active_comparison
from modelship.domain.status import Revision, Stage
from modelship.domain.transitions import Ctx

ROUTED_STAGES = (Stage.SHADOW, Stage.CANARY, Stage.PROMOTING)
MIN_COMPARE_WINDOW_S = 10
"""The comparator's window is the analysis interval, as Prometheus' query window, and never below 10 s."""


def stable_floor(replicas: int, canary_weight: int) -> int:
    """Fewest stable pods that can carry stable's traffic share: ceil(replicas * share), at least 1."""
    return max(1, ceil(replicas * (100 - canary_weight) / 100))


def replica_plan(ctx: Ctx) -> tuple[int, int]:
    """(stable, canary) replicas.

    Mesh routers run the canary at full size (any weight can go to it, promotion needs no scale-up). The
    `none` router splits by ready replicas, so both sizes follow the weight. Under gpuSurge ScaleDownStable
    (GPUs are scarce) the canary is sized to the share it carries now (at least one pod to validate, full
    size while promoting), and when it cannot be scheduled stable shrinks by the missing pods, never below
    `stable_floor` of the share stable carries NOW: a stable serving 100% keeps every pod, whatever the
    canary is being prepared for (while promoting, traffic moves to the canary as its pods come up, see
    `stages.promoting`, and stable lends only what it no longer carries). The shrink is kept in
    status.stableReplicas (monotone: a replayed decision cannot shrink twice; a further shrink waits until
    stable has settled at the lent size) until the canary leaves.
    """
    st, spec = ctx.st, ctx.spec
    replicas = spec.serving.replicas
    canary = st.canary_revision
    if canary is None:
        st.stable_replicas = None
        return replicas, 0
    weight = st.canary_weight
    stable_n, canary_n = replicas, replicas
    if spec.traffic.kind == "none":
        share = ceil(replicas * weight / 100)
        canary_n = max(1, share)
        stable_n = replicas - share if weight >= 100 else max(1, replicas - share)
    if st.stage == Stage.PROMOTING:
        canary_n = replicas
    if spec.rollout.gpu_surge != GpuSurgePolicy.SCALE_DOWN_STABLE:
        st.stable_replicas = None
        return stable_n, canary_n
    if spec.traffic.kind != "none":
        canary_n = replicas if st.stage == Stage.PROMOTING else max(1, ceil(replicas * weight / 100))
    cap = stable_n if st.stable_replicas is None else min(st.stable_replicas, stable_n)
    cs = ctx.state(canary)
    if cs is not None and cs.unschedulable and not cs.available:
        missing = max(0, canary_n - cs.ready_replicas)
        lent, ss = st.stable_replicas, ctx.state(st.stable_revision)
        if lent is None:
            cap = min(cap, stable_n - missing)
        elif ss is not None and ss.desired_replicas <= lent and ss.ready_replicas <= lent:
            # Stable already runs at its lent size and the canary still lacks pods (e.g. it grows for the
            # next step or promotion): lend more. Counting `missing` from the full size would stop here.
            cap = min(cap, lent - missing)
    cap = max(cap, min(stable_floor(replicas, weight), stable_n))
    st.stable_replicas = cap if cap < stable_n else None
    return cap, canary_n


def cleanup(ctx: Ctx) -> list[Action]:
    """Delete retired revisions after scaleDownDelay, and any owned Deployment status no longer knows."""
    st = ctx.st
    delay = parse_duration(ctx.spec.rollout.scale_down_delay)
    due = st.retired_at is None or ctx.now - st.retired_at >= delay
    actions: list[Action] = []
    if due:
        actions.extend(DeleteRevision(r.hash) for r in st.retired_revisions)
        st.retired_revisions = []
    if not st.retired_revisions:
        st.retired_at = None
    kept = (st.stable_revision, st.canary_revision, st.previous_revision, *st.retired_revisions)
    known = {r.hash for r in kept if r is not None}
    known.update(a.revision_hash for a in actions if isinstance(a, DeleteRevision))
    actions.extend(DeleteRevision(h) for h in sorted(ctx.obs.revisions) if h not in known)
    return actions


def desired_actions(ctx: Ctx) -> list[Action]:
    """EnsureRevision for stable (and canary), SetTraffic, then clean-up. Traffic goes first when it leaves
    a revision (rollback, supersede), last when it moves onto one that must exist first."""
    st = ctx.st
    stable = st.stable_revision
    if stable is None:
        return []
    stable_n, canary_n = replica_plan(ctx)
    ensures: list[Action] = [EnsureRevision(stable, Role.STABLE, stable_n)]
    canary = st.canary_revision
    if canary is not None:
        ensures.append(EnsureRevision(canary, Role.CANARY, canary_n))
    watch = ctx.spec.rollout.post_promotion
    if st.previous_revision is not None and watch is not None:
        ensures.append(EnsureRevision(st.previous_revision, Role.PREVIOUS, watch.keep_previous.replicas))
    routed = canary if canary is not None and st.stage in ROUTED_STAGES else None
    if routed is None:
        st.canary_weight = st.mirror_percent = 0
    baseline = compared_previous(ctx)
    if baseline is not None:  # the previous revision answers the comparator's copies, never a live request
        routed = baseline
    comparator = comparator_action(ctx, routed, judged=stable if baseline is not None else routed)
    if isinstance(comparator, EnsureComparator) and st.stage in (Stage.CANARY, Stage.POST_PROMOTION):
        st.mirror_percent = 100  # every live request to the comparator, which compares its sample of them
    traffic = SetTraffic(stable=stable, canary=routed, canary_weight=st.canary_weight,
                         mirror_percent=st.mirror_percent, compared=isinstance(comparator, EnsureComparator))
    if ctx.traffic_first:
        core = [traffic, *ensures]
    else:  # grow before traffic arrives, shrink only once it has left
        shrinks = [e for e in ensures if isinstance(e, EnsureRevision) and _shrinks(ctx, e)]
        core = [*[e for e in ensures if e not in shrinks], traffic, *shrinks]
    # the comparator exists before the mirror points at it, and goes only once the mirror has left it
    if isinstance(comparator, EnsureComparator):
        core.insert(core.index(traffic), comparator)
    else:
        core.append(comparator)
    return core + cleanup(ctx)


def compared_previous(ctx: Ctx) -> Revision | None:
    """In the post-promotion window, the previous revision the new stable is compared against: only while the
    window compares (`canarySamplePercent` > 0) and the previous revision has a Ready pod to answer."""
    st = ctx.st
    previous = st.previous_revision
    if st.stage != Stage.POST_PROMOTION or previous is None or active_comparison(ctx.spec, st.stage) is None:
        return None
    return previous if warm(ctx, previous) else None


def comparator_action(
    ctx: Ctx, routed: Revision | None, judged: Revision | None
) -> EnsureComparator | RemoveComparator:
    """Run the comparator while the stage compares (`slos.active_comparison`) and something answers its
    copies (`routed`, behind `<name>-canary`), judging `judged`; remove it otherwise."""
    comparison = active_comparison(ctx.spec, ctx.st.stage)
    if comparison is None or routed is None or judged is None:
        return RemoveComparator()
    compare, percent = comparison
    window = max(MIN_COMPARE_WINDOW_S, int(parse_duration(ctx.spec.rollout.analysis.interval).total_seconds()))
    return EnsureComparator(canary=judged, compare=compare, sample_percent=percent, window_seconds=window,
                            after_promotion=judged != routed)


def _shrinks(ctx: Ctx, ensure: EnsureRevision) -> bool:
    state = ctx.obs.revisions.get(ensure.revision.hash)
    return state is not None and ensure.replicas < state.desired_replicas
