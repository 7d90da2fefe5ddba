"""Manual commands arrive as two annotations written together by `kubectl modelship`:

- `modelship.dev/request`: JSON `{"id", "action", "at", "force"}`;
- `modelship.dev/requested-by`: the requester's user name. The `modelship-requester` ValidatingAdmissionPolicy
  (crds/, chart) makes the API server refuse any change of the request whose requested-by is not the user it
  authenticated, so when that policy is in force the name is the verified identity. When it is not (a cluster
  without the policy), the name is recorded as "(unverified)".

Every field is bounded here: the annotation's size, the id's form, the action, the time; the name is cut.
An unreadable request still gets an id (a digest of its text) so the engine records it once as ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, get_args

from pydantic import ValidationError

from modelship.domain.admission import REQUEST_ANNOTATION, REQUEST_TEXT_MAX, REQUESTER_ANNOTATION
from modelship.domain.status import REQUEST_ID_MAX, REQUESTER_MAX, ManualRequest, RequestAction
from modelship.domain.transitions import clip

__all__ = ["REQUESTER_ANNOTATION", "REQUEST_ANNOTATION", "parse_request", "request_id"]
ACTIONS: tuple[str, ...] = get_args(RequestAction)


def request_id(annotations: Mapping[str, str] | None) -> str | None:
    """The pending request's id as `parse_request` would give it (cheap: no policy lookup needed)."""
    request = parse_request(annotations)
    return None if request is None else request.id


def parse_request(annotations: Mapping[str, str] | None, policy_in_force: bool = False) -> ManualRequest | None:
    """The pending request, or None when there is none; a malformed one comes back with `problem` set."""
    annotations = annotations or {}
    raw = annotations.get(REQUEST_ANNOTATION)
    if not raw:
        return None
    digest = "sha256-" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:32]
    requester = annotations.get(REQUESTER_ANNOTATION) or ""
    fields: dict[str, Any] = {"id": digest, "by": clip(requester, REQUESTER_MAX) if requester else "unknown",
                              "verified": bool(requester) and policy_in_force}
    if len(raw) > REQUEST_TEXT_MAX:
        return _malformed(fields, f"the {REQUEST_ANNOTATION} annotation is {len(raw)} characters, over "
                          f"{REQUEST_TEXT_MAX}; write it with kubectl modelship")
    try:
        data = json.loads(raw)
    except ValueError:
        return _malformed(fields, f"the {REQUEST_ANNOTATION} annotation is not JSON; write it with kubectl modelship")
    if not isinstance(data, dict):
        return _malformed(fields, f"the {REQUEST_ANNOTATION} annotation is not a JSON object")
    if not requester and isinstance(data.get("by"), str) and data["by"]:
        fields["by"] = clip(data["by"], REQUESTER_MAX)  # an old plugin's self-declared name: never verified
    identifier = data.get("id")
    if not isinstance(identifier, str) or not _valid_id(identifier):
        return _malformed(fields, f"request id must be 1-{REQUEST_ID_MAX} letters, digits, '.', '_', ':' or '-'")
    fields["id"] = identifier
    action = data.get("action")
    if action not in ACTIONS:
        return _malformed(fields, f"unknown action {clip(str(action), 40)!r}; expected one of {', '.join(ACTIONS)}")
    fields["action"] = action
    at = _time(data.get("at"))
    if at is None:
        return _malformed(fields, "request time `at` must be an RFC 3339 timestamp with a zone, e.g. "
                          "2024-05-01T12:00:00.000Z")
    fields["at"] = at
    fields["force"] = data.get("force") is True
    to_version = data.get("toVersion")
    if to_version is not None:
        if action != "undo" or not isinstance(to_version, str) or not to_version or len(to_version) > REQUESTER_MAX:
            return _malformed(fields, "toVersion must be a version string, and only undo takes one")
        fields["to_version"] = to_version
    return ManualRequest.model_validate(fields)


def _valid_id(identifier: str) -> bool:
    try:
        ManualRequest.model_validate({"id": identifier})
    except ValidationError:
        return False
    return True


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _malformed(fields: dict[str, Any], problem: str) -> ManualRequest:
    return ManualRequest.model_validate({**fields, "problem": problem})
