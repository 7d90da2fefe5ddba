"""Deleting a ModelDeployment: routes go before kopf's finalizer is released; a deleting object is never applied."""

from __future__ import annotations

from tests.unit.test_reconciler import SPEC, FakeCluster, FakeRouters, body, reconciler


async def test_delete_removes_the_selected_and_stale_routes_and_forgets_the_object() -> None:
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    routers.log.clear()
    await rec.delete(body(SPEC, first.status))
    assert routers.log == ["cleanup", "cleanup"]  # the selected router and every stale one


async def test_a_deleting_object_is_not_reconciled() -> None:
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    cluster.calls.clear()
    routers.log.clear()
    deleting = body(SPEC, first.status)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    result = await rec.reconcile(deleting)
    assert result.status_patch == {}
    assert cluster.calls == [] and routers.log == []


async def test_an_unparseable_spec_still_has_its_routes_removed_and_is_forgotten() -> None:
    """A spec stored before today's schema may have a route from an earlier valid spec: it goes too."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    await rec.delete(body({"model": "not an object"}))
    assert routers.log == ["cleanup", "cleanup"]


async def test_an_object_with_an_overflowing_duration_can_be_deleted() -> None:
    """`99999999999h` was admitted by older CRDs; parsing it raised OverflowError and blocked the finalizer."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    routers.log.clear()
    overflowing = {**SPEC, "rollout": {**SPEC["rollout"], "progressDeadline": "99999999999h"}}
    await rec.delete(body(overflowing, first.status))
    assert routers.log == ["cleanup", "cleanup"]
