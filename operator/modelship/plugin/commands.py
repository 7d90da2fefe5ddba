"""Manual commands (promote, abort, pause, resume, retry) as request annotations, never as a spec edit.

Why annotations: `spec` belongs to Git (Argo CD / Flux would revert any edit), and `status` belongs to the
operator. `modelship.dev/request` carries a fresh id, the action and the time (`at`, always after the last
request the operator acted upon, which it requires); `modelship.dev/requested-by` carries the caller's user
name as the API server reports it, which the modelship-requester admission policy checks. The operator
handles each id once, records the requester and id in status.history and the id in status.lastRequestId,
which is how we know the command took effect.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from modelship.domain.admission import REQUEST_ANNOTATION, REQUESTER_ANNOTATION
from modelship.domain.status import ManualRequest
from modelship.plugin.cluster import ClusterApi
from modelship.plugin.errors import EXIT_NOT_CONFIRMED, PluginError
from modelship.plugin.render import dig, parse_time, revision, step_label, steps_of, text

Action = Literal["promote", "promote-full", "abort", "pause", "resume", "retry", "undo"]
ACTIONS: tuple[str, ...] = get_args(Action)
DEFAULT_WAIT_S = 30.0


def rfc3339(moment: datetime) -> str:
    """UTC, millisecond precision, 'Z' suffix (two requests in one second stay in order)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_time(now: datetime, obj: Mapping[str, Any]) -> datetime:
    """`now`, or just after status.lastRequestAt: the operator acts only on requests sent after the last one."""
    last = parse_time(dig(obj, "status", "lastRequestAt"))
    return now if last is None or now > last else last + timedelta(milliseconds=1)


def build_request(
    action: Action, now: datetime, request_id: str | None = None, force: bool = False, to_version: str | None = None
) -> dict[str, Any]:
    """The request annotation's payload; validated against the operator's ManualRequest model so both agree."""
    payload: dict[str, Any] = {"id": request_id or str(uuid.uuid4()), "action": action, "at": rfc3339(now)}
    if force:
        payload["force"] = True
    if to_version is not None:
        payload["toVersion"] = to_version
    ManualRequest.model_validate({**payload, "to_version": to_version})
    return payload


