"""status.revisions: every period a revision served as stable, bounded, oldest dropped first.

Written at the moments stable changes (first deployment, promotion, rollback in the watch window, undo), so
`kubectl modelship revisions` and `undo --to-version` read one list. Only status is touched: no imports from
the rest of the engine.
"""

from __future__ import annotations

from datetime import datetime

from modelship.domain.status import REVISIONS_LIMIT, ModelDeploymentStatus, Revision, RevisionRecord, Stage

OPERATOR = "modelship"


def serving_entry(status: ModelDeploymentStatus, revision: Revision) -> RevisionRecord | None:
    """The open entry of `revision` (it serves now), if any."""
    for entry in reversed(status.revisions):
        if entry.hash == revision.hash and entry.retired_at is None:
            return entry
    return None


def open_revision(status: ModelDeploymentStatus, revision: Revision, now: datetime, by: str, reason: str) -> None:
    """`revision` starts serving as stable."""
    if serving_entry(status, revision) is not None:
        return
    status.revisions.append(RevisionRecord(version=revision.version, hash=revision.hash, promoted_at=now,
                                           by=by, reason=reason))
    del status.revisions[:-REVISIONS_LIMIT]


def close_revision(status: ModelDeploymentStatus, revision: Revision | None, now: datetime, outcome: str) -> None:
    """`revision` stopped serving as stable: Replaced, RolledBack or Undone."""
    entry = None if revision is None else serving_entry(status, revision)
    if entry is not None:
        entry.retired_at = now
        entry.outcome = outcome


def seed_revisions(status: ModelDeploymentStatus, now: datetime) -> None:
    """A stable that serves without an open entry (status written by an operator before revision history)
    gets one, dated from when its stage began."""
    stable = status.stable_revision
    first_deploying = status.canary_revision is None and status.stage == Stage.VALIDATING
    if stable is None or first_deploying or serving_entry(status, stable) is not None:
        return
    open_revision(status, stable, status.stage_started_at or now, OPERATOR,
                  "serving when revision history began")


def earlier_revisions(status: ModelDeploymentStatus) -> list[Revision]:
    """Revisions that served before the current stable, newest first, each once (undo's candidates)."""
    stable = status.stable_revision
    seen = {stable.hash} if stable is not None else set()
    found: list[Revision] = []
    candidates = [status.previous_revision] if status.previous_revision is not None else []
    candidates += [Revision(version=e.version, hash=e.hash) for e in reversed(status.revisions)]
    for revision in candidates:
        if revision.hash not in seen:
            seen.add(revision.hash)
            found.append(revision)
    return found
