"""The control loop: what a watch event leads to, in which order writes happen, and what is never written."""

from __future__ import annotations

import copy
from typing import Any

from modelship.adapters.kube import NOT_LEADER, KubeError
from modelship.adapters.telemetry import Telemetry
from modelship.controller.loop import FINALIZER, NOT_LEADER_RETRY_SECONDS, ControlLoop
from test_reconciler import SPEC, FakeCluster, FakeRouters, body, reconciler

KEY = ("ml", "fraud")


class FakeObjects:
    """The ModelDeployments port over one in-memory object; every write checks resourceVersion like the API
    server does, and is logged in `log` (shared with the Event recorder) so tests can check the order."""

    def __init__(self, obj: dict[str, Any], log: list[str]) -> None:
        self.obj = copy.deepcopy(obj)
        self.obj["metadata"]["resourceVersion"] = "10"
        self.log = log
        self.writes = 0

    def _write(self, resource_version: str, what: str) -> dict[str, Any]:
        if resource_version != self.obj["metadata"]["resourceVersion"]:
            self.log.append(f"conflict:{what}")
            raise KubeError(409, "Conflict", "the object has been modified")
        self.writes += 1
        self.obj["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        self.log.append(what)
        return copy.deepcopy(self.obj)

    async def patch_status(self, namespace: str, name: str, resource_version: str, patch: dict[str, Any]) -> Any:
        new_status = {k: v for k, v in {**self.obj.get("status", {}), **patch}.items() if v is not None}
        result = self._write(resource_version, "status")
        self.obj["status"] = new_status
        result["status"] = copy.deepcopy(new_status)
        return result

    async def set_finalizers(self, namespace: str, name: str, resource_version: str, finalizers: list[str]) -> Any:
        result = self._write(resource_version, f"finalizers:{','.join(finalizers)}")
        self.obj["metadata"]["finalizers"] = list(finalizers)
        result["metadata"]["finalizers"] = list(finalizers)
        return result

    async def read(self, namespace: str, name: str) -> Any:
        return copy.deepcopy(self.obj)

    def touch(self, **meta: Any) -> dict[str, Any]:
        """Someone else (a user, GitOps) writes: a newer version arrives by the watch."""
        self.obj["metadata"].update(meta)
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.obj)


class LoggingCluster(FakeCluster):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def emit_event(self, owner: Any, type: Any, reason: str, message: str) -> None:
        self.log.append(f"event:{reason}")
        await super().emit_event(owner, type, reason, message)


def setup() -> tuple[ControlLoop, FakeObjects, LoggingCluster, list[str]]:
    log: list[str] = []
    cluster = LoggingCluster(log)
    objects = FakeObjects(body(SPEC), log)
    loop = ControlLoop(reconciler(cluster, FakeRouters()), objects, Telemetry(), workers=2)
    return loop, objects, cluster, log


async def test_given_a_new_object_when_handled_then_finalizer_then_status_then_its_events() -> None:
    loop, objects, _, log = setup()
    loop.observe(None, objects.obj)
    await loop.handle(KEY)
    assert log[0] == f"finalizers:{FINALIZER}"
    assert log[1] == "status"
    assert log[2:] and all(entry.startswith("event:") for entry in log[2:]), log


async def test_given_a_settled_object_when_reconciled_again_then_nothing_is_written() -> None:
    loop, objects, _, _ = setup()
    loop.observe(None, objects.obj)
    for _ in range(4):  # bootstrap to Healthy
        await loop.handle(KEY)
    writes = objects.writes
    for _ in range(5):
        await loop.handle(KEY)
    assert objects.obj["status"]["phase"] == "Healthy"
    assert objects.writes == writes, "a reconcile that changes nothing must write nothing (nextReconcileAt too)"


async def test_given_our_own_write_echoed_by_the_watch_then_it_is_not_queued_again() -> None:
    loop, objects, _, _ = setup()
    loop.observe(None, objects.obj)
    await loop.handle(KEY)
    loop.queue.forget(KEY)  # as if served and not due again
    loop.observe("MODIFIED", objects.obj)  # the watch delivers the version we wrote
    assert KEY not in loop.queue._keys
    loop.observe("MODIFIED", objects.touch(annotations={"x": "1"}))  # someone else wrote
    assert loop.queue._keys[KEY].due is not None


