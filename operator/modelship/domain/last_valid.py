"""The last valid spec, kept in status so an Invalid newest spec never leaves a running rollout unguarded.

While the newest spec is Invalid (it does not parse, or the operator refuses it), the engine keeps judging,
timing out and rolling back the running rollout under the spec it was started with. That spec must survive a
restart, so it lives in `status.lastValidSpec` (durable, never in memory): compact JSON, zlib-compressed and
base64-encoded, which keeps a typical spec under 2 KiB of status. A spec whose encoding exceeds
`LAST_VALID_SPEC_LIMIT` is not kept (status must stay far below etcd's limits); an Invalid spec that follows it
then freezes the rollout as before, and says so.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from pydantic import ValidationError

from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.status import LastValidSpec, ModelDeploymentStatus

LAST_VALID_SPEC_LIMIT = 64 * 1024
"""Most characters of encoded spec kept in status."""


def encode_spec(spec: ModelDeploymentSpec) -> str:
    raw = spec.model_dump_json(by_alias=True, exclude_none=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def remember(status: ModelDeploymentStatus, spec: ModelDeploymentSpec, generation: int) -> None:
    """Keep `spec` as the last valid one (once per generation: encoding is not free at fleet scale)."""
    kept = status.last_valid_spec
    if kept is not None and kept.generation == generation:
        return
    data = encode_spec(spec)
    status.last_valid_spec = LastValidSpec(generation=generation, data=data) if len(
        data) <= LAST_VALID_SPEC_LIMIT else None


def last_valid_spec(status: ModelDeploymentStatus) -> ModelDeploymentSpec | None:
    """The spec kept by `remember`, or None when none was kept or it cannot be read back."""
    kept = status.last_valid_spec
    if kept is None:
        return None
    try:
        raw = zlib.decompress(base64.b64decode(kept.data, validate=True))
        return ModelDeploymentSpec.model_validate_json(raw)
    except (binascii.Error, zlib.error, ValidationError, ValueError):
        return None


def last_valid_generation(status: ModelDeploymentStatus) -> int | None:
    kept = status.last_valid_spec
    return None if kept is None else kept.generation
