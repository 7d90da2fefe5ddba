"""Watching a leader failover from the outside: who holds the operator's Lease, and every status write of the
ModelDeployments in a namespace, timed as the watch delivers them.

Shared by e2e/scenarios/test_failover.py and bench/failover.py. Only the API server is read: the Lease holder's
identity names the process (`<host>_<pid>_<random>`, adapters/leader.py `new_identity`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from e2e.harness import wait_for
from e2e.stack import StackContext

GROUP, VERSION, PLURAL = "modelship.dev", "v1alpha1", "modeldeployments"
LEASE_PREFIX = "modelship"


def holder_pid(identity: str | None) -> int | None:
    """The pid in a Lease holder identity `<host>_<pid>_<random>` (None: no holder, or another format)."""
    parts = (identity or "").rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


class LeaseProbe:
    """Reads the operator's Lease in `namespace` (the derived `modelship-<hash>` of a one-namespace operator)."""

    def __init__(self, stack: StackContext, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        self.api: Any = client.CoordinationV1Api(stack.api_client())
        self.namespace = namespace

    def holder(self) -> str | None:
        """holderIdentity of the operator's Lease ('' or None while nobody holds it)."""
        leases = self.api.list_namespaced_lease(self.namespace).items
        ours = [lease for lease in leases if lease.metadata.name.startswith(LEASE_PREFIX)]
        assert len(ours) <= 1, f"more than one operator Lease in {self.namespace}: {[x.metadata.name for x in ours]}"
        return str(ours[0].spec.holder_identity or "") if ours else None

    def held_by(self, pids: set[int], timeout: float = 60.0) -> int:
        """Wait until one of `pids` holds the Lease; returns its pid."""
        return wait_for(f"Lease in {self.namespace} held by one of {sorted(pids)}",
                        lambda: pid if (pid := holder_pid(self.holder())) in pids else None,
                        timeout=timeout, interval=0.1)


@dataclass(frozen=True)
class Write:
    """One status write as the watch delivered it."""

    t: float
    """time.monotonic() at arrival"""
    name: str
    resource_version: str
    canary: str | None
    stage: str | None
    step: int | None
    weight: int
    phase: str | None
    awaiting: bool

    @property
    def position(self) -> tuple[Any, ...]:
        """As e2e.rollout_watch.Sample.position: (canary, stage, step, awaiting)."""
        return (self.canary, self.stage, self.step, self.awaiting)


def _write(t: float, obj: dict[str, Any]) -> Write:
    status = obj.get("status") or {}
    return Write(
        t=t, name=obj["metadata"]["name"], resource_version=str(obj["metadata"].get("resourceVersion")),
        canary=(status.get("canaryRevision") or {}).get("hash"), stage=status.get("stage"), step=status.get("step"),
        weight=int(status.get("canaryWeight") or 0), phase=status.get("phase"),
        awaiting=bool(status.get("awaitingApproval")),
    )


class StatusWatch:
    """Every ADDED/MODIFIED event of the namespace's ModelDeployments, in a background thread (re-listing
    after a dropped watch, so nothing is missed)."""

    def __init__(self, stack: StackContext, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        self.api: Any = client.CustomObjectsApi(stack.api_client())
        self.namespace = namespace
        self.writes: list[Write] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"status-watch-{namespace}", daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _seen(self, obj: dict[str, Any]) -> None:
        write = _write(time.monotonic(), obj)
        with self._lock:
            if not any(w.resource_version == write.resource_version and w.name == write.name
                       for w in self.writes[-50:]):
                self.writes.append(write)

    def _run(self) -> None:
        from kubernetes import watch  # noqa: PLC0415

        watcher: Any = watch.Watch()

        while not self._stop.is_set():
            try:
                listing = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                for obj in listing.get("items") or []:
                    self._seen(obj)
                stream = watcher.stream(
                    self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                    resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=5)
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._seen(event["object"])
                    if self._stop.is_set():
                        return
            except Exception:  # a dropped watch or 410 Gone: list again
                time.sleep(0.2)

    def of(self, name: str) -> list[Write]:
        with self._lock:
            return [w for w in self.writes if w.name == name]

    def first_after(self, name: str, t: float) -> Write | None:
        return next((w for w in self.of(name) if w.t > t), None)

    def positions(self, name: str) -> list[tuple[Any, ...]]:
        """Distinct consecutive positions of one object, in watch order."""
        out: list[tuple[Any, ...]] = []
        for write in self.of(name):
            if not out or out[-1] != write.position:
                out.append(write.position)
        return out

    def weights(self, name: str, canary: str) -> list[int]:
        """Distinct consecutive canary weights of one rollout (one canary hash)."""
        out: list[int] = []
        for write in self.of(name):
            if write.canary == canary and write.stage == "Canary" and (not out or out[-1] != write.weight):
                out.append(write.weight)
        return out


def events_of(stack: StackContext, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events whose involvedObject is the ModelDeployment `name` (name, reason, message)."""
    from kubernetes import client  # noqa: PLC0415

    core: Any = client.CoreV1Api(stack.api_client())
    listed = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment")
    return [{"name": e.metadata.name, "reason": e.reason, "message": e.message} for e in listed.items]


def duplicated_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(reason, message) pairs that appear on more than one Event: a decision announced twice."""
    seen: dict[tuple[str, str], int] = {}
    for event in events:
        key = (str(event["reason"]), str(event["message"]))
        seen[key] = seen.get(key, 0) + 1
    return [key for key, count in seen.items() if count > 1]
