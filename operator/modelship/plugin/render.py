"""Pure renderers: a ModelDeployment as a dict (as the API server returns it) -> text.

They take `now` as an argument and touch no I/O, so every view is unit-testable and `--watch` is just a loop
around them. They read the raw dict defensively: a status written by a newer operator, or half written,
must still render rather than crash the plugin an SRE needs during an incident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship.domain.admission import REQUEST_ANNOTATION, REQUESTER_ANNOTATION
from modelship.domain.durations import format_duration, parse_duration

Obj = Mapping[str, Any]



# --- small accessors ---------------------------------------------------------------------------------------


def dig(obj: Any, *path: str) -> Any:
    """obj[a][b]...; None when any level is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def text(value: Any, default: str = "-") -> str:
    """A cell value: None and empty become `default`."""
    if value is None or value == "":
        return default
    return str(value)


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 timestamp from the API (Z or offset) -> aware datetime; None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_age(delta: timedelta) -> str:
    """kubectl-style age: 45s, 5m10s, 3h, 2d4h."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 8 else f"{days}d"


def stamp(timestamp: Any) -> str:
    """A timestamp as RFC 3339 UTC to the second, whatever precision the operator wrote."""
    when = parse_time(timestamp)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else text(timestamp)


def age(timestamp: Any, now: datetime) -> str:
    when = parse_time(timestamp)
    return human_age(now - when) if when else "-"


def number(value: Any) -> str:
    """A metric value: 4 significant digits, '-' for no data."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.4g}"


def revision(rev: Any) -> str:
    """'v7 (9ab12e)' or '-'."""
    if not isinstance(rev, Mapping) or not rev.get("version"):
        return "-"
    return f"v{rev['version']} ({text(rev.get('hash'))})"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A kubectl-style table: left-aligned columns, three spaces apart, no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


# --- rollout position --------------------------------------------------------------------------------------


def steps_of(obj: Obj) -> list[Mapping[str, Any]]:
    steps = dig(obj, "spec", "rollout", "canary", "steps")
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def step_label(obj: Obj) -> str:
    """'2/4' during canary steps, '' otherwise."""
    status = obj.get("status") or {}
    step, steps = status.get("step"), steps_of(obj)
    if status.get("stage") != "Canary" or not isinstance(step, int) or not steps:
        return ""
    return f"{step + 1}/{len(steps)}"


def describe_step(step: Mapping[str, Any]) -> str:
    if "approval" in step:
        return "approval gate"
    return f"weight {text(step.get('weight'))}% for {text(step.get('duration'))}"


def timing(obj: Obj, now: datetime) -> str:
    """Time spent in the current step (or stage) against what it must last."""
    status = obj.get("status") or {}
    stage = status.get("stage")
    step, steps = status.get("step"), steps_of(obj)
    if stage == "Canary" and isinstance(step, int) and 0 <= step < len(steps):
        started = parse_time(status.get("stepStartedAt"))
        duration = steps[step].get("duration")
        if "approval" in steps[step]:
            waited = human_age(now - started) if started else "-"
            return f"waiting for approval for {waited}"
    elif stage == "Shadow":
        started = parse_time(status.get("stageStartedAt"))
        duration = dig(obj, "spec", "rollout", "shadow", "duration")
    elif stage in ("Validating", "Promoting"):
        started = parse_time(status.get("stageStartedAt"))
        deadline = dig(obj, "spec", "rollout", "progressDeadline") or "15m"
        so_far = human_age(now - started) if started else "-"
        return f"{so_far} in {stage} (progress deadline {deadline})"
    else:
        return "-"
    if started is None:
        return f"- of {text(duration)}"
    spent = now - started
    try:
        total = parse_duration(str(duration))
    except ValueError:
        return f"{human_age(spent)} of {text(duration)}"
    left = total - spent
    remaining = f"{format_duration(left)} left" if left.total_seconds() > 0 else "duration reached"
    return f"{format_duration(spent)} of {duration} ({remaining})"


# --- status view -------------------------------------------------------------------------------------------


def bound(metric: Mapping[str, Any]) -> str:
    parts = []
    if metric.get("min") is not None:
        parts.append(f">= {number(metric['min'])}")
    if metric.get("max") is not None:
        parts.append(f"<= {number(metric['max'])}")
    if metric.get("maxRatioToStable") is not None:
        parts.append(f"<= {number(metric['maxRatioToStable'])}x stable")
    return ", ".join(parts) or "-"


