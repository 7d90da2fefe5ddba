"""What a watch on ModelDeployments shows, timestamped on arrival: health, stage/step transitions, step lateness.

Why a watch (not polling): step lateness is "step due -> the API shows the next step"; a poll would add up to
its own period to every figure. `FleetBook` is the pure bookkeeping (unit-tested); `ObjectWatcher` feeds any
such book from a kubernetes watch in a thread and re-lists when the watch expires.

Status fields used (operator/modelship/domain/status.py): `observedGeneration`, `phase`, `stage`, `step`,
`stepStartedAt` (when the current step started; a step is due at stepStartedAt + its duration) and
`stableRevision.version`. A transition is any change of (stage, step) while recording: Stable -> Validating
(the rollout starts), Validating -> Canary step 0, step 0 -> step 1, step 1 -> Promoting, Promoting -> Stable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GROUP, VERSION, PLURAL = "modelship.dev", "v1alpha1", "modeldeployments"
STAGE_ORDER = {"Validating": 1, "Shadow": 2, "Canary": 3, "Promoting": 4, "Stable": 5}
CANARY = STAGE_ORDER["Canary"]


def parse_time(value: str) -> float:
    """RFC 3339 time as written in status (`2026-11-30T22:56:33.123456Z` or `+00:00`) -> Unix seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class DeploymentState:
    """The latest status of one ModelDeployment, as far as the bench cares."""

    generation: int = 0
    observed: int = 0
    phase: str = ""
    stage: str = ""
    step: int | None = None
    stable_version: str = ""

    @property
    def position(self) -> tuple[int, int]:
        """Where the rollout is, ordered: (stage rank, step); no stage reads as Stable."""
        return STAGE_ORDER.get(self.stage, STAGE_ORDER["Stable"]), self.step or 0

    def healthy(self, version: str | None = None) -> bool:
        """Observed at its generation, Healthy, and (if given) serving `version` as stable."""
        return (self.observed == self.generation > 0 and self.phase == "Healthy"
                and (version is None or self.stable_version == version))


@dataclass
class FleetBook:
    """Per-object state from watch events; while recording, transitions and step start/advance times."""

    step_seconds: float
    states: dict[str, DeploymentState] = field(default_factory=dict)
    recording: bool = False
    transitions: int = 0
    step_started: dict[tuple[str, int], float] = field(default_factory=dict)  # (name, step) -> stepStartedAt
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
            state = self.states.setdefault(name, DeploymentState())
            before = (state.stage, state.step)
            state.generation = int(metadata.get("generation") or 0)
            state.observed = int(status.get("observedGeneration") or 0)
            state.phase = str(status.get("phase") or "")
            state.stage = str(status.get("stage") or "")
            state.step = status.get("step")
            state.stable_version = str((status.get("stableRevision") or {}).get("version") or "")
            if not self.recording:
                return
            if before not in ((state.stage, state.step), ("", None)):
                self.transitions += 1
            rank, step = state.position
            if rank == CANARY and status.get("stepStartedAt"):
                self.step_started.setdefault((name, step), parse_time(str(status["stepStartedAt"])))
            for (other, index) in list(self.step_started):
                if other == name and (rank, step) > (CANARY, index):
                    self.advanced_at.setdefault((name, index), arrival)

    def start_recording(self) -> None:
        with self.lock:
            self.recording = True
            self.transitions = 0
            self.step_started.clear()
            self.advanced_at.clear()

    def count(self, predicate: Callable[[DeploymentState], bool], names: set[str] | None = None) -> int:
        with self.lock:
            return sum(1 for name, state in self.states.items()
                       if (names is None or name in names) and predicate(state))

    def lateness(self) -> list[float]:
        """Seconds from each timed step's due time (stepStartedAt + duration) to the watch showing the next."""
        with self.lock:
            return [self.advanced_at[key] - (start + self.step_seconds)
                    for key, start in self.step_started.items() if key in self.advanced_at]


class ObjectWatcher(threading.Thread):
    """Feeds `observe(obj, arrival, deleted)` from a watch on one namespace's custom objects; re-lists on 410."""

    def __init__(self, api_client: Any, namespace: str, observe: Callable[[dict[str, Any], float, bool], None],
                 resource: tuple[str, str, str] = (GROUP, VERSION, PLURAL)) -> None:
        super().__init__(daemon=True, name=f"watch-{resource[2]}-{namespace}")
        self.api_client = api_client
        self.namespace = namespace
        self.observe = observe
        self.resource = resource
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        from kubernetes import client, watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        api: Any = client.CustomObjectsApi(self.api_client)
        group, version, plural = self.resource
        while not self.stopped.is_set():
            try:
                listed = api.list_namespaced_custom_object(group, version, self.namespace, plural)
                now = time.time()
                for item in listed["items"]:
                    self.observe(item, now, False)
                resource_version = listed["metadata"]["resourceVersion"]
                while not self.stopped.is_set():
                    stream = watch.Watch().stream(api.list_namespaced_custom_object, group, version,
                                                  self.namespace, plural, resource_version=resource_version,
                                                  timeout_seconds=60, allow_watch_bookmarks=True)
                    for event in stream:
                        arrival = time.time()
                        obj = event["object"]
                        resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                        if event["type"] == "ERROR":
                            raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                        if event["type"] != "BOOKMARK":
                            self.observe(obj, arrival, event["type"] == "DELETED")
                        if self.stopped.is_set():
                            break
            except ApiException as exc:
                if exc.status != 410:
                    self.errors.append(f"{exc.status} {exc.reason}")
                    time.sleep(1.0)
            except Exception as exc:  # keep watching through transient connection errors; they are reported
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(1.0)
