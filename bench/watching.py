"""A list-then-watch feed of one namespace's custom objects, timestamped on arrival, and the bookkeeping base.

Why a watch (not polling): step lateness is "step due -> the API shows the next step"; a poll would add up to
its own period to every figure. Both sides of the comparison (bench.fleet_watch for ModelDeployments,
bench.peers.rollout_watch for Argo Rollouts) keep a `WatchBook` fed by an `ObjectWatcher`, so their figures
are timed and computed the same way; each book only reads its own kind's status (`update`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

Observe = Callable[[dict[str, Any], float, bool], None]
State = TypeVar("State")


def parse_time(value: str) -> float:
    """RFC 3339 time as the API server writes it (`2026-11-30T22:56:33Z`, `.123456Z` or `+00:00`) -> Unix s."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class WatchBook(Generic[State]):
    """Per-object state from watch events; while recording, transitions and, per (name, timed step), when the
    step started (from status) and when the watch first showed the object past it (arrival)."""

    def __init__(self, new_state: Callable[[], State], due_seconds: float) -> None:
        self.new_state = new_state
        self.due_seconds = due_seconds  # a timed step is due this long after it started
        self.states: dict[str, State] = {}
        self.recording = False
        self.transitions = 0
        self.started: dict[tuple[str, int], float] = {}  # (name, step) -> when the step started
        self.advanced_at: dict[tuple[str, int], float] = {}  # (name, step) -> arrival of the next step
        self.decided_at: dict[tuple[str, int], float] = {}  # (name, step) -> when the controller says it moved on
        self.lock = threading.Lock()

    def observe(self, obj: dict[str, Any], arrival: float, deleted: bool = False) -> None:
        """Take one watch event (or listed object) that arrived at Unix time `arrival`."""
        metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
        name = str(metadata.get("name", ""))
        with self.lock:
            if deleted:
                self.states.pop(name, None)
                return
            self.update(name, self.states.setdefault(name, self.new_state()), metadata, status, arrival)

    def update(self, name: str, state: State, metadata: dict[str, Any], status: dict[str, Any],
               arrival: float) -> None:
        """Read one object's status into `state` (and, while recording, the step times); under the lock."""
        raise NotImplementedError

    def start_recording(self) -> None:
        with self.lock:
            self.recording = True
            self.transitions = 0
            self.started.clear()
            self.advanced_at.clear()
            self.decided_at.clear()

    def lateness(self) -> list[float]:
        """Seconds from each timed step's due time (start + duration) to the watch showing the next step."""
        with self.lock:
            return [self.advanced_at[key] - (start + self.due_seconds)
                    for key, start in self.started.items() if key in self.advanced_at]

    def lateness_split(self) -> tuple[list[float], list[float]]:
        """Lateness in two parts, where the controller records when it decided (the next step's or stage's
        start time in status): due -> decided (scheduling and what the decision waited on), and decided ->
        the watch showing it (the writes, the API server, the watch)."""
        with self.lock:
            keys = [key for key in self.started if key in self.advanced_at and key in self.decided_at]
            return ([self.decided_at[key] - (self.started[key] + self.due_seconds) for key in keys],
                    [self.advanced_at[key] - self.decided_at[key] for key in keys])


class ObjectWatcher(threading.Thread):
    """Feeds `observe(obj, arrival, deleted)` from a watch on one namespace's custom objects; re-lists on 410.

    Every listed object is observed with the list's arrival time; each event with its own. Errors other
    than 410 (the watch expired: re-list) are kept in `errors` and the watch is retried after a second.
    """

    def __init__(self, api_client: Any, namespace: str, observe: Observe,
                 resource: tuple[str, str, str]) -> None:
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
        make_watch: Any = watch.Watch
        group, version, plural = self.resource
        while not self.stopped.is_set():
            try:
                listed = api.list_namespaced_custom_object(group, version, self.namespace, plural)
                now = time.time()
                for item in listed["items"]:
                    self.observe(item, now, False)
                resource_version = listed["metadata"]["resourceVersion"]
                while not self.stopped.is_set():
                    stream = make_watch().stream(api.list_namespaced_custom_object, group, version,
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
                self.errors.append(repr(exc))
                time.sleep(1.0)