def encode(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def request_annotations(payload: Mapping[str, Any], by: str) -> dict[str, str]:
    """Both annotations, written in one patch (the admission policy requires them to change together)."""
    return {REQUEST_ANNOTATION: encode(payload), REQUESTER_ANNOTATION: by}


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
    watching = status.get("stage") == "PostPromotion" and status.get("previousRevision") is not None
    if action == "abort" and watching:
        return
    if action in ("promote", "promote-full", "abort", "pause") and not active:
        raise PluginError(f"cannot {action}: {idle}")
    if action == "promote" and not status.get("awaitingApproval"):
        raise PluginError(
            f"cannot promote: {ref} is not waiting for approval ({where(obj)}, phase {phase}); it advances "
            "on its own while analysis passes. Use --full to promote the canary to 100% now, "
            "or --force to send the request anyway."
        )
    if action == "promote" and last_gate(obj):
        problem = last_check_problem(status)
        if problem:
            raise PluginError(
                f"cannot promote: {ref} waits at its last approval gate, and approving it promotes the canary to "
                f"100%, but {problem}. Wait for a passing check (kubectl modelship status {meta.get('name')}), "
                "abort, or use --force to promote anyway (recorded in history as forced)."
            )
    if action == "promote-full" and status.get("stage") == "Promoting":
        raise PluginError(f"cannot promote-full: {ref} is already promoting")
    if action == "pause" and paused:
        raise PluginError(f"{ref} is already paused; resume it with: kubectl modelship resume {meta.get('name')}")
    if action == "resume" and not paused:
        raise PluginError(f"cannot resume: {ref} is not paused (phase {phase})")
    if action == "retry" and (phase not in ("RolledBack", "Failed") or active):
        raise PluginError(f"cannot retry: retry restarts a rollout after RolledBack or Failed, and {ref} is {phase}")


def check_undo(obj: Mapping[str, Any], to_version: str | None) -> None:
    """Refuse an undo the operator would ignore (mirrors domain/post_promotion.py `undo_target`)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    canary, stable = status.get("canaryRevision"), status.get("stableRevision")
    if isinstance(canary, Mapping):
        raise PluginError(f"cannot undo: a rollout of {text(canary.get('version'))} is in progress on {ref}; abort "
                          f"it (kubectl modelship abort {meta.get('name')}) to put all traffic back on stable")
    if not isinstance(stable, Mapping):
        raise PluginError(f"cannot undo: nothing serves as stable on {ref} yet")
    earlier = earlier_versions(status)
    if to_version is None:
        if not earlier:
            raise PluginError(f"cannot undo: no earlier revision served on {ref}")
        return
    if to_version == stable.get("version"):
        raise PluginError(f"cannot undo: version {to_version} already serves as stable on {ref}")
    if to_version not in earlier:
        known = ", ".join(earlier) or "none"
        raise PluginError(f"cannot undo to version {to_version}: it never served as stable on {ref} (earlier "
                          f"versions: {known}; see kubectl modelship revisions {meta.get('name')})")


def earlier_versions(status: Mapping[str, Any]) -> list[str]:
    """Versions that served before the current stable, newest first (undo's candidates)."""
    stable = status.get("stableRevision") or {}
    found: list[str] = []
    previous = status.get("previousRevision")
    entries = [previous] if isinstance(previous, Mapping) else []
    entries += [e for e in reversed(status.get("revisions") or []) if isinstance(e, Mapping)]
    for entry in entries:
        version = entry.get("version")
        if isinstance(version, str) and entry.get("hash") != stable.get("hash") and version not in found:
            found.append(version)
    return found


def last_gate(obj: Mapping[str, Any]) -> bool:
    """Waiting at the last step, an approval gate: approving it promotes to 100%."""
    status, steps = obj.get("status") or {}, steps_of(obj)
    step = status.get("step")
    return bool(status.get("awaitingApproval")) and isinstance(step, int) and step == len(steps) - 1


def last_check_problem(status: Mapping[str, Any]) -> str:
    """Why the latest check does not allow promoting ('' when it passed), mirroring the operator's rule."""
    last = status.get("lastAnalysis")
    if not isinstance(last, Mapping):
        return "no SLO check has run yet"
    if last.get("verdict") == "Pass":
        return ""
    failing = [f"{text(m.get('name'))}={text(m.get('value'))} ({text(m.get('verdict'))})"
               for m in last.get("metrics") or [] if isinstance(m, Mapping) and m.get("verdict") != "Pass"]
    detail = f": {', '.join(failing)}" if failing else ""
    return f"the latest check is {text(last.get('verdict'))}{detail}"


def our_entry(obj: Mapping[str, Any], request_id: str) -> Mapping[str, Any] | None:
    """The newest history entry for our request id: the operator records every handled request, ignored too."""
    history = dig(obj, "status", "history") or []
    entries = [h for h in history if isinstance(h, Mapping) and h.get("request") == request_id]
    return max(entries, key=lambda h: str(h.get("time") or ""), default=None)


def outcome(obj: Mapping[str, Any], payload: Mapping[str, Any]) -> tuple[bool, str]:
    """(applied?, text): what the operator did with our request, from status and our history entry."""
    status = obj.get("status") or {}
    entry = our_entry(obj, payload["id"])
    if entry is not None and entry.get("outcome") == "Ignored":
        return False, f"the operator ignored the request: {text(entry.get('reason'))}"
    lines = [
        f"done: phase {text(status.get('phase'))}, {where(obj)}",
        f"  message: {text(status.get('message'))}",
    ]
    if entry is not None:
        who = text(entry.get("by"))
        lines.append(f"  recorded: {text(entry.get('event'))} by {who}: {text(entry.get('reason'), '')}")
    return True, "\n".join(lines)


def send(
    api: ClusterApi,
    namespace: str,
    name: str,
    action: Action,
    *,
    force: bool = False,
    to_version: str | None = None,
    wait: bool = True,
    timeout_s: float = DEFAULT_WAIT_S,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    out: Callable[[str], None] = print,
) -> int:
    """Check, annotate, and (optionally) wait for status.lastRequestId to confirm; returns the exit code."""
    obj = api.get(namespace, name)
    if not force:
        check_undo(obj, to_version) if action == "undo" else check_request(action, obj)
    elif action == "promote" and last_gate(obj) and last_check_problem(obj.get("status") or {}):
        out(f"warning: promoting over a check that did not pass ({last_check_problem(obj.get('status') or {})}): "
            "the canary goes to 100%; history records this approval as forced")
    previous = dig(obj, "metadata", "annotations", REQUEST_ANNOTATION)
    if isinstance(previous, str):
        try:
            old = json.loads(previous)
        except ValueError:
            old = {}
        if isinstance(old, dict) and old.get("id") and old.get("id") != dig(obj, "status", "lastRequestId"):
            who = dig(obj, "metadata", "annotations", REQUESTER_ANNOTATION) or old.get("by")
            out(f"note: replacing a request not handled yet: {old.get('action')} by {who}")
    by = api.whoami()
    payload = build_request(action, request_time(now(), obj), force=force, to_version=to_version)
    api.patch_annotations(namespace, name, request_annotations(payload, by))
    out(f"requested {action} of modeldeployment {namespace}/{name} as {by} (request {payload['id']})")
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
