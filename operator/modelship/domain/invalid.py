"""A spec the operator cannot act on: say which field and how to fix it, and touch nothing that runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modelship.domain.status import Condition, ModelDeploymentStatus, Phase

INVALID = "Invalid"


def set_condition(
    conditions: Sequence[Condition], type_: str, status: str, reason: str, message: str, now: datetime
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime when its status did not change."""
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        since = cond.last_transition_time if cond.status == status else now
        result.append(
            Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=since)
        )
    if not found:
        result.append(
            Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=now)
        )
    return result


def mark_invalid(
    status: ModelDeploymentStatus, problems: Sequence[str], generation: int, now: datetime
) -> ModelDeploymentStatus:
    """Phase Invalid with every problem listed; stable revision, weights and history stay as they were."""
    message = "; ".join(problems) or "spec is invalid"
    conditions = set_condition(status.conditions, INVALID, "True", "InvalidSpec", message, now)
    return status.model_copy(
        update={
            "phase": Phase.INVALID,
            "observed_generation": generation,
            "message": f"invalid spec, the running revision is untouched: {message}"[:2000],
            "conditions": conditions,
        }
    )
