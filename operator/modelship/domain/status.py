"""ModelDeployment status: the only durable memory of a rollout (the operator keeps none in process).

Everything `decide` needs to resume after a crash lives here: stage, step, when they started, the
consecutive-failure count, the last handled manual request and a bounded history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 20
"""Progress entries kept (Started, StageChanged, AnalysisFailed, manual actions that took effect)."""
OUTCOME_HISTORY_LIMIT = 20
"""Outcome entries kept (Promoted, RolledBack, Failed, Superseded, Abandoned): only newer outcomes evict them."""
IGNORED_HISTORY_LIMIT = 5
"""Ignored manual requests kept: their own small budget, so a flood of them can never evict an outcome."""
HISTORY_REASON_MAX = 1000
"""Characters of `reason` kept per entry (and per Event message): bounds status whatever the evidence says."""
REQUEST_ID_MAX = 64
REQUESTER_MAX = 256
"""Longest requester name recorded; a longer authenticated name is cut and marked."""
REQUEST_MAX_AGE = timedelta(minutes=15)
"""A manual request older than this (by its `at`) is ignored as stale: send it again."""
REQUEST_MAX_SKEW = timedelta(minutes=2)
"""How far in the future a request's `at` may be (client clock ahead of the operator's)."""
UNVERIFIED = "unverified"
REVISIONS_LIMIT = 10
"""Entries kept in status.revisions (each one period a revision served as stable), oldest dropped first."""


class StatusModel(BaseModel):
    """Status objects: camelCase on the wire, tolerant of fields written by newer operator versions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True,
                              validate_default=True)


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    INVALID = "Invalid"


class Stage(StrEnum):
    VALIDATING = "Validating"
    SHADOW = "Shadow"
    CANARY = "Canary"
    PROMOTING = "Promoting"
    POST_PROMOTION = "PostPromotion"
    STABLE = "Stable"


