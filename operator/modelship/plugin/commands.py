"""Manual commands (promote, abort, pause, resume, retry) as a request annotation, never as a spec edit.

Why an annotation: `spec` belongs to Git (Argo CD / Flux would revert any edit), and `status` belongs to the
operator. The annotation carries a fresh id; the operator handles each id once, writes `by` into
status.history and the id into status.lastRequestId, which is how we know the command took effect.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from modelship.domain.status import ManualRequest
from modelship.plugin.cluster import ClusterApi
from modelship.plugin.errors import EXIT_NOT_CONFIRMED, PluginError
from modelship.plugin.render import REQUEST_ANNOTATION, dig, revision, step_label, text

Action = Literal["promote", "promote-full", "abort", "pause", "resume", "retry"]
ACTIONS: tuple[str, ...] = get_args(Action)
DEFAULT_WAIT_S = 30.0


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, 'Z' suffix: the form Kubernetes itself writes."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_request(action: Action, by: str, now: datetime, request_id: str | None = None) -> dict[str, str]:
    """The annotation payload; validated against the operator's ManualRequest model so both sides agree."""
    payload = {"id": request_id or str(uuid.uuid4()), "action": action, "by": by, "at": rfc3339(now)}
    ManualRequest.model_validate(payload)
    return payload


def encode(payload: Mapping[str, str]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def where(obj: Mapping[str, Any]) -> str:
    """'Canary step 2/4 at 25%' for messages."""
    status = obj.get("status") or {}
    stage = text(status.get("stage"), "no stage")
    step = f" step {step_label(obj)}" if step_label(obj) else ""
    return f"{stage}{step} at {status.get('canaryWeight') or 0}%"


def check_request(action: Action, obj: Mapping[str, Any]) -> None:
    """Refuse commands that cannot apply to the current state, with the reason and what to do instead.

    Mirrors the engine's rules (domain/engine.py `_handle_request`): the operator re-checks and records an
    ignored request as RequestIgnored; this only spares users a round trip that changes nothing.
    """
    meta = obj.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    paused = phase == "Paused" or bool(status.get("paused"))
    active = status.get("canaryRevision") is not None
    stage = f", stage {status['stage']}" if status.get("stage") else ""
    idle = (
        f"{ref} has no canary rollout in progress (phase {phase}{stage}, "
        f"stable {revision(status.get('stableRevision'))})"
    )
    if action in ("promote", "promote-full", "abort", "pause") and not active:
        raise PluginError(f"cannot {action}: {idle}")
    if action == "promote" and not status.get("awaitingApproval"):
        raise PluginError(
            f"cannot promote: {ref} is not waiting for approval ({where(obj)}, phase {phase}); it advances "
            "on its own while analysis passes. Use --full to promote the canary to 100% now, "
            "or --force to send the request anyway."
        )
    if action == "promote-full" and status.get("stage") == "Promoting":
        raise PluginError(f"cannot promote-full: {ref} is already promoting")
    if action == "pause" and paused:
        raise PluginError(f"{ref} is already paused; resume it with: kubectl modelship resume {meta.get('name')}")
    if action == "resume" and not paused:
        raise PluginError(f"cannot resume: {ref} is not paused (phase {phase})")
    if action == "retry" and (phase not in ("RolledBack", "Failed") or active):
        raise PluginError(f"cannot retry: retry restarts a rollout after RolledBack or Failed, and {ref} is {phase}")


def our_entry(obj: Mapping[str, Any], by: str) -> Mapping[str, Any] | None:
    """The newest history entry by `by`: the operator records every handled request, ignored ones included."""
    history = dig(obj, "status", "history") or []
    entries = [h for h in history if isinstance(h, Mapping) and h.get("by") == by]
    return max(entries, key=lambda h: str(h.get("time") or ""), default=None)


def outcome(obj: Mapping[str, Any], payload: Mapping[str, str]) -> tuple[bool, str]:
    """(applied?, text): what the operator did with our request, from status and our history entry."""
    status = obj.get("status") or {}
    entry = our_entry(obj, payload["by"])
    if entry is not None and entry.get("outcome") == "Ignored":
        return False, f"the operator ignored the request: {text(entry.get('reason'))}"
    lines = [
        f"done: phase {text(status.get('phase'))}, {where(obj)}",
        f"  message: {text(status.get('message'))}",
    ]
    if entry is not None:
        lines.append(f"  recorded: {text(entry.get('event'))} by {entry['by']}: {text(entry.get('reason'), '')}")
    return True, "\n".join(lines)


def send(
    api: ClusterApi,
    namespace: str,
    name: str,
    action: Action,
    *,
    force: bool = False,
    wait: bool = True,
    timeout_s: float = DEFAULT_WAIT_S,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    out: Callable[[str], None] = print,
) -> int:
    """Check, annotate, and (optionally) wait for status.lastRequestId to confirm; returns the exit code."""
    obj = api.get(namespace, name)
    if not force:
        check_request(action, obj)
    previous = dig(obj, "metadata", "annotations", REQUEST_ANNOTATION)
    if isinstance(previous, str):
        try:
            old = json.loads(previous)
        except ValueError:
            old = {}
        if isinstance(old, dict) and old.get("id") and old.get("id") != dig(obj, "status", "lastRequestId"):
            out(f"note: replacing a request not handled yet: {old.get('action')} by {old.get('by')}")
    payload = build_request(action, api.whoami(), now())
    api.patch_annotations(namespace, name, {REQUEST_ANNOTATION: encode(payload)})
    out(f"requested {action} of modeldeployment {namespace}/{name} as {payload['by']} (request {payload['id']})")
    if not wait:
        return 0
    deadline = time.monotonic() + timeout_s
    for current in api.watch(namespace, name, timeout_s=timeout_s):
        if dig(current, "status", "lastRequestId") == payload["id"]:
            applied, summary = outcome(current, payload)
            if not applied:
                raise PluginError(summary)
            out(summary)
            return 0
        if time.monotonic() > deadline:
            break
    raise PluginError(
        f"request {payload['id']} was delivered but the operator has not confirmed it within {timeout_s:g}s "
        f"(status.lastRequestId unchanged); it stays queued in the {REQUEST_ANNOTATION} annotation. "
        "Check that the modelship operator is running.",
        EXIT_NOT_CONFIRMED,
    )
