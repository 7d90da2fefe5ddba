"""Manual commands arrive as the `modelship.dev/request` annotation (written by `kubectl modelship`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import ValidationError

from modelship.domain.status import ManualRequest

REQUEST_ANNOTATION = "modelship.dev/request"


def parse_request(annotations: Mapping[str, str] | None) -> ManualRequest | None:
    """The pending request, or None when absent or unreadable (a bad annotation must not stop reconciling)."""
    raw = (annotations or {}).get(REQUEST_ANNOTATION)
    if not raw:
        return None
    try:
        return ManualRequest.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None