class Verdict(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    NO_DATA = "NoData"
    ERROR = "Error"


class Revision(StatusModel):
    """A revision: the model version and the hash of everything that shapes its pods."""

    version: str = Field(description="Model version served by this revision.")
    hash: str = Field(description="Hash of the model and serving spec; labels modelship.dev/revision.")


class MetricResult(StatusModel):
    """One SLO check: the measured value, its bounds and the verdict."""

    name: str = Field(description="SLO name, e.g. errorRate, latencyP99Ms or a custom name.")
    value: float | None = Field(default=None, description="Canary value in the window; null when no data.")
    stable_value: float | None = Field(default=None, description="Stable value in the same window, if measured.")
    min: float | None = Field(default=None, description="Lower bound.")
    max: float | None = Field(default=None, description="Upper bound (absolute).")
    max_ratio_to_stable: float | None = Field(default=None, description="Upper bound relative to stable.")
    verdict: Verdict = Field(description="Pass, Fail, Inconclusive, NoData or Error.")
    message: str = Field(default="", description="Why, in words.")
    enforced: bool = Field(
        default=True, description="false: an observe-only SLO (enforce: false), shown but never failing a check."
    )
    detail: str | None = Field(
        default=None, description="How the answers moved, for output SLOs, e.g. 'score p50 0.97 (stable 0.62)'."
    )


class AnalysisRecord(StatusModel):
    """The latest analysis run."""

    time: datetime = Field(description="When the check ran.")
    verdict: Verdict = Field(description="Overall verdict: Fail if any metric failed, Pass only if all passed.")
    requests: float | None = Field(default=None, description="Canary requests seen in the window.")
    compared: float | None = Field(
        default=None, description="Request pairs the comparator judged in the window (output SLOs only)."
    )
    metrics: list[MetricResult] = Field(default_factory=list, description="Per-SLO results.")
    message: str = Field(default="", description="Summary.")


class Condition(StatusModel):
    """A Kubernetes-style condition (Ready, Progressing, Degraded, Invalid)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class HistoryEntry(StatusModel):
    """One finished (or current) rollout attempt, or one manual action, for the audit trail."""

    revision: str = Field(description="Revision hash.")
    version: str = Field(description="Model version.")
    event: str = Field(description="What happened, e.g. Started, StageChanged, Promoted, RolledBack, Approved.")
    stage: str | None = Field(default=None, description="Stage at the time.")
    outcome: str | None = Field(default=None, description="Promoted, RolledBack, Aborted, Superseded, ...")
    reason: str = Field(default="", description="Why, with the evidence.")
    by: str | None = Field(
        default=None,
        description="Who acted: 'modelship', or the requester the API server authenticated (the "
        "modelship.dev/requested-by annotation checked by the modelship-requester ValidatingAdmissionPolicy); "
        "'NAME (unverified)' when that policy was not in force.",
    )
    request: str | None = Field(default=None, description="Id of the manual request this entry records.")
    time: datetime = Field(description="When.")


class RevisionRecord(StatusModel):
    """One period a revision served as stable: the revision history `kubectl modelship revisions` shows."""

    version: str = Field(description="Model version.")
    hash: str = Field(description="Revision hash.")
    promoted_at: datetime | None = Field(default=None, description="When it started serving as stable.")
    retired_at: datetime | None = Field(default=None, description="When it stopped; null while it serves.")
    outcome: str | None = Field(
        default=None,
        description="How the period ended: Replaced (a newer revision was promoted), RolledBack (a breach in "
        "the post-promotion window), Undone (kubectl modelship undo); null while it serves.",
    )
    by: str = Field(default="modelship", description="Who made it stable: modelship, an approver, an undo.")
    reason: str = Field(default="", description="How it became stable, in words.")


class Restore(StatusModel):
    """A cold revision being redeployed to take all traffic back: who asked, and how stable's period ends."""

    by: str = Field(description="Who asked: modelship (a breach in the watch window) or the undo requester.")
    outcome: str = Field(description="How the current stable's period ends once traffic moved: RolledBack, Undone.")
    reason: str = Field(default="", description="Why, in words.")


RequestAction = Literal["promote", "promote-full", "abort", "pause", "resume", "retry", "undo"]


class ManualRequest(StatusModel):
    """A command from `kubectl modelship` (delivered as annotations, never through spec), bounded on parse.

    `by` comes from the modelship.dev/requested-by annotation; `verified` says the API server's admission
    policy tied it to the authenticated user. `problem` is set when the annotation could not be read: the
    engine records such a request as ignored, once, instead of dropping it silently.
    """

    id: str = Field(max_length=REQUEST_ID_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    action: RequestAction | None = None
    by: str = Field(default="unknown", max_length=REQUESTER_MAX + 16)
    at: datetime | None = None
    verified: bool = False
    force: bool = False
    to_version: str | None = Field(default=None, max_length=REQUESTER_MAX)
    """undo only: the version to go back to (default: the revision that served before the current one)."""
    problem: str | None = Field(default=None, max_length=HISTORY_REASON_MAX)


class LastValidSpec(StatusModel):
    """The newest spec the operator could act on; guards the running rollout while a newer spec is Invalid."""

    generation: int = Field(description="metadata.generation of that spec.")
    data: str = Field(description="The spec as compact JSON, zlib-compressed, base64-encoded.")


class ModelDeploymentStatus(StatusModel):
    """Observed state of a ModelDeployment."""

    observed_generation: int | None = Field(default=None, description="Generation last acted upon.")
    phase: Phase = Field(
        default=Phase.PENDING, description="Pending, Progressing, Paused, Healthy, RolledBack, Failed, Invalid."
    )
    stage: Stage | None = Field(default=None, description="Validating, Shadow, Canary, Promoting or Stable.")
    step: int | None = Field(default=None, description="Index of the current canary step (0-based).")
    canary_weight: int = Field(default=0, description="Percent of live traffic on the canary.")
    mirror_percent: int = Field(default=0, description="Percent of live traffic mirrored to the canary.")
    stable_revision: Revision | None = Field(default=None, description="Revision serving live traffic.")
    canary_revision: Revision | None = Field(default=None, description="Revision being rolled out.")
    message: str = Field(default="", description="Human summary of where the rollout is.")
    paused: bool = Field(default=False, description="Paused by `kubectl modelship pause`.")
    rollout_started_at: datetime | None = Field(default=None, description="When this rollout started.")
    stage_started_at: datetime | None = Field(default=None, description="When the current stage started.")
    step_started_at: datetime | None = Field(default=None, description="When the current step started.")
    progress_at: datetime | None = Field(default=None, description="Last time the rollout made progress.")
    last_check_at: datetime | None = Field(default=None, description="When the last SLO check ran.")
    consecutive_failures: int = Field(default=0, description="Failed checks in a row.")
    passed_checks: int = Field(default=0, description="Passing checks in the current step or stage.")
    awaiting_approval: bool = Field(default=False, description="Waiting at an approval step.")
    last_request_id: str | None = Field(default=None, description="Id of the last handled manual request.")
    last_request_at: datetime | None = Field(
        default=None,
        description="`at` of the last manual request acted upon; a request not sent after it is a replay, ignored.",
    )
    retired_revisions: list[Revision] = Field(
        default_factory=list, description="Revisions that no longer take traffic and await scale-down."
    )
    retired_at: datetime | None = Field(default=None, description="When traffic last left a revision.")
    failed_revision: Revision | None = Field(
        default=None,
        description="Revision last rolled back (or failed to deploy); not retried until spec changes or retry.",
    )
    stable_replicas: int | None = Field(
        default=None,
        description="Stable replicas while GPUs are lent to the canary (ScaleDownStable); null: full.",
    )
    promote_full: bool = Field(
        default=False, description="promote-full requested: promote at the next passing check, skip steps."
    )
    next_reconcile_at: datetime | None = Field(
        default=None, description="When the operator looks at this object again (step end, next check, deadline)."
    )
    last_analysis: AnalysisRecord | None = Field(default=None, description="Latest SLO check.")
    last_valid_spec: LastValidSpec | None = Field(
        default=None,
        description="The last spec the operator could act on: while a newer spec is Invalid, the running rollout "
        "is still judged, timed out and rolled back under it.",
    )
    previous_revision: Revision | None = Field(
        default=None,
        description="The revision stable replaced, kept warm through the post-promotion window (rollback target).",
    )
    baseline: AnalysisRecord | None = Field(
        default=None,
        description="The new stable's last canary check, kept through the post-promotion window: the baseline "
        "its ratio bounds (maxRatioToStable) are judged against once it carries all traffic.",
    )
    restoring: Restore | None = Field(
        default=None,
        description="Set while a revision that was not warm is redeployed to take all traffic back (undo, or a "
        "post-promotion rollback). It is validated first, then takes 100% without shadow or steps.",
    )
    revisions: list[RevisionRecord] = Field(
        default_factory=list,
        description=f"Every revision that served as stable, oldest first (at most {REVISIONS_LIMIT}).",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded, Invalid, PreviousWarm."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description=f"Audit trail, oldest first: at most {OUTCOME_HISTORY_LIMIT} outcomes, {HISTORY_LIMIT} progress "
        f"entries and {IGNORED_HISTORY_LIMIT} ignored requests, each budget trimmed oldest first on its own.",
    )
