"""A child apply the API server refused: durable in the `Applied` condition, so later decisions know.

Why a condition and not a crash: a refused apply (invalid object, forbidden, denied by a webhook or policy)
repeats on every reconcile. Raising left status untouched and no Event, and the transition that needed the
apply was re-decided each time, restarting the progress deadline. Instead the controller keeps the status
from before that decision (the transition did not happen), records the API error here, and the engine rolls
back once progressDeadline has passed since the last real progress (`stages.check_refused`).
"""

from __future__ import annotations

from datetime import datetime

from modelship.domain.invalid import set_condition
from modelship.domain.status import ModelDeploymentStatus, Phase

APPLIED = "Applied"
REFUSED_REASON = "ApplyRefused"
MESSAGE_LIMIT = 1000


def refusal(status: ModelDeploymentStatus) -> str | None:
    """The refused apply recorded in status (what and the API error), or None when the last apply went through."""
    found = next((c for c in status.conditions if c.type == APPLIED), None)
    if found is None or found.status != "False":
        return None
    return found.message or "an apply"


def mark_refused(status: ModelDeploymentStatus, what: str, now: datetime) -> ModelDeploymentStatus:
    """`status` (the one from before the refused decision) with the refusal recorded and said in the message."""
    text = what[:MESSAGE_LIMIT]
    deadline = " (a running rollout rolls back at progressDeadline)" if status.canary_revision else ""
    return status.model_copy(update={
        "phase": status.phase or Phase.PENDING,
        "message": f"holding, the API server refused {text}; fix the object or policy it names{deadline}",
        "conditions": set_condition(status.conditions, APPLIED, "False", REFUSED_REASON, text, now),
    })


def mark_applied(status: ModelDeploymentStatus, now: datetime) -> ModelDeploymentStatus:
    """Every apply of a decision went through: clear a recorded refusal (no condition is added otherwise)."""
    if refusal(status) is None:
        return status
    conditions = set_condition(status.conditions, APPLIED, "True", "Applied", "every child object applied", now)
    return status.model_copy(update={"conditions": conditions})
