"""Revision identity: a short hash of everything that shapes a revision's pods.

Rollout, SLO and validation settings are deliberately left out: tuning a threshold must not restart pods.
Replica count is left out too: scaling (by hand, GitOps or an autoscaler) resizes the running revisions
instead of starting a canary rollout.
"""

from __future__ import annotations

import hashlib
import json

from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.status import Revision

HASH_LENGTH = 10


def revision_hash(spec: ModelDeploymentSpec) -> str:
    """Stable hash of model + serving; the same spec always yields the same revision label."""
    material = {
        "model": spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "serving": spec.serving.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"replicas"}),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:HASH_LENGTH]


def desired_revision(spec: ModelDeploymentSpec) -> Revision:
    """The revision the spec asks for."""
    return Revision(version=spec.model.version, hash=revision_hash(spec))


def spec_for(spec: ModelDeploymentSpec, revision: Revision) -> ModelDeploymentSpec:
    """The spec as it applies to `revision`: an earlier revision brought back (undo, a rollback after promotion)
    is served and validated pinned to its own model version, not the one the spec names now."""
    if revision.version == spec.model.version:
        return spec
    return spec.model_copy(update={"model": spec.model.model_copy(update={"version": revision.version})})
