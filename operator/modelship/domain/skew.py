"""Status timestamps from a clock that ran ahead (e.g. a replica with a skewed clock wrote them).

Every wait in the engine is `timestamp + duration <= now`; a timestamp in the future stretches each of them by
the skew (a 3m progress deadline became 62m). Such a timestamp is treated as now, written back, and said once
as a Warning Event and a history entry (not in the message: a replayed decision must produce the same status).
"""

from __future__ import annotations

from datetime import timedelta

from modelship.domain.durations import format_duration
from modelship.domain.status import ModelDeploymentStatus
from modelship.domain.transitions import Ctx

TIMED_FIELDS = ("rollout_started_at", "stage_started_at", "step_started_at", "progress_at", "last_check_at",
                "retired_at")
"""Status times the engine waits from."""
SKEW_TOLERANCE = timedelta(seconds=1)
"""Smaller skews are corrected without an Event (clocks of healthy nodes differ by milliseconds)."""


def clamp_future_times(ctx: Ctx) -> None:
    """Bring every status time later than `ctx.now` back to now; say so when one was ahead by more than
    `SKEW_TOLERANCE`."""
    st, now = ctx.st, ctx.now
    ahead: dict[str, timedelta] = {}
    for name in TIMED_FIELDS:
        value = getattr(st, name)
        if value is not None and value > now:
            ahead[ModelDeploymentStatus.model_fields[name].alias or name] = value - now
            setattr(st, name, now)
    last = st.last_analysis
    if last is not None and last.time > now:
        ahead["lastAnalysis.time"] = last.time - now
        last.time = now
    if not ahead or max(ahead.values()) <= SKEW_TOLERANCE:
        return
    listed = ", ".join(f"{field} +{format_duration(delta)}" for field, delta in sorted(ahead.items()))
    ctx.record("ClockSkew", "ClockSkew", f"status times in the future ({listed}): written by a clock ahead of "
               "this operator's; treated as now, so checks and progressDeadline count from now", warning=True)
