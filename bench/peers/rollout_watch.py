"""What a watch on Argo Rollouts shows, timestamped on arrival: health, step advances and pause lateness.

Why a watch (not polling): step lateness is "pause due -> the API shows the next step"; a poll would add up to
its own period to every figure. `RolloutBook` is the pure bookkeeping (unit-tested); `RolloutWatcher` feeds it
from a kubernetes watch in a thread and re-lists when the watch expires.

Argo Rollouts' status fields used: `observedGeneration` (a string), `phase`, `currentStepIndex`,
`stableRS` / `currentPodHash` (equal once the new revision is stable) and `pauseConditions[].startTime` (reason
`CanaryPauseStep`). The pause is due at startTime + the step's duration; startTime has one-second resolution,
and it is the same truncated time Argo itself adds the duration to.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
PAUSE_REASON = "CanaryPauseStep"


def parse_time(value: str) -> float:
    """RFC 3339 time as the API server writes it (`2026-11-30T22:56:33Z`) -> Unix seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class RolloutState:
    """The latest status of one Rollout, as far as the bench cares."""

    generation: int = 0
    observed: str = ""
    phase: str = ""
    step_index: int | None = None
    stable_rs: str = ""
    pod_hash: str = ""
    message: str = ""

    @property
    def healthy(self) -> bool:
        """Observed at its generation, Healthy, and the current template is the stable one."""
        return (self.observed == str(self.generation) and self.phase == "Healthy"
                and bool(self.pod_hash) and self.stable_rs == self.pod_hash)


@dataclass
class RolloutBook:
    """Per-Rollout state from watch events; while recording, step advances and pause start/advance times."""

    pause_steps: frozenset[int]
    pause_seconds: float
    states: dict[str, RolloutState] = field(default_factory=dict)
    recording: bool = False
    transitions: int = 0
    pause_started: dict[tuple[str, int], float] = field(default_factory=dict)  # (name, step) -> startTime
    advanced_at: dict[tuple[str, int], float] = field(default_factory=dict)  # (name, step) -> arrival
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, obj: dict[str, Any], arrival: float, deleted: bool = False) -> None:
        """Take one watch event (or listed object) that arrived at Unix time `arrival`."""
        metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
        name = str(metadata.get("name", ""))
        with self.lock:
            if deleted:
                self.states.pop(name, None)
                return
            state = self.states.setdefault(name, RolloutState())
            previous = state.step_index
            state.generation = int(metadata.get("generation") or 0)
            state.observed = str(status.get("observedGeneration") or "")
            state.phase = str(status.get("phase") or "")
            index = status.get("currentStepIndex")
            state.step_index = int(index) if index is not None else None
            state.stable_rs = str(status.get("stableRS") or "")
            state.pod_hash = str(status.get("currentPodHash") or "")
            state.message = str(status.get("message") or "")
            if not self.recording or state.step_index is None:
                return
            if previous is not None and state.step_index > previous:
                self.transitions += state.step_index - previous
                for step in self.pause_steps:
                    if previous <= step < state.step_index:
                        self.advanced_at.setdefault((name, step), arrival)
            if state.step_index in self.pause_steps:
                for condition in status.get("pauseConditions") or []:
                    if condition.get("reason") == PAUSE_REASON and condition.get("startTime"):
                        self.pause_started.setdefault((name, state.step_index), parse_time(condition["startTime"]))

    def start_recording(self) -> None:
        with self.lock:
            self.recording = True
            self.transitions = 0
            self.pause_started.clear()
            self.advanced_at.clear()

    def healthy_count(self) -> int:
        with self.lock:
            return sum(1 for state in self.states.values() if state.healthy)

    def refused(self) -> dict[str, str]:
        """Rollouts Argo refuses (phase Degraded, `InvalidSpec: ...`): they will never become Healthy."""
        with self.lock:
            return {name: state.message for name, state in self.states.items()
                    if state.phase == "Degraded" and state.message.startswith("InvalidSpec")}

    def lateness(self) -> list[float]:
        """Seconds from each pause's due time (startTime + duration) to the watch showing the next step."""
        with self.lock:
            return [self.advanced_at[key] - (start + self.pause_seconds)
                    for key, start in self.pause_started.items() if key in self.advanced_at]


class RolloutWatcher(threading.Thread):
    """Feeds a `RolloutBook` from a watch on one namespace's Rollouts; re-lists when the watch expires (410)."""

    def __init__(self, api_client: Any, namespace: str, book: RolloutBook) -> None:
        super().__init__(daemon=True, name=f"watch-rollouts-{namespace}")
        self.api_client = api_client
        self.namespace = namespace
        self.book = book
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        from kubernetes import client, watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        api: Any = client.CustomObjectsApi(self.api_client)
        make_watch: Any = watch.Watch
        while not self.stopped.is_set():
            try:
                listed = api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                now = time.time()
                for item in listed["items"]:
                    self.book.observe(item, now)
                version = listed["metadata"]["resourceVersion"]
                while not self.stopped.is_set():
                    stream = make_watch().stream(api.list_namespaced_custom_object, GROUP, VERSION,
                                                  self.namespace, PLURAL, resource_version=version,
                                                  timeout_seconds=60, allow_watch_bookmarks=True)
                    for event in stream:
                        arrival = time.time()
                        obj = event["object"]
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event["type"] == "ERROR":
                            raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                        if event["type"] != "BOOKMARK":
                            self.book.observe(obj, arrival, deleted=event["type"] == "DELETED")
                        if self.stopped.is_set():
                            break
            except ApiException as exc:
                if exc.status != 410:
                    self.errors.append(f"{exc.status} {exc.reason}")
                    time.sleep(1.0)
            except Exception as exc:  # keep watching through transient connection errors; they are reported
                self.errors.append(repr(exc))
                time.sleep(1.0)