async def test_given_a_decision_on_a_stale_version_then_its_status_and_events_are_not_written() -> None:
    """A newer version lands between our read and our write (a user, or another replica that took over): the
    status patch conflicts, the decision's Events are not sent, and the next reconcile decides from the newest."""
    loop, objects, _, log = setup()
    loop.observe(None, objects.obj)
    await loop.handle(KEY)  # finalizer + first decision
    objects.touch(labels={"team": "a"})  # not seen by the watch yet
    log.clear()
    await loop.handle(KEY)
    assert log == ["conflict:status"], "no Event may announce a decision whose status was not written"
    await loop.handle(KEY)
    assert "status" in log


async def test_given_a_deleted_object_then_routes_go_first_then_our_finalizer() -> None:
    loop, objects, _, log = setup()
    loop.observe(None, objects.obj)
    await loop.handle(KEY)
    routers_log = loop.reconciler.routers.log  # type: ignore[attr-defined]
    loop.observe("MODIFIED", objects.touch(deletionTimestamp="2026-11-30T00:00:00Z"))
    routers_log.clear()
    log.clear()
    assert await loop.handle(KEY) is None
    assert routers_log and set(routers_log) == {"cleanup"}
    assert log == ["finalizers:"]


async def test_given_a_child_event_then_its_modeldeployment_is_queued_by_label() -> None:
    loop, objects, _, _ = setup()
    loop.observe(None, objects.obj)
    await loop.handle(KEY)
    loop.queue._keys[KEY].due = None
    loop.wake({"metadata": {"namespace": "ml", "name": "fraud-abc", "labels": {"modelship.dev/deployment": "fraud"}}})
    assert loop.queue._keys[KEY].due is not None
    loop.wake({"metadata": {"namespace": "ml", "name": "x", "labels": {"modelship.dev/deployment": "unknown"}}})
    assert ("ml", "unknown") not in loop.queue._keys


async def test_given_a_watch_deletion_then_the_object_is_forgotten() -> None:
    loop, objects, _, _ = setup()
    loop.observe(None, objects.obj)
    loop.observe("DELETED", objects.obj)
    assert loop.body(KEY) is None and KEY not in loop.queue._keys


def test_an_opaque_resource_version_is_newer_unless_identical() -> None:
    """resourceVersions are numbers on etcd-backed API servers; an opaque one must never hide a change."""
    from modelship.controller.loop import not_newer  # noqa: PLC0415

    assert not_newer("5", "7") and not_newer("7", "7") and not not_newer("8", "7")
    assert not_newer("abc", "abc") and not not_newer("abd", "abc")


async def test_given_a_watch_event_older_than_our_write_then_the_write_is_kept() -> None:
    loop, objects, _, _ = setup()
    old = copy.deepcopy(objects.obj)
    loop.observe(None, objects.obj)
    await loop.handle(KEY)  # finalizer and status written: we hold a newer version
    held = loop.body(KEY)
    assert held is not None
    loop.observe("MODIFIED", old)  # a late event from before our writes
    assert loop.body(KEY) == held


async def test_a_write_refused_while_the_lease_renewal_is_late_is_retried_soon_without_a_failure() -> None:
    """Seen at 10,000 objects: a slow API server delayed one renewal past the deadline; 218 reconciles failed
    with tracebacks and went into failure backoff. Not the objects' fault: try again after an election round."""
    loop, objects, _, log = setup()
    loop.observe(None, objects.obj)

    async def refused(*_: Any) -> Any:
        raise KubeError(0, NOT_LEADER, "vm_1 does not hold Lease ml/modelship; write refused")

    objects.set_finalizers = refused  # type: ignore[method-assign]
    assert await loop.handle(KEY) == NOT_LEADER_RETRY_SECONDS
    assert log == []
