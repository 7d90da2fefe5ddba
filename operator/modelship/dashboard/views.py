"""What the dashboard shows, computed from ModelDeployments as the API server returns them: pure, no I/O.

The same rules as the kubectl plugin decide which buttons are live (`plugin.commands.check_request`), so the web
page refuses what the command line refuses, with the same words; the operator re-checks every request anyway.
A timeline is kept per object from the changes the dashboard sees (weights, and each SLO check's values with
their bounds), so it needs no Prometheus; with one it is seeded from the operator's series.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelship.plugin.commands import Action, check_request, check_undo
from modelship.plugin.errors import PluginError
from modelship.plugin.render import dig, parse_time

Obj = Mapping[str, Any]
ACTIONS: tuple[Action, ...] = ("promote", "promote-full", "pause", "resume", "abort", "retry", "undo")
TIMELINE_POINTS = 720
"""Per object: a point per change, so 720 covers hours of a rollout's steps and checks."""
COMPARED = frozenset({"outputShift", "outputAgreement"})
"""Output-comparison SLOs: shown as the answers panel (stable vs canary) rather than as latency/error lines."""


def key_of(obj: Obj) -> tuple[str, str]:
    return str(dig(obj, "metadata", "namespace")), str(dig(obj, "metadata", "name"))


def seconds_since(value: Any, now: datetime) -> float | None:
    when = parse_time(value)
    return None if when is None else max(0.0, (now - when).total_seconds())


def fleet_row(obj: Obj, now: datetime) -> dict[str, Any]:
    """One line of the fleet page."""
    namespace, name = key_of(obj)
    status = obj.get("status") or {}
    steps = dig(obj, "spec", "rollout", "canary", "steps") or []
    step = status.get("step")
    return {
        "namespace": namespace, "name": name,
        "phase": status.get("phase") or "Pending",
        "stage": status.get("stage"),
        "step": f"{step + 1}/{len(steps)}" if isinstance(step, int) and steps else None,
        "canaryWeight": status.get("canaryWeight") or 0,
        "mirrorPercent": status.get("mirrorPercent") or 0,
        "stable": dig(status, "stableRevision", "version"),
        "canary": dig(status, "canaryRevision", "version"),
        "verdict": dig(status, "lastAnalysis", "verdict"),
        "inStepSeconds": seconds_since(status.get("stepStartedAt") or status.get("stageStartedAt"), now),
        "awaitingApproval": bool(status.get("awaitingApproval")),
        "message": status.get("message") or "",
    }  # fmt: skip


def actions(obj: Obj) -> dict[str, str]:
    """Each action: "" when it applies now, else why not (the plugin's own words)."""
    out: dict[str, str] = {}
    for action in ACTIONS:
        try:
            check_undo(obj, None) if action == "undo" else check_request(action, obj)
        except PluginError as refused:
            out[action] = str(refused)
        else:
            out[action] = ""
    return out


def rollout_view(obj: Obj, now: datetime) -> dict[str, Any]:
    """The rollout page: where it is, the evidence of its last check, who did what, what can be done."""
    status = obj.get("status") or {}
    metrics = list(dig(status, "lastAnalysis", "metrics") or [])
    return {
        **fleet_row(obj, now),
        "evidence": [m for m in metrics if m.get("name") not in COMPARED],
        "comparison": [m for m in metrics if m.get("name") in COMPARED],
        "compared": dig(status, "lastAnalysis", "compared"),
        "lastCheckAt": dig(status, "lastAnalysis", "time"),
        "history": list(reversed(status.get("history") or [])),
        "revisions": list(status.get("revisions") or []),
        "conditions": list(status.get("conditions") or []),
        "previous": dig(status, "previousRevision", "version"),
        "actions": actions(obj),
    }


class Timeline:
    """Per object, bounded: (time, canary weight, mirror) on every change; each SLO value and bound per check."""

    def __init__(self, limit: int = TIMELINE_POINTS) -> None:
        self.limit = limit
        self._points: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._checks: dict[tuple[str, str], str] = {}

    def observe(self, obj: Obj, now: datetime) -> None:
        key = key_of(obj)
        status = obj.get("status") or {}
        points = self._points.setdefault(key, deque(maxlen=self.limit))
        point: dict[str, Any] = {"time": now.isoformat(), "canaryWeight": status.get("canaryWeight") or 0,
                                 "mirrorPercent": status.get("mirrorPercent") or 0, "phase": status.get("phase")}
        check = dig(status, "lastAnalysis", "time")
        if check and self._checks.get(key) != check:  # a new check: its values, once
            self._checks[key] = check
            point["time"] = (parse_time(check) or now).isoformat()
            point["slos"] = {m["name"]: {"value": m.get("value"), "max": m.get("max"), "min": m.get("min"),
                                         "verdict": m.get("verdict")}
                             for m in dig(status, "lastAnalysis", "metrics") or [] if m.get("name")}  # fmt: skip
        last = points[-1] if points else None
        if last is None or "slos" in point or any(last.get(k) != point[k] for k in ("canaryWeight", "mirrorPercent",
                                                                                     "phase")):
            points.append(point)

    def seed(self, key: tuple[str, str], points: list[dict[str, Any]]) -> None:
        """Points from before the dashboard started (Prometheus), oldest first, ahead of what it saw itself
        (those at or after its first own point are dropped: it saw them better)."""
        seen = self._points.get(key, deque(maxlen=self.limit))
        first = parse_time(seen[0]["time"]) if seen else None
        earlier = [p for p in points if first is None or (parse_time(p["time"]) or first) < first]
        self._points[key] = deque([*earlier, *seen], maxlen=self.limit)

    def forget(self, key: tuple[str, str]) -> None:
        self._points.pop(key, None)
        self._checks.pop(key, None)

    def points(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return list(self._points.get(key, ()))