def analysis_lines(status: Mapping[str, Any], now: datetime) -> list[str]:
    last = status.get("lastAnalysis")
    if not isinstance(last, Mapping):
        return ["Analysis:    no check yet"]
    head = f"Analysis:    {text(last.get('verdict'))} {age(last.get('time'), now)} ago"
    if last.get("requests") is not None:
        head += f", {number(last.get('requests'))} requests"
    if last.get("compared") is not None:
        head += f", {number(last.get('compared'))} compared by the shadow comparator"
    head += f", {status.get('passedChecks', 0)} checks passed in this step"
    lines = [head]
    metrics = [m for m in last.get("metrics") or [] if isinstance(m, Mapping)]
    if metrics:
        rows = [
            [
                text(m.get("name")),
                number(m.get("value")),
                bound(m),
                number(m.get("stableValue")),
                text(m.get("verdict")),
                text(m.get("message"), ""),
            ]
            for m in metrics
        ]
        body = table(["SLO", "VALUE", "BOUND", "STABLE", "VERDICT", "WHY"], rows)
        lines += ["  " + line for line in body.splitlines()]
    if last.get("message"):
        lines.append(f"  {last['message']}")
    return lines


def condition_lines(status: Mapping[str, Any], now: datetime) -> list[str]:
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    if not conditions:
        return ["Conditions:  none"]
    rows = [
        [
            text(c.get("type")),
            text(c.get("status")),
            text(c.get("reason")),
            age(c.get("lastTransitionTime"), now),
            text(c.get("message"), ""),
        ]
        for c in conditions
    ]
    return ["Conditions:"] + [
        "  " + line for line in table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows).splitlines()
    ]


def hint(obj: Obj) -> str:
    """What the reader can do next, as the exact command to type."""
    meta = obj.get("metadata") or {}
    target = f"{meta.get('name')} -n {meta.get('namespace')}"
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase == "Paused" or status.get("paused"):  # before approval: a paused rollout does not advance at all
        return f"Next:        paused: kubectl modelship resume {target}"
    if status.get("awaitingApproval"):
        return f"Next:        waiting for approval: kubectl modelship promote {target}"
    if phase in ("RolledBack", "Failed"):
        return f"Next:        fix the cause, then change spec or: kubectl modelship retry {target}"
    if phase == "Invalid":
        return "Next:        fix spec (see the Invalid condition); the operator retries on the next change"
    return ""


def pending_request(obj: Obj) -> str:
    """A request annotation the operator has not handled yet (so the reader knows a command is in flight)."""
    raw = dig(obj, "metadata", "annotations", REQUEST_ANNOTATION)
    if not isinstance(raw, str):
        return ""
    try:
        req = json.loads(raw)
    except ValueError:
        return f"Request:     unreadable {REQUEST_ANNOTATION} annotation: {raw!r}"
    if not isinstance(req, Mapping) or req.get("id") == dig(obj, "status", "lastRequestId"):
        return ""
    requester = dig(obj, "metadata", "annotations", REQUESTER_ANNOTATION) or req.get("by")
    who = f"{text(req.get('action'))} by {text(requester)} at {text(req.get('at'))}"
    return f"Request:     {who} (not handled yet)"


def render_status(obj: Obj, now: datetime) -> str:
    """The `kubectl modelship status` view."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    weight = status.get("canaryWeight") or 0
    failures = status.get("consecutiveFailures") or 0
    limit = dig(spec, "rollout", "analysis", "failureLimit") or 2
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    stale = "" if observed == generation else f"  (operator has observed generation {text(observed)})"
    step, steps = status.get("step"), steps_of(obj)
    step_text = step_label(obj) or "-"
    if step_label(obj) and isinstance(step, int) and 0 <= step < len(steps):
        step_text += f" ({describe_step(steps[step])})"
    if not status:
        lines = [
            f"ModelDeployment {meta.get('namespace')}/{meta.get('name')}   generation {text(generation)}",
            f"Model:       {text(dig(spec, 'model', 'name'))} version {text(dig(spec, 'model', 'version'))}",
            "Phase:       no status yet: is the modelship operator running and watching this namespace?",
        ]
        return "\n".join(lines)
    lines = [
        f"ModelDeployment {meta.get('namespace')}/{meta.get('name')}   generation {text(generation)}{stale}",
        f"Model:       {text(dig(spec, 'model', 'name'))} desired version {text(dig(spec, 'model', 'version'))}",
        f"Phase:       {text(status.get('phase'))}"
        + ("  (awaiting approval)" if status.get("awaitingApproval") else "")
        + ("  (paused)" if status.get("paused") and status.get("phase") != "Paused" else ""),
        f"Stage:       {text(status.get('stage'))}",
        f"Step:        {step_text}",
        f"Stable:      {revision(status.get('stableRevision'))}",
        f"Canary:      {revision(status.get('canaryRevision'))}",
        *([f"Previous:    {revision(status.get('previousRevision'))} (kept warm for the post-promotion window)"]
          if status.get("previousRevision") else []),
        f"Weights:     stable {100 - weight}%  canary {weight}%  mirror {status.get('mirrorPercent') or 0}%",
        f"In step:     {timing(obj, now)}",
        *analysis_lines(status, now),
        f"Failures:    {failures}/{limit} consecutive failed checks (rollback at {limit})",
        *condition_lines(status, now),
        f"Message:     {text(status.get('message'))}",
    ]
    why = last_reason(status)
    if why:
        lines.append(f"Why:         {why}")
    for extra in (pending_request(obj), hint(obj)):
        if extra:
            lines.append(extra)
    return "\n".join(lines)


def last_reason(status: Mapping[str, Any]) -> str:
    """Why the last decision was taken: the newest history entry with its evidence."""
    entries = [h for h in status.get("history") or [] if isinstance(h, Mapping)]
    if not entries:
        return ""
    last = max(entries, key=lambda h: parse_time(h.get("time")) or datetime.min.replace(tzinfo=UTC))
    who = f" by {last['by']}" if last.get("by") and last.get("by") != "modelship" else ""
    reason = f": {last['reason']}" if last.get("reason") else ""
    return f"{text(last.get('event'))}{who} ({stamp(last.get('time'))}){reason}"


# --- tables ------------------------------------------------------------------------------------------------


def weight_cell(status: Mapping[str, Any]) -> str:
    mirror = status.get("mirrorPercent") or 0
    if mirror and not status.get("canaryWeight"):
        return f"mirror {mirror}%"
    return f"{status.get('canaryWeight') or 0}%"


def render_list(items: Sequence[Obj], now: datetime, all_namespaces: bool = False) -> str:
    """The `kubectl modelship get` table."""
    headers = ["NAME", "MODEL", "DESIRED", "STABLE", "STAGE", "WEIGHT", "PHASE", "AGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in sorted(items, key=lambda o: (dig(o, "metadata", "namespace") or "", dig(o, "metadata", "name") or "")):
        status = obj.get("status") or {}
        stage = text(status.get("stage"))
        if step_label(obj):
            stage += f" {step_label(obj)}"
        phase = text(status.get("phase"), "Pending")
        if status.get("awaitingApproval"):
            phase += " (approval)"
        row = [
            text(dig(obj, "metadata", "name")),
            text(dig(obj, "spec", "model", "name")),
            text(dig(obj, "spec", "model", "version")),
            text(dig(status, "stableRevision", "version")),
            stage,
            weight_cell(status),
            phase,
            age(dig(obj, "metadata", "creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, text(dig(obj, "metadata", "namespace")))
        rows.append(row)
    return table(headers, rows)


def render_history(obj: Obj) -> str:
    """The `kubectl modelship history` table, oldest first (the audit trail reads top to bottom)."""
    entries = [h for h in dig(obj, "status", "history") or [] if isinstance(h, Mapping)]
    if not entries:
        meta = obj.get("metadata") or {}
        return f"no history yet for {meta.get('namespace')}/{meta.get('name')}"
    entries.sort(key=lambda h: parse_time(h.get("time")) or datetime.min.replace(tzinfo=UTC))
    rows = [
        [
            stamp(h.get("time")),
            text(h.get("revision")),
            text(h.get("version")),
            text(h.get("event")),
            text(h.get("stage")),
            text(h.get("outcome")),
            text(h.get("by")),
            text(h.get("reason"), ""),
        ]
        for h in entries
    ]
    return table(["TIME", "REVISION", "VERSION", "EVENT", "STAGE", "OUTCOME", "BY", "REASON"], rows)


def render_revisions(obj: Obj) -> str:
    """The `kubectl modelship revisions` table: every revision that served as stable, oldest first."""
    entries = [e for e in dig(obj, "status", "revisions") or [] if isinstance(e, Mapping)]
    if not entries:
        meta = obj.get("metadata") or {}
        return f"no revision has served as stable yet for {meta.get('namespace')}/{meta.get('name')}"
    rows = [
        [
            text(e.get("version")),
            text(e.get("hash")),
            stamp(e.get("promotedAt")),
            stamp(e.get("retiredAt")) if e.get("retiredAt") else "-",
            text(e.get("outcome")) if e.get("outcome") else "Serving",
            text(e.get("by")),
            text(e.get("reason"), ""),
        ]
        for e in entries
    ]
    return table(["VERSION", "REVISION", "PROMOTED", "RETIRED", "OUTCOME", "BY", "HOW"], rows)
